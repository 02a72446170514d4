"""Build a song's five modes from its loaded models (the one place that knows which model each mode plays).

``SongModels.load`` loads (and validates) every model a song can switch to live: the melody DNN (call and
response, and the duet's predictor of the performer), the duet DNN (duet, harmonize), the comp DNN (comp) and the
phrase model named by the song (GAN or VAE). Models are cached
by path across songs (``cache``), so a setlist that reuses them loads each file once. Loading happens before the
show; ``build_modes`` only makes the per-song objects (steppers with their own state, seeded RNG per mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from liveperf.music.copy_guard import CopyGuard, CopyIndex
from liveperf.music.feel import Feel
from liveperf.music.key_finder import FOLLOW_AUTO, FOLLOW_MODULATIONS, KeyFinder, KeyFollower
from liveperf.music.key_finder import shipped_model as shipped_key_model
from liveperf.models.comp_model import CompStepper
from liveperf.models.fused_duet import FusedDuetStep, find_fused
from liveperf.models.metadata import ModelMetadataError
from liveperf.models.onnx_model import LoadedModel, ModelLoadError, load_model, resolve_model_path, shipped_model_names
from liveperf.models.phrase_models import DuetStepper, GanModel, VaeModel
from liveperf.models.step_model import OnnxStepper
from liveperf.modes.anticipation import Anticipation
from liveperf.modes.band import Band, Part
from liveperf.modes.call_response import CallAndResponse
from liveperf.modes.planner import INLINE
from liveperf.modes.comp import Comp
from liveperf.modes.duet import Duet
from liveperf.modes.harmonize import Harmonize
from liveperf.modes.phrase import GanPhrases, PhraseMode, VaePhrases
from liveperf.modes.settings import settings_for
from liveperf.music.sampler import new_rng_state
from liveperf.setlist.schema import Song


@dataclass
class SongModels:
    melody: LoadedModel
    duet: LoadedModel
    phrase: GanModel | VaeModel
    predictor: LoadedModel | None = None  # the duet's predictor of the performer (None: the melody model)
    fused: LoadedModel | None = None  # the duet and its predictor in one graph (``liveperf.models.fused_duet``)
    comp: LoadedModel | None = None  # the comp's three voices (``liveperf.models.comp_model``)
    partners: list = field(default_factory=list)  # SongModels of partners 2.. (``[[song.partner]]``)

    @property
    def steps_per_beat(self) -> int:
        return self.melody.info.steps_per_beat

    @property
    def paths(self) -> list[Path]:
        p = self.phrase
        pair = (p.generator, p.critic) if isinstance(p, GanModel) else (p.encoder, p.decoder)
        extra = [m.path for m in (self.predictor, self.fused, self.comp) if m is not None]
        own = [self.melody.path, self.duet.path] + extra + [m.path for m in pair]
        return list(dict.fromkeys(own + [path for p in self.partners for path in p.paths]))

    @classmethod
    def load(cls, song: Song, base_dir: Path | None, provider: str = "cpu",
             cache: dict[Path, LoadedModel] | None = None) -> "SongModels":
        """Raises ModelLoadError naming the file (and what is wrong with it)."""
        cache = {} if cache is None else cache

        def get(name: str, field: str, check=None) -> LoadedModel:
            """The model the song's ``field`` names; errors say which field and value, and what would do."""
            path = resolve_model_path(name, base_dir)
            try:
                if path not in cache:
                    cache[path] = load_model(path, provider)
                if check is not None:
                    check(cache[path])
            except (ModelLoadError, ModelMetadataError) as exc:
                hint = ""
                if not name.endswith(".onnx") and not path.exists():
                    hint = (f" ({name!r} is not a shipped model: {', '.join(shipped_model_names())}; a file must "
                            f"end in .onnx)")
                raise ModelLoadError(f"field '{field}' = {name!r}: {exc}{hint}") from None
            return cache[path]

        melody = get(song.model, "model", lambda m: OnnxStepper(m, song.meter))
        duet = get(song.duet_model, "duet_model", DuetStepper)  # its contract now, not at the first switch to duet
        if song.phrase_model == "gan":
            phrase: GanModel | VaeModel = GanModel(get(song.gan_models[0], "gan_models"),
                                                   get(song.gan_models[1], "gan_models"))
        else:
            phrase = VaeModel(get(song.vae_models[0], "vae_models"), get(song.vae_models[1], "vae_models"))
        predictor = get(song.duet_predictor, "duet_predictor", lambda m: OnnxStepper(m, song.meter))
        comp = get(song.comp_model, "comp_model", lambda m: CompStepper(m, song.meter))
        partners = []
        for k, partner in enumerate(song.partners, start=2):
            try:
                partners.append(cls.load(partner, base_dir, provider, cache))
            except ModelLoadError as exc:
                raise ModelLoadError(f"partner {k}: {exc}") from None
        return cls(melody, duet, phrase, predictor, find_fused(duet, predictor or melody, cache, provider), comp,
                   partners)


def duet_anticipation(models: SongModels, song: Song, s) -> Anticipation | None:
    """The duet's anticipation (its own duet stepper and melody predictor), for a same-step duet model; None for a
    model trained hearing the performer a step late, which the duet feeds directly."""
    if models.duet.info.performer_lag_steps != 0:
        return None
    return Anticipation(DuetStepper(models.duet, meter=song.meter),
                        OnnxStepper(models.predictor or models.melody, song.meter), s.voice,
                        FusedDuetStep(models.fused) if models.fused is not None else None)


def build_modes(song: Song, models: SongModels, clock, sink, seed: int,
                now_fn: Callable[[], int] | None = None, reflex=None, copies: CopyIndex | None = None,
                max_copy_bars: int = 0, planner=INLINE) -> dict:
    """The song's modes, keyed by name; each mode owns its RNG stream (seed + a fixed offset per mode).
    ``planner`` (``liveperf.modes.planner``): where call and response plans its answers and phrase mode makes its
    phrases (the show's thread; at once in virtual time).
    ``reflex`` (``liveperf.modes.reflex``, the jack-native port's): harmonize draws its answers ahead for it. ``copies``
    (the shipped ``CopyIndex``) and ``max_copy_bars``: the copy guard of phrase mode and call and response (none
    when either is missing)."""
    s = settings_for(song, models.steps_per_beat)
    guard = CopyGuard(copies, max_copy_bars * s.steps_per_bar) if copies is not None and max_copy_bars else None
    source = GanPhrases(models.phrase) if isinstance(models.phrase, GanModel) else VaePhrases(models.phrase)
    # one per song: the performer's swing heard by every mode; humanize's own stream (seed + a fixed offset)
    feel = Feel(clock, models.steps_per_beat, s.swing, s.humanize_ms, seed + 7)
    return {
        "call_response": CallAndResponse(s, OnnxStepper(models.melody, song.meter), clock, sink, new_rng_state(seed),
                                         feel=feel, guard=guard, planner=planner),
        "duet": Duet(s, DuetStepper(models.duet, meter=song.meter), clock, sink, new_rng_state(seed + 1),
                     anticipation=duet_anticipation(models, song, s), now_fn=now_fn, feel=feel),
        "harmonize": Harmonize(s, DuetStepper(models.duet, meter=song.meter), clock, sink, new_rng_state(seed + 2),
                               now_fn, reflex),
        "phrase": PhraseMode(s, source, clock, sink, new_rng_state(seed + 3), feel=feel, guard=guard,
                             planner=planner),
        "comp": Comp(s, CompStepper(models.comp, meter=song.meter), clock, sink, new_rng_state(seed + 4), now_fn,
                     feel=feel),
    }


def build_song(song: Song, models: SongModels, clock, sink, seed: int, now_fn: Callable[[], int] | None = None,
               reflex=None, copies: CopyIndex | None = None, max_copy_bars: int = 0,
               planner=INLINE) -> tuple[dict, str]:
    """(modes, the mode the song starts in) for the engine: the song's modes, or with ``[[song.partner]]`` tables
    one ``Band`` of every partner's modes (``liveperf.modes.band``; the port's reflex answers a lone partner only).
    Partner k's RNG streams start from its own seed (``song.seed`` for the first: ``seed`` overrides it). ``copies``,
    ``max_copy_bars``: the copy guard (``build_modes``), for every partner; ``planner`` too."""
    if not song.partners:
        return build_modes(song, models, clock, sink, seed, now_fn, reflex, copies, max_copy_bars,
                           planner), song.mode
    parts = []
    for k, (partner, pm) in enumerate(zip((song,) + song.partners, [models] + models.partners), start=1):
        modes = build_modes(partner, pm, clock, sink, seed if k == 1 else partner.seed + seed - song.seed, now_fn,
                            copies=copies, max_copy_bars=max_copy_bars, planner=planner)
        parts.append(Part(partner.partner_name or partner.mode, modes, partner.mode, partner.pitch_range))
    return {"band": Band(parts, song.steps_per_bar(models.steps_per_beat), clock)}, "band"


def key_follower(song: Song, steps_per_bar: int, steps_per_beat: int) -> KeyFollower | None:
    """The song's key follower (``liveperf.music.key_finder``): ``key = "auto"`` follows the performer from the song's
    starting key (none for plain "auto"); ``key_follow = "modulations"`` moves the named key only on a clear change;
    None when the named key holds."""
    if not song.key_auto and song.key_follow != "modulations":
        return None
    finder = KeyFinder(shipped_key_model(), steps_per_bar, steps_per_beat)
    start = None if song.key.scale == "chromatic" else song.key
    return KeyFollower(finder, start, **(FOLLOW_AUTO if song.key_auto else FOLLOW_MODULATIONS))


def key_text(song: Song) -> str:
    """The song's key as the show log says it: "key auto", "key auto from G major", "E dorian (follows
    modulations)" or "D major"."""
    if song.key_auto:
        return "key auto" + ("" if song.key.scale == "chromatic" else f" from {song.key}")
    return str(song.key) + (" (follows modulations)" if song.key_follow == "modulations" else "")


def partners_text(song: Song) -> str:
    """"mode duet" or, with partners, "3 partners: duet on ch 2, comp on ch 3, lead (call_response) on ch 4"."""
    if not song.partners:
        return f"mode {song.mode}"
    parts = []
    for p in (song,) + song.partners:
        label = p.partner_name or p.mode
        parts.append((label if label == p.mode else f"{label} ({p.mode})") + f" on ch {p.channel}")
    return f"{len(parts)} partners: " + ", ".join(parts)
