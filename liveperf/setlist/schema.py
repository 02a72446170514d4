"""Setlists: TOML files (stdlib ``tomllib``) with show settings and an ordered list of songs.

Validated once, where they enter: every error names the file, the song (number and title), the field and the
allowed values; unknown keys are errors, not ignored (a typo on stage must not silently change the show).
Loading happens before the show; the result is immutable and shared read-only.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from liveperf.params import COMP_RHYTHMS, MidiLearn, ParamError
from liveperf.music.scales import Key, parse_key
from liveperf.setlist.partners import parse_partners
from liveperf.setlist.show_tables import LinkSettings, OscSettings, parse_link, parse_osc
from liveperf.music.style import STYLE_KNOBS
from liveperf.setlist.fields import (REQUIRED, SetlistError, bad, check_unknown, choice, flag, get, names, number,
                                     param, param_allowed, text)

MODES = ("call_response", "duet", "harmonize", "phrase", "comp")
VOICES = ("bass", "tenor", "alto")  # duet / harmonize partner voices (the duet model's voice input: 0, 1, 2)
PHRASE_MODELS = ("gan", "vae")
LATENTS = ("random", "walk", "interpolate", "variation", "restyle")
CLOCKS = ("internal", "midi", "link")
DROPOUT_POLICIES = ("stop", "freewheel")
PROGRAM_CHANGE = ("select", "ignore")
KEY_FOLLOW = ("off", "modulations")
KEY_CHANGE_AT = ("bar", "beat")


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
    duet_predictor: str = "soprano_dnn"  # the duet's anticipation: predicts the performer's next token
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
    density: float = 1.0
    swing: float | None = 0.5  # the partner's off-beat eighths (liveperf.music.feel); None: follow the performer
    humanize_ms: float = 0.0  # a seeded delay of 0 .. this many ms on each step's partner notes (liveperf.music.feel)
    program: int | None = None  # 1..128: Program Change sent to the partner's synth at the song's start
    bank: int | None = None  # 0..16383: Bank Select (CC0 MSB, CC32 LSB) sent before ``program``
    select_program: int | None = None  # 1..128: the incoming Program Change that selects this song
    select_bank: int | None = None  # 0..16383: with ``select_program``, the bank that must be selected too
    answer_candidates: int = 16  # call and response: whole answers planned when the phrase ends (0: step by step)
    key_auto: bool = False  # key = "auto": the partner's key follows the performer (``liveperf.music.key_finder``)
    key_follow: str = "off"  # "modulations": a named key moves when the performer clearly modulates
    key_change_at: str = "bar"  # where a followed key may change: "bar" (bar lines) or "beat"
    comp_model: str = "comp_dnn"  # comp: the three voices' model (``liveperf.models.comp_model``)
    comp_rhythm: str = "beat"  # comp: block chords each beat, half bar or bar, or "model" (the chorales' rhythm)
    style: tuple[float, ...] = (0.0,) * 5  # style_<knob> fields in liveperf.music.style.STYLE_KNOBS order
    partners: tuple = ()  # more partners playing at once (``liveperf.setlist.partners``), each a Song of its own
    partner_name: str = ""  # a partner's label (stage view, reports); the song itself: its mode

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
    max_copy_bars: int = 2  # the copy guard (liveperf.music.copy_guard): no training passage this long; 0 off
    midi_in: str = ""  # connect our input to the first port whose name contains this ("" = connect by hand)
    midi_out: str = ""
    record_dir: str = ""  # per-song recordings ("" = recordings/<setlist>-<date-time>/), relative to the setlist
    stage_view: bool = True
    program_change: str = "select"  # incoming Program Change / Song Select pick the song, or are ignored
    cc: tuple[dict, ...] = ()  # MIDI CC -> parameter mappings ({"param", "channel" 1..16, "cc"}), MIDI learn adds here
    osc: OscSettings = OscSettings()
    link: LinkSettings = LinkSettings()

    def song_for_program(self, program: int, bank: int | None) -> int | None:
        """The song index an incoming Program Change (0..127 on the wire) selects, with the last Bank Select
        (0..16383, None if none was sent). Songs with ``select_program`` are matched on it (and on ``select_bank``
        where set); otherwise program N (1-based, as musicians count) is song N."""
        if any(s.select_program is not None for s in self.songs):
            for i, s in enumerate(self.songs):
                if s.select_program == program + 1 and (s.select_bank is None or s.select_bank == bank):
                    return i
            return None
        return program if program < len(self.songs) else None

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
SONG_FIELDS: dict[str, tuple[Any, str]] = {
    "title": (REQUIRED, "a non-empty string"),
    "tempo_bpm": (REQUIRED, "a number from 20 to 400"),
    "key": (REQUIRED, "a key such as 'D dorian' or 'A minor', or 'auto' (follow the performer), optionally with a "
                      "starting key: 'auto G major'"),
    "key_change_at": ("bar", f"one of {', '.join(KEY_CHANGE_AT)} (where a followed key may change; with \"bar\", a "
                             f"key that plainly does not fit what is played is left at the next beat)"),
    "key_follow": ("off", f"one of {', '.join(KEY_FOLLOW)} (with a named key: move it when the performer clearly "
                          f"modulates)"),
    "meter": ("4/4", "'N/D' with N 1..32 and D one of 2, 4, 8, 16"),
    "mode": ("call_response", f"one of {', '.join(MODES)}"),
    "model": ("melody_dnn", "a shipped model name or a path to an .onnx file"),
    "temperature": (1.0, param_allowed("temperature", "0 = greedy")),
    "top_k": (0, param_allowed("top_k", "0 = off")),
    "top_p": (1.0, param_allowed("top_p", "1 = off")),
    "channel": (1, "an integer from 1 to 16"),
    "pitch_range": ([48, 84], "[low, high] MIDI notes, 0 <= low < high <= 127"),
    "silence_steps": (4, param_allowed("silence_steps", "steps of silence that end a phrase")),
    "response_bars": (2, param_allowed("response_bars")),
    "velocity": ("follow", "'follow' or " + param_allowed("velocity")),
    "swing": (0.5, "'follow' or " + param_allowed("swing", "0.5 straight, 0.67 triplet swing")),
    "humanize_ms": (0.0, param_allowed("humanize_ms", "0 = exactly on the grid")),
    "trigger_cc": (-1, "a CC number 0..127, or -1 for none"),
    "max_note_beats": (4, "an integer from 1 to 64"),
    "seed": (0, "an integer from 0 to 2**63-1"),
    "take": ("", "a shipped take name, a path to a .mid file (relative to the setlist), or '' for none"),
    "voice": ("bass", f"one of {', '.join(VOICES)} (duet / harmonize partner voice)"),
    "duet_model": ("duet_dnn", "a shipped duet model name or a path to an .onnx file"),
    "partner": ([], "[[song.partner]] tables: more partners at once (docs/modes.md, several partners)"),
    "comp_model": ("comp_dnn", "a shipped comp model name or a path to an .onnx file"),
    "comp_rhythm": ("beat", f"one of {', '.join(COMP_RHYTHMS)} (comp: when the chord moves)"),
    "duet_predictor": ("soprano_dnn", "a shipped step model name or a path to an .onnx file (the duet anticipates "
                                      "the performer's next note with it)"),
    "phrase_model": ("gan", f"one of {', '.join(PHRASE_MODELS)}"),
    "gan_models": (["melody_gan_generator", "melody_gan_critic"], "[generator, critic]: shipped names or paths"),
    "vae_models": (["melody_vae_encoder", "melody_vae_decoder"], "[encoder, decoder]: shipped names or paths"),
    "latent": ("random", f"one of {', '.join(LATENTS)} (phrase mode with the VAE)"),
    "phrase_every_bars": (4, param_allowed("phrase_every_bars", "a 2-bar phrase starts every this many bars")),
    "candidates": (8, "an integer from 1 to 64 (GAN phrases ranked by the critic)"),
    "answer_candidates": (16, "an integer from 0 to 64 (call and response: whole answers planned and ranked when "
                              "the phrase ends; 0 = drawn step by step)"),
    "sigma": (0.5, param_allowed("sigma", "variation: spread around the performer's encoded phrase")),
    "walk_step": (0.25, param_allowed("walk_step", "latent walk step / interpolation advance per phrase")),
    "anchors": ([1, 2], "[seed_a, seed_b]: two integers 0..2**31-1 naming the interpolation anchors"),
    "tap_cc": (-1, "a CC number 0..127 whose presses tap the tempo, or -1 for none"),
    "mode_cc": (-1, f"a CC number 0..127 whose value picks the mode ({len(MODES)} equal ranges), or -1 for none"),
    "density": (1.0, param_allowed("density", "chance that a partner note-on is played")),
    **{f"style_{k}": (0.0, param_allowed(f"style_{k}", "a style knob (phrase mode with the VAE)")) for k in STYLE_KNOBS},
    "program": (-1, "an integer 1..128 (Program Change to the partner's synth at the song's start), or -1 for none"),
    "bank": (-1, "an integer 0..16383 (Bank Select CC0/CC32 before 'program'), or -1 for none"),
    "select_program": (-1, "an integer 1..128: the incoming Program Change that selects this song, or -1 "
                           "(program N selects song N)"),
    "select_bank": (-1, "an integer 0..16383: the Bank Select that must come with 'select_program', or -1 for any"),
}
SHOW_FIELDS: dict[str, tuple[Any, str]] = {
    "name": ("", "a string"),
    "lookahead_ms": (8.0, "a number from 1 to 100 (how early each step is computed; on jack-native never less "
                          "than the port's lead, a JACK period + 2 ms, plus 4 ms)"),
    "late_tolerance_ms": (2.0, "a number from 0 to 50 (later than this, a note is dropped, never played late)"),
    "clock": ("internal", f"one of {', '.join(CLOCKS)} (follow the setlist tempo, incoming MIDI clock, or an "
                          f"Ableton Link session: see [show.link])"),
    "clock_dropout": ("stop", f"one of {', '.join(DROPOUT_POLICIES)} (250 ms without MIDI clock ticks)"),
    "send_clock": (False, "true or false (send MIDI clock on the output when the clock is internal)"),
    "echo_guard_ms": (30.0, "a number from 0 to 500 (our own output echoed into our input within this is ignored)"),
    "max_copy_bars": (2, "an integer from 0 to 8 (the partner never replays a training passage this many bars long; "
                         "0 = no guard)"),
    "midi_in": ("", "a string: connect our input to the first MIDI port whose name contains it ('' = by hand)"),
    "midi_out": ("", "a string: connect our output to the first MIDI port whose name contains it ('' = by hand)"),
    "record_dir": ("", "a folder for the per-song recordings, relative to the setlist ('' = recordings/<setlist>-"
                       "<date-time>/ in the working folder)"),
    "stage_view": (True, "true or false (the terminal status display; off for headless rigs)"),
    "program_change": ("select", f"one of {', '.join(PROGRAM_CHANGE)} (incoming Program Change / Song Select pick "
                                 f"the song at the next bar line)"),
    "cc": ([], "a list of tables {param = NAME, channel = 1..16, cc = 0..127} (MIDI learn adds to it)"),
    "osc": ({}, "a table [show.osc]"),
    "link": ({}, "a table [show.link] (with clock = \"link\")"),
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
    check_unknown(show, SHOW_FIELDS, f"{path}: [show]")
    songs_raw = raw.get("song")
    if not isinstance(songs_raw, list) or not songs_raw:
        raise SetlistError(f"{path}: no songs; add at least one [[song]] table")
    songs = tuple(_parse_song(s, i, path) for i, s in enumerate(songs_raw))
    name = get(show, "name", SHOW_FIELDS, f"{path}: [show]")
    return Setlist(
        path=path,
        name=name if isinstance(name, str) and name else path.stem,
        songs=songs,
        lookahead_ms=number(show, "lookahead_ms", 1, 100, SHOW_FIELDS, f"{path}: [show]"),
        late_tolerance_ms=number(show, "late_tolerance_ms", 0, 50, SHOW_FIELDS, f"{path}: [show]"),
        clock=choice(show, "clock", CLOCKS, SHOW_FIELDS, f"{path}: [show]"),
        clock_dropout=choice(show, "clock_dropout", DROPOUT_POLICIES, SHOW_FIELDS, f"{path}: [show]"),
        send_clock=flag(show, "send_clock", SHOW_FIELDS, f"{path}: [show]"),
        echo_guard_ms=float(number(show, "echo_guard_ms", 0, 500, SHOW_FIELDS, f"{path}: [show]")),
        max_copy_bars=number(show, "max_copy_bars", 0, 8, SHOW_FIELDS, f"{path}: [show]", integer=True),
        midi_in=text(show, "midi_in", SHOW_FIELDS, f"{path}: [show]"),
        midi_out=text(show, "midi_out", SHOW_FIELDS, f"{path}: [show]"),
        record_dir=text(show, "record_dir", SHOW_FIELDS, f"{path}: [show]"),
        stage_view=flag(show, "stage_view", SHOW_FIELDS, f"{path}: [show]"),
        program_change=choice(show, "program_change", PROGRAM_CHANGE, SHOW_FIELDS, f"{path}: [show]"),
        cc=_cc_mappings(show, f"{path}: [show]"),
        osc=parse_osc(get(show, "osc", SHOW_FIELDS, f"{path}: [show.osc]"), f"{path}: [show.osc]"),
        link=parse_link(get(show, "link", SHOW_FIELDS, f"{path}: [show.link]"), f"{path}: [show.link]"),
    )


def _cc_mappings(show: dict, where: str) -> tuple[dict, ...]:
    v = get(show, "cc", SHOW_FIELDS, where)
    if not isinstance(v, list):
        raise bad(where, "cc", v, SHOW_FIELDS)
    try:
        MidiLearn(v)  # the one check of mappings: MIDI learn reads them back the same way
    except ParamError as exc:
        raise SetlistError(f"{where}: field 'cc': {exc}") from None
    return tuple(dict(m) for m in v)


def _parse_song(raw: Any, index: int, path: Path) -> Song:
    where = f"{path}: song {index + 1}"
    if not isinstance(raw, dict):
        raise SetlistError(f"{where}: each [[song]] must be a table")
    title = raw.get("title")
    if isinstance(title, str) and title.strip():
        where = f"{path}: song {index + 1} ({title!r})"
    check_unknown(raw, SONG_FIELDS, where)
    f = SONG_FIELDS
    title = get(raw, "title", f, where)
    if not isinstance(title, str) or not title.strip():
        raise bad(where, "title", title, f)
    tempo = number(raw, "tempo_bpm", 20, 400, f, where)
    key_text = get(raw, "key", f, where)
    key_auto = isinstance(key_text, str) and key_text.strip().lower().split()[:1] == ["auto"]
    try:
        if key_auto:
            start = key_text.strip()[4:].strip()
            key = parse_key(start) if start else Key(0, "chromatic")  # no key yet: the first estimate sets it
        else:
            key = parse_key(key_text) if isinstance(key_text, str) else parse_key("")
    except ValueError as exc:
        raise SetlistError(f"{where}: field 'key' = {key_text!r}: {exc}") from None
    key_follow = get(raw, "key_follow", f, where)
    if key_follow not in KEY_FOLLOW:
        raise bad(where, "key_follow", key_follow, f)
    key_change_at = get(raw, "key_change_at", f, where)
    if key_change_at not in KEY_CHANGE_AT:
        raise bad(where, "key_change_at", key_change_at, f)
    meter = _parse_meter(get(raw, "meter", f, where), where)
    mode = get(raw, "mode", f, where)
    if mode not in MODES:
        raise bad(where, "mode", mode, f)
    model = get(raw, "model", f, where)
    if not isinstance(model, str) or not model:
        raise bad(where, "model", model, f)
    pr = get(raw, "pitch_range", f, where)
    if (not isinstance(pr, list) or len(pr) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pr)
            or not 0 <= pr[0] < pr[1] <= 127):
        raise bad(where, "pitch_range", pr, f)
    vel = get(raw, "velocity", f, where)
    if vel == "follow":
        vel = None
    else:
        vel = param(raw, "velocity", f, where)
    trig = number(raw, "trigger_cc", -1, 127, f, where, integer=True)
    take = text(raw, "take", f, where)
    duet_model, duet_predictor, comp_model = (text(raw, n, f, where, non_empty=True)
                                              for n in ("duet_model", "duet_predictor", "comp_model"))
    anchors = get(raw, "anchors", f, where)
    if (not isinstance(anchors, list) or len(anchors) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**31 for x in anchors)):
        raise bad(where, "anchors", anchors, f)
    tap = number(raw, "tap_cc", -1, 127, f, where, integer=True)
    mode_cc = number(raw, "mode_cc", -1, 127, f, where, integer=True)
    song = Song(
        title=title.strip(),
        tempo_bpm=float(tempo),
        key=key,
        key_auto=key_auto,
        key_follow=key_follow,
        key_change_at=key_change_at,
        meter=meter,
        mode=mode,
        model=model,
        temperature=param(raw, "temperature", f, where),
        top_k=param(raw, "top_k", f, where),
        top_p=param(raw, "top_p", f, where),
        channel=number(raw, "channel", 1, 16, f, where, integer=True),
        pitch_range=(pr[0], pr[1]),
        silence_steps=param(raw, "silence_steps", f, where),
        response_bars=param(raw, "response_bars", f, where),
        velocity=vel,
        trigger_cc=None if trig < 0 else trig,
        max_note_beats=number(raw, "max_note_beats", 1, 64, f, where, integer=True),
        seed=number(raw, "seed", 0, 2**63 - 1, f, where, integer=True),
        take=take or None,
        voice=choice(raw, "voice", VOICES, f, where),
        duet_model=duet_model,
        duet_predictor=duet_predictor,
        comp_model=comp_model,
        comp_rhythm=choice(raw, "comp_rhythm", COMP_RHYTHMS, f, where),
        phrase_model=choice(raw, "phrase_model", PHRASE_MODELS, f, where),
        gan_models=names(raw, "gan_models", f, where),
        vae_models=names(raw, "vae_models", f, where),
        latent=choice(raw, "latent", LATENTS, f, where),
        phrase_every_bars=param(raw, "phrase_every_bars", f, where),
        candidates=number(raw, "candidates", 1, 64, f, where, integer=True),
        answer_candidates=number(raw, "answer_candidates", 0, 64, f, where, integer=True),
        sigma=param(raw, "sigma", f, where),
        walk_step=param(raw, "walk_step", f, where),
        anchors=(anchors[0], anchors[1]),
        tap_cc=None if tap < 0 else tap,
        mode_cc=None if mode_cc < 0 else mode_cc,
        density=param(raw, "density", f, where),
        style=tuple(param(raw, f"style_{k}", f, where) for k in STYLE_KNOBS),
        swing=None if raw.get("swing") == "follow" else param(raw, "swing", f, where),
        humanize_ms=param(raw, "humanize_ms", f, where),
        program=_optional(raw, "program", 1, 128, where),
        bank=_optional(raw, "bank", 0, 16383, where),
        select_program=_optional(raw, "select_program", 1, 128, where),
        select_bank=_optional(raw, "select_bank", 0, 16383, where),
    )
    return replace(song, partners=parse_partners(raw, song, index, path, _parse_song)) if "partner" in raw else song


def _optional(raw: dict, name: str, lo: int, hi: int, where: str) -> int | None:
    """An integer field where -1 means "none"."""
    v = get(raw, name, SONG_FIELDS, where)
    if v == -1 and not isinstance(v, bool):
        return None
    return number(raw, name, lo, hi, SONG_FIELDS, where, integer=True)


def _parse_meter(value: Any, where: str) -> tuple[int, int]:
    err = bad(where, "meter", value, SONG_FIELDS)
    if not isinstance(value, str) or value.count("/") != 1:
        raise err
    num, den = value.split("/")
    if not (num.strip().isdigit() and den.strip().isdigit()):
        raise err
    n, d = int(num), int(den)
    if not 1 <= n <= 32 or d not in (2, 4, 8, 16):
        raise err
    return n, d
