"""Setlists: TOML files (stdlib ``tomllib``) with show settings and an ordered list of songs.

Validated once, where they enter: every error names the file, the song (number and title), the field and the
allowed values; unknown keys are errors, not ignored (a typo on stage must not silently change the show).
Loading happens before the show; the result is immutable and shared read-only.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveperf.scales import Key, parse_key

MODES = ("call_response", "duet", "harmonize", "phrase")
VOICES = ("bass", "tenor", "alto")  # duet / harmonize partner voices (the duet model's voice input: 0, 1, 2)
PHRASE_MODELS = ("gan", "vae")
LATENTS = ("random", "walk", "interpolate", "variation")
CLOCKS = ("internal", "midi")
DROPOUT_POLICIES = ("stop", "freewheel")


class SetlistError(ValueError):
    """A setlist that cannot be played; the message says where and what is allowed."""


@dataclass(frozen=True)
class Song:
    title: str
    tempo_bpm: float
    key: Key
    meter: tuple[int, int]  # (beats, beat unit), e.g. (4, 4), (6, 8)
    mode: str
    model: str  # shipped model name or a path to an .onnx file (relative to the setlist)
    temperature: float
    top_k: int
    top_p: float
    channel: int  # 1..16 as musicians count
    pitch_range: tuple[int, int]
    silence_steps: int
    response_bars: int
    velocity: int | None  # None: follow the performer
    trigger_cc: int | None
    max_note_beats: int
    seed: int
    take: str | None  # performer take for file mode: shipped take name, or .mid path relative to the setlist
    voice: str = "bass"  # duet / harmonize: which partner voice the duet model plays
    duet_model: str = "duet_dnn"
    phrase_model: str = "gan"  # phrase mode: "gan" (critic-ranked candidates) or "vae" (latent sources)
    gan_models: tuple[str, str] = ("melody_gan_generator", "melody_gan_critic")
    vae_models: tuple[str, str] = ("melody_vae_encoder", "melody_vae_decoder")
    latent: str = "random"  # phrase mode with the VAE: random | walk | interpolate | variation
    phrase_every_bars: int = 4
    candidates: int = 8
    sigma: float = 0.5
    walk_step: float = 0.25
    anchors: tuple[int, int] = (1, 2)
    tap_cc: int | None = None
    mode_cc: int | None = None

    @property
    def voice_index(self) -> int:
        return VOICES.index(self.voice)

    def steps_per_bar(self, steps_per_beat: int) -> int:
        """Steps in one bar; a beat is a quarter note (6/8 = 3 quarter-note beats = 12 sixteenth steps)."""
        beats, unit = self.meter
        return beats * steps_per_beat * 4 // unit


@dataclass(frozen=True)
class Setlist:
    path: Path
    name: str
    songs: tuple[Song, ...]
    lookahead_ms: float
    late_tolerance_ms: float
    clock: str = "internal"
    clock_dropout: str = "stop"
    send_clock: bool = False
    echo_guard_ms: float = 30.0

    def find(self, selector: str) -> list[int]:
        """Song indices for a 1-based number or a (case-insensitive) title substring."""
        if selector.isdigit():
            n = int(selector)
            if 1 <= n <= len(self.songs):
                return [n - 1]
            raise SetlistError(f"{self.path}: no song number {n}; the setlist has songs 1..{len(self.songs)}")
        hits = [i for i, s in enumerate(self.songs) if selector.lower() in s.title.lower()]
        if not hits:
            titles = ", ".join(repr(s.title) for s in self.songs)
            raise SetlistError(f"{self.path}: no song matches {selector!r}; songs: {titles}")
        return hits


# field: (type check, default, description of allowed values). Defaults of None mean "required".
_REQUIRED = object()
SONG_FIELDS: dict[str, tuple[Any, str]] = {
    "title": (_REQUIRED, "a non-empty string"),
    "tempo_bpm": (_REQUIRED, "a number from 20 to 400"),
    "key": (_REQUIRED, "a key such as 'D dorian' or 'A minor'"),
    "meter": ("4/4", "'N/D' with N 1..32 and D one of 2, 4, 8, 16"),
    "mode": ("call_response", f"one of {', '.join(MODES)}"),
    "model": ("melody_dnn", "a shipped model name or a path to an .onnx file"),
    "temperature": (1.0, "a number from 0 (greedy) to 5"),
    "top_k": (0, "an integer from 0 (off) to 130"),
    "top_p": (1.0, "a number above 0 and at most 1 (1 = off)"),
    "channel": (1, "an integer from 1 to 16"),
    "pitch_range": ([48, 84], "[low, high] MIDI notes, 0 <= low < high <= 127"),
    "silence_steps": (4, "an integer from 1 to 64 (steps of silence that end a phrase)"),
    "response_bars": (2, "an integer from 1 to 16"),
    "velocity": ("follow", "'follow' or an integer from 1 to 127"),
    "trigger_cc": (-1, "a CC number 0..127, or -1 for none"),
    "max_note_beats": (4, "an integer from 1 to 64"),
    "seed": (0, "an integer from 0 to 2**63-1"),
    "take": ("", "a shipped take name, a path to a .mid file (relative to the setlist), or '' for none"),
    "voice": ("bass", f"one of {', '.join(VOICES)} (duet / harmonize partner voice)"),
    "duet_model": ("duet_dnn", "a shipped duet model name or a path to an .onnx file"),
    "phrase_model": ("gan", f"one of {', '.join(PHRASE_MODELS)}"),
    "gan_models": (["melody_gan_generator", "melody_gan_critic"], "[generator, critic]: shipped names or paths"),
    "vae_models": (["melody_vae_encoder", "melody_vae_decoder"], "[encoder, decoder]: shipped names or paths"),
    "latent": ("random", f"one of {', '.join(LATENTS)} (phrase mode with the VAE)"),
    "phrase_every_bars": (4, "an integer from 2 to 16 (a 2-bar phrase starts every this many bars)"),
    "candidates": (8, "an integer from 1 to 64 (GAN phrases ranked by the critic)"),
    "sigma": (0.5, "a number from 0 to 3 (variation: spread around the performer's encoded phrase)"),
    "walk_step": (0.25, "a number from 0 to 1 (latent walk step / interpolation advance per phrase)"),
    "anchors": ([1, 2], "[seed_a, seed_b]: two integers 0..2**31-1 naming the interpolation anchors"),
    "tap_cc": (-1, "a CC number 0..127 whose presses tap the tempo, or -1 for none"),
    "mode_cc": (-1, "a CC number 0..127 whose value picks the mode (4 equal ranges), or -1 for none"),
}
SHOW_FIELDS: dict[str, tuple[Any, str]] = {
    "name": ("", "a string"),
    "lookahead_ms": (8.0, "a number from 1 to 100 (how early each step is computed)"),
    "late_tolerance_ms": (2.0, "a number from 0 to 50 (later than this, a note is dropped, never played late)"),
    "clock": ("internal", f"one of {', '.join(CLOCKS)} (follow the setlist tempo, or incoming MIDI clock)"),
    "clock_dropout": ("stop", f"one of {', '.join(DROPOUT_POLICIES)} (250 ms without MIDI clock ticks)"),
    "send_clock": (False, "true or false (send MIDI clock on the output when the clock is internal)"),
    "echo_guard_ms": (30.0, "a number from 0 to 500 (our own output echoed into our input within this is ignored)"),
}


def load_setlist(path: str | Path) -> Setlist:
    """Read and validate ``path``; raise ``SetlistError`` naming the file, song, field and allowed values."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetlistError(f"{path}: setlist file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SetlistError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SetlistError(f"{path}: not valid TOML ({exc})") from None
    return parse_setlist(raw, path)


def parse_setlist(raw: dict, path: Path) -> Setlist:
    unknown = sorted(set(raw) - {"show", "song"})
    if unknown:
        raise SetlistError(f"{path}: unknown top-level key(s) {unknown}; allowed: [show], [[song]]")
    show = raw.get("show", {})
    if not isinstance(show, dict):
        raise SetlistError(f"{path}: [show] must be a table")
    _check_unknown(show, SHOW_FIELDS, f"{path}: [show]")
    songs_raw = raw.get("song")
    if not isinstance(songs_raw, list) or not songs_raw:
        raise SetlistError(f"{path}: no songs; add at least one [[song]] table")
    songs = tuple(_parse_song(s, i, path) for i, s in enumerate(songs_raw))
    name = _get(show, "name", SHOW_FIELDS, f"{path}: [show]")
    return Setlist(
        path=path,
        name=name if isinstance(name, str) and name else path.stem,
        songs=songs,
        lookahead_ms=_number(show, "lookahead_ms", 1, 100, SHOW_FIELDS, f"{path}: [show]"),
        late_tolerance_ms=_number(show, "late_tolerance_ms", 0, 50, SHOW_FIELDS, f"{path}: [show]"),
        clock=_choice(show, "clock", CLOCKS, SHOW_FIELDS, f"{path}: [show]"),
        clock_dropout=_choice(show, "clock_dropout", DROPOUT_POLICIES, SHOW_FIELDS, f"{path}: [show]"),
        send_clock=_flag(show, "send_clock", SHOW_FIELDS, f"{path}: [show]"),
        echo_guard_ms=float(_number(show, "echo_guard_ms", 0, 500, SHOW_FIELDS, f"{path}: [show]")),
    )


def _choice(table, name, choices, fields, where):
    v = _get(table, name, fields, where)
    if v not in choices:
        raise _bad(where, name, v, fields)
    return v


def _flag(table, name, fields, where) -> bool:
    v = _get(table, name, fields, where)
    if not isinstance(v, bool):
        raise _bad(where, name, v, fields)
    return v


def _names(table, name, fields, where) -> tuple[str, str]:
    v = _get(table, name, fields, where)
    if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, str) and x for x in v):
        raise _bad(where, name, v, fields)
    return v[0], v[1]


def _check_unknown(table: dict, fields: dict, where: str) -> None:
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise SetlistError(f"{where}: unknown field(s) {unknown}; allowed fields: {', '.join(fields)}")


def _get(table: dict, name: str, fields: dict, where: str) -> Any:
    default, allowed = fields[name]
    if name not in table:
        if default is _REQUIRED:
            raise SetlistError(f"{where}: field '{name}' is missing; it must be {allowed}")
        return default
    return table[name]


def _bad(where: str, name: str, value: Any, fields: dict) -> SetlistError:
    return SetlistError(f"{where}: field '{name}' = {value!r} is not allowed; it must be {fields[name][1]}")


def _number(table, name, lo, hi, fields, where, integer=False, lo_open=False):
    v = _get(table, name, fields, where)
    ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok_type or v > hi or v < lo or (lo_open and v == lo):
        raise _bad(where, name, v, fields)
    return v


def _parse_song(raw: Any, index: int, path: Path) -> Song:
    where = f"{path}: song {index + 1}"
    if not isinstance(raw, dict):
        raise SetlistError(f"{where}: each [[song]] must be a table")
    title = raw.get("title")
    if isinstance(title, str) and title.strip():
        where = f"{path}: song {index + 1} ({title!r})"
    _check_unknown(raw, SONG_FIELDS, where)
    f = SONG_FIELDS
    title = _get(raw, "title", f, where)
    if not isinstance(title, str) or not title.strip():
        raise _bad(where, "title", title, f)
    tempo = _number(raw, "tempo_bpm", 20, 400, f, where)
    key_text = _get(raw, "key", f, where)
    try:
        key = parse_key(key_text) if isinstance(key_text, str) else parse_key("")
    except ValueError as exc:
        raise SetlistError(f"{where}: field 'key' = {key_text!r}: {exc}") from None
    meter = _parse_meter(_get(raw, "meter", f, where), where)
    mode = _get(raw, "mode", f, where)
    if mode not in MODES:
        raise _bad(where, "mode", mode, f)
    model = _get(raw, "model", f, where)
    if not isinstance(model, str) or not model:
        raise _bad(where, "model", model, f)
    pr = _get(raw, "pitch_range", f, where)
    if (not isinstance(pr, list) or len(pr) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pr)
            or not 0 <= pr[0] < pr[1] <= 127):
        raise _bad(where, "pitch_range", pr, f)
    vel = _get(raw, "velocity", f, where)
    if vel == "follow":
        vel = None
    elif isinstance(vel, bool) or not isinstance(vel, int) or not 1 <= vel <= 127:
        raise _bad(where, "velocity", vel, f)
    trig = _number(raw, "trigger_cc", -1, 127, f, where, integer=True)
    take = _get(raw, "take", f, where)
    if not isinstance(take, str):
        raise _bad(where, "take", take, f)
    duet_model = _get(raw, "duet_model", f, where)
    if not isinstance(duet_model, str) or not duet_model:
        raise _bad(where, "duet_model", duet_model, f)
    anchors = _get(raw, "anchors", f, where)
    if (not isinstance(anchors, list) or len(anchors) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**31 for x in anchors)):
        raise _bad(where, "anchors", anchors, f)
    tap = _number(raw, "tap_cc", -1, 127, f, where, integer=True)
    mode_cc = _number(raw, "mode_cc", -1, 127, f, where, integer=True)
    return Song(
        title=title.strip(),
        tempo_bpm=float(tempo),
        key=key,
        meter=meter,
        mode=mode,
        model=model,
        temperature=float(_number(raw, "temperature", 0, 5, f, where)),
        top_k=_number(raw, "top_k", 0, 130, f, where, integer=True),
        top_p=float(_number(raw, "top_p", 0, 1, f, where, lo_open=True)),
        channel=_number(raw, "channel", 1, 16, f, where, integer=True),
        pitch_range=(pr[0], pr[1]),
        silence_steps=_number(raw, "silence_steps", 1, 64, f, where, integer=True),
        response_bars=_number(raw, "response_bars", 1, 16, f, where, integer=True),
        velocity=vel,
        trigger_cc=None if trig < 0 else trig,
        max_note_beats=_number(raw, "max_note_beats", 1, 64, f, where, integer=True),
        seed=_number(raw, "seed", 0, 2**63 - 1, f, where, integer=True),
        take=take or None,
        voice=_choice(raw, "voice", VOICES, f, where),
        duet_model=duet_model,
        phrase_model=_choice(raw, "phrase_model", PHRASE_MODELS, f, where),
        gan_models=_names(raw, "gan_models", f, where),
        vae_models=_names(raw, "vae_models", f, where),
        latent=_choice(raw, "latent", LATENTS, f, where),
        phrase_every_bars=_number(raw, "phrase_every_bars", 2, 16, f, where, integer=True),
        candidates=_number(raw, "candidates", 1, 64, f, where, integer=True),
        sigma=float(_number(raw, "sigma", 0, 3, f, where)),
        walk_step=float(_number(raw, "walk_step", 0, 1, f, where)),
        anchors=(anchors[0], anchors[1]),
        tap_cc=None if tap < 0 else tap,
        mode_cc=None if mode_cc < 0 else mode_cc,
    )


def _parse_meter(value: Any, where: str) -> tuple[int, int]:
    err = _bad(where, "meter", value, SONG_FIELDS)
    if not isinstance(value, str) or value.count("/") != 1:
        raise err
    num, den = value.split("/")
    if not (num.strip().isdigit() and den.strip().isdigit()):
        raise err
    n, d = int(num), int(den)
    if not 1 <= n <= 32 or d not in (2, 4, 8, 16):
        raise err
    return n, d
