"""What every mode needs to know about a song, on a model's grid (``settings_for``), and the counters modes keep.

``ModeSettings`` is immutable; a live parameter change (OSC, MIDI CC) replaces a mode's settings object between
steps on the engine thread (``dataclasses.replace``), so a step never sees half a change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from liveperf.music.melody import PITCH_OFFSET
from liveperf.modes.answer_plan import tonic_triad
from liveperf.music.scales import SCALES, token_mask
from liveperf.setlist.schema import Song
from liveperf.music.style import KNOB_PARAMS, STYLE_KNOBS

PHRASE_SOURCES = ("gan", "vae")
LATENT_SOURCES = ("random", "walk", "interpolate", "variation", "restyle")


@dataclass(frozen=True)
class ModeSettings:
    """A song's settings as the modes use them (steps at the model's grid; see setlist.Song for meaning)."""

    channel: int  # 0..15
    allowed: np.ndarray  # bool (130,): key/scale and range mask (HOLD/OFF included)
    temperature: float
    top_k: int
    top_p: float
    silence_steps: int
    response_steps: int
    velocity: int | None  # None: follow the performer
    max_note_steps: int
    steps_per_bar: int = 16
    voice: int = 0  # duet / harmonize partner voice (0 bass, 1 tenor, 2 alto)
    phrase_source: str = "gan"  # phrase mode: "gan" | "vae"
    latent: str = "random"  # phrase mode, VAE latent source: random | walk | interpolate | variation
    phrase_every_steps: int = 64  # phrase mode: a phrase starts every this many steps (whole bars)
    candidates: int = 8  # phrase mode, GAN: candidates ranked by the critic
    sigma: float = 0.5  # variation: spread around the encoded performer phrase
    walk_step: float = 0.25  # walk: AR(1) step; interpolate: advance of t per phrase
    anchors: tuple[int, int] = (1, 2)  # interpolate: seeds of the two anchor latents
    density: float = 1.0  # chance that a partner note-on is played (else a rest)
    swing: float | None = 0.5  # the off-beat eighths' place in the beat (liveperf.music.feel); None: follow the performer
    humanize_ms: float = 0.0  # the largest seeded delay of a step's notes (liveperf.music.feel)
    answer_candidates: int = 0  # call and response: whole answers planned at the phrase end (0 = step by step)
    tonic_pcs: frozenset = frozenset()  # pitch classes of the key's tonic triad (answers end on a cadence)
    key_allowed: np.ndarray | None = None  # bool (130,): the key's mask over all 128 pitches (the comp's voices
    # keep their own ranges); None: every pitch
    comp_rhythm: str = "beat"  # comp: when the voices move ("beat" | "half_bar" | "bar" | "model")
    style: tuple[float, ...] = (0.0,) * len(STYLE_KNOBS)  # phrase mode, VAE: the style knobs (liveperf.music.style)


# Live parameters (liveperf.params) that are mode settings: parameter -> (settings field, value -> field value).
# ``bar`` is the song's steps per bar. tempo_bpm, mode and anchor_t are the engine's, not the modes'.
_SETTING_OF_PARAM = {
    "temperature": ("temperature", lambda v, bar: float(v)),
    "top_k": ("top_k", lambda v, bar: int(v)),
    "top_p": ("top_p", lambda v, bar: float(v)),
    "velocity": ("velocity", lambda v, bar: int(v)),
    "sigma": ("sigma", lambda v, bar: float(v)),
    "walk_step": ("walk_step", lambda v, bar: float(v)),
    "density": ("density", lambda v, bar: float(v)),
    "swing": ("swing", lambda v, bar: float(v)),
    "humanize_ms": ("humanize_ms", lambda v, bar: float(v)),
    "silence_steps": ("silence_steps", lambda v, bar: int(v)),
    "response_bars": ("response_steps", lambda v, bar: int(v) * bar),
    "phrase_every_bars": ("phrase_every_steps", lambda v, bar: int(v) * bar),
    "partner_channel": ("channel", lambda v, bar: int(v) - 1),
    "comp_rhythm": ("comp_rhythm", lambda v, bar: str(v)),
    **{name: ("style", None) for name in KNOB_PARAMS},
}


def with_param(settings: ModeSettings, name: str, value) -> ModeSettings | None:
    """``settings`` after live parameter ``name`` = ``value`` (already checked by ``params.coerce``); None when the
    parameter is not a mode setting."""
    entry = _SETTING_OF_PARAM.get(name)
    if entry is None:
        return None
    field, convert = entry
    if field == "style":
        knobs = list(settings.style)
        knobs[KNOB_PARAMS.index(name)] = float(value)
        return replace(settings, style=tuple(knobs))
    return replace(settings, **{field: convert(value, settings.steps_per_bar)})


def settings_for(song: Song, steps_per_beat: int) -> ModeSettings:
    """The modes' view of a setlist song on a model's grid."""
    low, high = song.pitch_range
    bar = song.steps_per_bar(steps_per_beat)
    return ModeSettings(
        channel=song.channel - 1,
        allowed=token_mask(song.key, low, high),
        temperature=song.temperature,
        top_k=song.top_k,
        top_p=song.top_p,
        silence_steps=song.silence_steps,
        response_steps=song.response_bars * bar,
        velocity=song.velocity,
        max_note_steps=song.max_note_beats * steps_per_beat,
        steps_per_bar=bar,
        voice=song.voice_index,
        phrase_source=song.phrase_model,
        latent=song.latent,
        phrase_every_steps=song.phrase_every_bars * bar,
        candidates=song.candidates,
        sigma=song.sigma,
        walk_step=song.walk_step,
        anchors=song.anchors,
        density=song.density,
        swing=song.swing,
        humanize_ms=song.humanize_ms,
        answer_candidates=song.answer_candidates,
        tonic_pcs=key_tonic(song.key),
        key_allowed=token_mask(song.key, 0, 127),
        comp_rhythm=song.comp_rhythm,
        style=song.style,
    )


def key_tonic(key) -> frozenset:
    """The pitch classes of ``key``'s tonic triad (answers end on a cadence)."""
    return tonic_triad(key.root, SCALES[key.scale])


def with_key(settings: ModeSettings, key, pitch_range: tuple[int, int]) -> ModeSettings:
    """``settings`` in ``key`` (a key change heard by ``liveperf.music.key_finder``): the mask and the cadence's tonic.
    ``ValueError`` when no pitch of ``key`` lies in ``pitch_range``."""
    allowed = token_mask(key, pitch_range[0], pitch_range[1])
    if not allowed[PITCH_OFFSET:].any():
        raise ValueError(f"no pitch of {key} in the partner's range {list(pitch_range)}")
    return replace(settings, allowed=allowed, tonic_pcs=key_tonic(key), key_allowed=token_mask(key, 0, 127))


@dataclass
class ModeStats:
    """Counters of one mode over a song; owned by the engine thread, read after the song."""

    responses: int = 0  # call-and-response answers started
    plans: int = 0  # call-and-response answers planned whole (``answer_plan``)
    plans_late: int = 0  # ... whose plan was not done when the answer started: drawn step by step instead
    interrupted: int = 0  # answers cut short by the performer
    tokens: int = 0  # partner tokens sampled
    phrases: int = 0  # phrase mode: phrases generated
    phrases_late: int = 0  # ... that came in from the planner after their first step was computed (played from there)
    harmonies: int = 0  # harmonize: partner notes started
    no_candidate: int = 0  # a sample found no allowed token (masks too tight): nothing played
    fallbacks: int = 0  # phrase mode: a latent source fell back (e.g. variation with a silent performer)
    copies_redrawn: int = 0  # phrases / answers drawn again: they replayed a training passage (liveperf.music.copy_guard)
    copies_cut: int = 0  # ... still did after every redraw, and were cut short of it
    model_errors: int = 0
    last_error: str = ""
