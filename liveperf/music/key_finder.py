"""Hearing the key: what key and mode the performer plays in *now*, with a confidence, and when to move to it.

``KeyModel`` (loaded from ``liveperf/data/key_model.json``, trained by ``python -m export.train_key``; or the
Krumhansl-Kessler / Temperley profiles, for comparison) scores every candidate key: root 0..11 x each church mode
(``MODES``: major, dorian, phrygian, lydian, mixolydian, minor, locrian), by one small network applied to what was
heard seen from each root; a softmax over all 84 candidates gives each one's probability (``confidence``).

What was heard (``KeyFinder``) is ten pitch-class profiles (``FEATURES``), each kept twice, decaying with a short
and a long half-life in bars (recency: the network compares what was just played with what came before, which is
how it hears a modulation quickly yet a tune's key steadily): pitch classes *sounding* at each step (duration: each
held note counts), onsets by metric position (on the downbeat, on another beat, off the beat), the first note
after a bar of silence (a phrase's start), how each note was reached (by a leap of a fourth or more, by a semitone
up, by a semitone down), notes held a beat or more, and the note before a rest of a beat or more (a phrase's end).
Measured and chosen on held-out folk tunes (``python -m export.key_eval``; README): the learned network names the
key after 2 bars far more often than the classic profiles; the last five profiles and 48 hidden units (instead of
32) named more modulations within 2 bars (31 -> 39 %; validation tunes, session 16); 64 units trained on three
modulations per tune instead of one, 53 % (session 21).

Minor's raised seventh: the church modes are the candidates; a minor (aeolian) estimate in which the raised
seventh has been heard more than the flat one is reported as ``harmonic_minor`` (its mask has the leading tone);
a follower with ``refine_minor`` moves between the two when that changes.

``KeyFollower`` decides when the partner's key moves (hysteresis), asked at bar lines (or beats): a new key must
be the best candidate with probability >= ``enter`` at ``hold`` consecutive asks, beat the current key's
probability by ``margin``, have heard at least ``MIN_PITCH_CLASSES`` distinct pitch classes with weight, and fit
what was heard (>= ``MIN_IN_SCALE`` of the sounding weight in its scale); with ``escape``, when what was heard
lately plainly does not fit the current key (less than ``MIN_IN_SCALE`` in its scale), probability ``escape`` and
no margin suffice, and ``ask_escape`` lets that happen at a beat between bar lines too (a partner plainly in the
wrong key is put right within a beat; a modulation the old key still fits waits for the bar line). A single
repeated note, an atonal cluster, 128 held notes or minutes of silence therefore never move it: the last key holds, its confidence falls.

Engine thread only; bounded state (2 x 10 x 12 floats, at most 128 held notes). Per step: one fade and the held
notes' count; at a bar line, one compiled scoring of the 84 candidates (numba; ``python -m export.key_eval`` and
``liveperf check`` time it).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from numba import types

from liveperf.music.scales import ROOT_SPELLING, Key

#: The candidate modes, in the order of the profile arrays (church modes: rotations of the major scale).
MODES = ("major", "dorian", "phrygian", "lydian", "mixolydian", "minor", "locrian")
#: The heard profiles, in the order of ``KeyFinder.heard``.
FEATURES = ("sounding", "downbeat", "beat", "offbeat", "phrase_start", "leap_in", "semitone_up_in", "semitone_down_in",
            "long", "phrase_end")
NUM_FEATURES = len(FEATURES)
NUM_INPUTS = 2 * NUM_FEATURES * 12  # (short, long) x features x pitch classes
MIN_PITCH_CLASSES = 4  # distinct pitch classes (each with >= 5 % of the sounding weight) before any change
MIN_IN_SCALE = 0.8  # share of the sounding weight inside the new key's scale
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "key_model.json"

_KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
_TEMPERLEY_MAJOR = (0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400)
_TEMPERLEY_MINOR = (0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330)


class KeyModel:
    """Scores every candidate key from what was heard: ``scores(heard)`` -> float64 (len(MODES) * 12,), candidate
    ``m * 12 + root``. The same small network looks at the heard profiles from each of the 12 roots (rotated so
    index i is i semitones above the root; ``transform`` applied first): ``relu(x @ w1 + b1) @ w2 + b2`` gives the
    7 modes' scores for that root (``relu`` False: a linear model, the classic profiles). Immutable after load."""

    def __init__(self, w1, b1, w2, b2, *, half_lives_bars: tuple[float, float] = (1.0, 4.0), transform: str = "log1p", relu: bool = True,
                 name: str = "learned") -> None:
        self.w1, self.b1, self.w2, self.b2 = (np.asarray(a, dtype=np.float64) for a in (w1, b1, w2, b2))
        hidden = self.b1.shape[0] if self.b1.ndim == 1 else -1
        if self.w1.shape != (NUM_INPUTS, hidden) or self.w2.shape != (hidden, len(MODES)) \
                or self.b2.shape != (len(MODES),):
            raise ValueError(f"key model shapes must be w1 ({NUM_INPUTS}, H), b1 (H,), w2 (H, {len(MODES)}), "
                             f"b2 ({len(MODES)},); got {self.w1.shape}, {self.b1.shape}, {self.w2.shape}, "
                             f"{self.b2.shape}")
        if not all(np.isfinite(a).all() for a in (self.w1, self.b1, self.w2, self.b2)) \
                or len(half_lives_bars) != 2 or not min(half_lives_bars) > 0:
            raise ValueError("key model weights must be finite, with two half-lives > 0")
        if transform not in ("log1p", "none"):
            raise ValueError(f"unknown key model transform {transform!r}")
        self.half_lives_bars = (float(half_lives_bars[0]), float(half_lives_bars[1]))
        self.transform, self.relu, self.name = transform, bool(relu), name
        # One matrix for the first layer at all 12 roots: input j = (t*F+f)*12 + pc feeds root r's hidden unit h
        # through w1[(t*F+f)*12 + (pc - r) % 12, h]. Kept in float32 for the compiled kernel: its rows are the
        # bar line's cost (half the memory, twice the SIMD lanes: ~30 % faster); probabilities stay within 6e-7 of
        # float64's on real tunes' profiles, 2.6e-5 at worst on random 0-200 ones (the test's bound: 1e-4).
        j = np.arange(NUM_INPUTS)
        hidden = self.w1.shape[1]
        w1_all = np.empty((NUM_INPUTS, 12 * hidden))
        for r in range(12):
            w1_all[:, r * hidden:(r + 1) * hidden] = self.w1[(j // 12) * 12 + (j % 12 - r) % 12]
        self._w1_all64, self._b1_all64 = w1_all, np.tile(self.b1, 12)  # the specification's (``scores``)
        self._w1_all = w1_all.astype(np.float32)
        self._b1_all = self._b1_all64.astype(np.float32)
        self._w2 = np.ascontiguousarray(self.w2)

    def scores(self, heard: np.ndarray) -> np.ndarray:
        """The candidates' scores with numpy (the specification ``probabilities`` is tested against)."""
        x = heard.ravel()
        if self.transform == "log1p":
            x = np.log1p(x)
        h = (x @ self._w1_all64 + self._b1_all64).reshape(12, -1)  # (12 roots, H)
        if self.relu:
            np.maximum(h, 0.0, out=h)
        return (h @ self.w2 + self.b2).T.ravel()  # (modes, roots) -> m * 12 + root

    def probabilities(self, heard: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Softmax of ``scores(heard)`` into ``out`` (float64 (84,)), compiled: one call, the inputs that are
        zero skipped (many are: a tune plays few pitch classes on few metric positions)."""
        _probabilities(np.ascontiguousarray(heard, dtype=np.float64).ravel(), self._w1_all, self._b1_all, self._w2,
                       self.b2, self.transform == "log1p", self.relu, out)
        return out

    def to_json(self) -> str:
        return json.dumps({"format": "liveperf.key_model", "version": 1, "name": self.name, "modes": list(MODES),
                           "features": list(FEATURES), "half_lives_bars": list(self.half_lives_bars),
                           "transform": self.transform, "relu": self.relu,
                           **{k: np.round(getattr(self, k), 6).tolist() for k in ("w1", "b1", "w2", "b2")}})

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> "KeyModel":
        """A model from a JSON file written by ``to_json``; ``ValueError`` naming the file when it does not fit."""
        try:
            raw = json.loads(Path(path).read_text())
            if raw.get("format") != "liveperf.key_model" or raw.get("modes") != list(MODES) \
                    or raw.get("features") != list(FEATURES):
                raise ValueError("not a liveperf key model for these modes and features")
            return cls(raw["w1"], raw["b1"], raw["w2"], raw["b2"], half_lives_bars=tuple(float(h) for h in raw["half_lives_bars"]),
                       transform=str(raw["transform"]), relu=bool(raw["relu"]), name=str(raw.get("name", "")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: cannot read the key model ({exc})") from None

    @classmethod
    def classic(cls, which: str = "krumhansl", half_lives_bars: tuple[float, float] = (1.0, 4.0)) -> "KeyModel":
        """Krumhansl-Kessler or Temperley major/minor profiles (correlation with the sounding profile; the other
        modes get a large negative score; the long half-life's sounding profile), for comparison."""
        major, minor = (_KK_MAJOR, _KK_MINOR) if which == "krumhansl" else (_TEMPERLEY_MAJOR, _TEMPERLEY_MINOR)
        w1 = np.zeros((NUM_INPUTS, len(MODES)))
        b1 = np.full(len(MODES), -1e3)
        for mode, prof in (("major", major), ("minor", minor)):
            p = np.asarray(prof) - np.mean(prof)
            w1[NUM_FEATURES * 12:NUM_FEATURES * 12 + 12, MODES.index(mode)] = p / np.linalg.norm(p)
            b1[MODES.index(mode)] = 0.0
        return cls(w1, b1, np.eye(len(MODES)), np.zeros(len(MODES)), half_lives_bars=half_lives_bars,
                   transform="none", relu=False, name=which)


_F64, _F64_2D = types.float64[::1], types.float64[:, ::1]
_F32, _F32_2D = types.float32[::1], types.float32[:, ::1]


@numba.njit(types.void(_F64, _F32_2D, _F32, _F64_2D, _F64, types.boolean, types.boolean, _F64), cache=True,
            nogil=True)
def _probabilities(x, w1_all, b1_all, w2, b2, use_log, use_relu, out):  # pragma: no cover (compiled)
    # The first layer at all 12 roots is one dense float32 matrix (``KeyModel._w1_all``): each input that is not
    # zero adds one contiguous row of 12 x hidden weights (vectorised), instead of 12 gathers of a rotated input.
    n_in, width = w1_all.shape
    hidden, modes = w2.shape
    h = b1_all.copy()
    for i in range(n_in):
        v = np.float32(np.log1p(x[i]) if use_log else x[i])
        if v != 0.0:
            for c in range(width):
                h[c] += v * w1_all[i, c]
    if use_relu:
        for c in range(width):
            if h[c] < 0.0:
                h[c] = 0.0
    for r in range(12):
        for m in range(modes):
            s = b2[m]
            for j in range(hidden):
                s += h[r * hidden + j] * w2[j, m]
            out[m * 12 + r] = s
    top = out.max()
    total = 0.0
    for k in range(out.size):
        out[k] = np.exp(out[k] - top)
        total += out[k]
    for k in range(out.size):
        out[k] /= total


def key_of_candidate(index: int) -> Key:
    """The ``Key`` of candidate ``m * 12 + root``."""
    return _CANDIDATES[int(index)]


_CANDIDATES = tuple(Key(root, mode, ROOT_SPELLING[root]) for mode in MODES for root in range(12))
_HARMONIC = tuple(Key(root, "harmonic_minor", ROOT_SPELLING[root]) for root in range(12))
#: Each candidate's (and harmonic minor's) scale as a 0/1 mask over the 12 pitch classes, by (root, scale).
_MASKS = {(k.root, k.scale): np.isin(np.arange(12), k.pitch_classes).astype(np.float64)
          for k in _CANDIDATES + _HARMONIC}


@numba.njit(types.float64(types.float64[::1], types.float64[::1], types.int64), cache=True, nogil=True)
def _in_scale(sounding, mask, min_classes):  # pragma: no cover (compiled) -- KeyFinder.in_scale
    total = 0.0
    for c in range(12):
        total += sounding[c]
    if total <= 1e-9:
        return -1.0
    classes = 0
    inside = 0.0
    for c in range(12):
        classes += sounding[c] >= 0.05 * total
        inside += sounding[c] * mask[c]
    return inside / total if classes >= min_classes else -1.0


class KeyFinder:
    """What the performer played, fading with time, and the key it speaks for (module docstring). Engine thread.

    ``note_on(pitch, step)`` / ``note_off(pitch, step)``: the performer's notes, each quantised to its nearest
    ``step``. Onsets count by metric position. Duration counts from each note's own on and off steps, one per
    step, however late the grid is computed (a 16th note that starts and ends between two computations still
    counts its step). ``on_step(step)``: the grid reached ``step``: what was heard fades, held notes count up to
    it. ``estimate()``: the best candidate and its probability. At most 128 notes are held; nothing else grows."""

    def __init__(self, model: KeyModel, steps_per_bar: int, steps_per_beat: int) -> None:
        self.model = model
        self.steps_per_bar = max(1, int(steps_per_bar))
        self.steps_per_beat = max(1, int(steps_per_beat))
        self._decay = np.array([0.5 ** (1.0 / (h * self.steps_per_bar)) for h in model.half_lives_bars])[:, None, None]
        self.heard = np.zeros((2, NUM_FEATURES, 12))  # [short / long half-life, feature, pitch class]
        self.onsets = 0  # note-ons heard since the last ``clear``
        self._last_pitch = 0  # the last note-on's pitch (meaningful once ``onsets`` > 0)
        self._last_sound_step = 0
        self._held: dict[int, list[int]] = {}  # pitch -> [onset step, first step not yet counted]

    def clear(self) -> None:
        """Forget everything heard (a new song)."""
        self.heard[:] = 0.0
        self.onsets = 0
        self._held.clear()

    def note_on(self, pitch: int, step: int) -> None:
        pos = step % self.steps_per_bar
        feature = 1 if pos == 0 else 2 if pos % self.steps_per_beat == 0 else 3
        pc = pitch % 12
        self.heard[:, feature, pc] += 1.0
        silence = step - self._last_sound_step if not self._held else 0
        if self.onsets == 0 or silence > self.steps_per_bar:
            self.heard[:, 4, pc] += 1.0  # the first note after a bar of silence (or of the song)
        if self.onsets > 0:
            # How the note was reached, and where the last phrase stopped: a leap lands on the tonic or the fifth
            # more often than not, a semitone step on the tonic (from the leading tone) or a scale's half step, a
            # phrase ends on its tonic or fifth. Cheap cues the profiles alone lack.
            interval = pitch - self._last_pitch
            if abs(interval) >= 5:
                self.heard[:, 5, pc] += 1.0
            elif interval == 1:
                self.heard[:, 6, pc] += 1.0
            elif interval == -1:
                self.heard[:, 7, pc] += 1.0
            if silence >= self.steps_per_beat:  # a rest of a beat or more: the note before it ended a phrase
                self.heard[:, 9, self._last_pitch % 12] += 1.0
        self._last_pitch = pitch
        self.onsets += 1
        if pitch in self._held:  # re-struck without a note-off
            self.note_off(pitch, step)
        self._held[pitch] = [step, step]

    def note_off(self, pitch: int, step: int) -> None:
        entry = self._held.pop(pitch, None)
        if entry is None:
            return
        onset, uncounted = entry
        if step - onset >= self.steps_per_beat:
            self.heard[:, 8, pitch % 12] += 1.0  # a note held a beat or more
        steps = step - uncounted
        if uncounted == onset:
            steps = max(1, steps)  # a note shorter than a step sounds for one
        if steps > 0:
            self.heard[:, 0, pitch % 12] += steps
        self._last_sound_step = max(self._last_sound_step, step)

    def release_all(self, step: int) -> None:
        """Every key up at ``step`` (All Notes Off, the input ended)."""
        for pitch in list(self._held):
            self.note_off(pitch, step)

    def on_step(self, step: int) -> None:
        self.heard *= self._decay
        if step % self.steps_per_bar == 0:  # after minutes of silence: no subnormal floats (slow arithmetic)
            np.putmask(self.heard, self.heard < 1e-12, 0.0)
        for pitch, entry in self._held.items():
            if step > entry[1]:
                self.heard[:, 0, pitch % 12] += step - entry[1]
                entry[1] = step
            self._last_sound_step = step

    def probabilities(self) -> np.ndarray:
        """Probability of every candidate (``m * 12 + root``), float64 (len(MODES) * 12,)."""
        return self.model.probabilities(self.heard, np.empty(len(MODES) * 12))  # a new array: callers keep it

    def estimate(self) -> tuple[Key, float, np.ndarray]:
        """``(key, probability, probabilities)``: the best candidate (minor with the raised seventh heard more than
        the flat one: harmonic_minor), its probability and every candidate's."""
        p = self.probabilities()
        best = int(np.argmax(p))
        key = key_of_candidate(best)
        if key.scale == "minor":
            sounding = self.heard[1, 0]
            if sounding[(key.root + 11) % 12] > sounding[(key.root + 10) % 12]:
                key = _HARMONIC[key.root]
        return key, float(p[best]), p

    def in_scale(self, key: Key) -> float | None:
        """The share of what sounded lately (the short half-life) that lies in ``key``'s scale; None when too
        little was heard to say (fewer than ``MIN_PITCH_CLASSES`` pitch classes with 5 % of the weight each)."""
        mask = _MASKS.get((key.root, key.scale))
        if mask is None:
            mask = np.isin(np.arange(12), key.pitch_classes).astype(np.float64)
        share = _in_scale(self.heard[0, 0], mask, MIN_PITCH_CLASSES)  # compiled: asked at every beat
        return None if share < 0.0 else share

    def fits(self, key: Key) -> bool:
        """Whether what sounded lately supports a move to ``key``: enough distinct pitch classes, mostly
        (``MIN_IN_SCALE``) in its scale."""
        share = self.in_scale(key)
        return share is not None and share >= MIN_IN_SCALE


def candidate_index(key: Key) -> int | None:
    """The candidate of ``key`` (harmonic minor is scored as minor); None for a scale that is not a church mode."""
    scale = "minor" if key.scale in ("harmonic_minor", "melodic_minor") else key.scale
    return MODES.index(scale) * 12 + key.root if scale in MODES else None


@dataclass(frozen=True)
class KeyChange:
    step: int
    key: Key
    confidence: float


class KeyFollower:
    """When the partner's key moves (module docstring): ``ask(step)`` at a bar line (or beat) returns the new
    ``Key`` or None; ``key`` and ``confidence`` are the current ones. Engine thread only."""

    def __init__(self, finder: KeyFinder, start: Key | None, *, enter: float = 0.6, margin: float = 0.25,
                 hold: int = 1, refine_minor: bool = True, escape: float | None = None) -> None:
        self.finder = finder
        # When what was just played does not fit the current key (less than MIN_IN_SCALE in its scale), the
        # current key is plainly wrong: a new one needs only probability ``escape`` and no margin (None: as usual).
        self.escape = escape
        self.refine_minor = refine_minor  # minor <-> harmonic minor as the heard seventh changes
        self.key = start
        self.confidence = 0.0
        self.enter, self.margin, self.hold = float(enter), float(margin), max(1, int(hold))
        self.changes: list[KeyChange] = []
        self._streak: tuple[Key | None, int] = (None, 0)

    def ask(self, step: int) -> Key | None:
        best, p_best, p = self.finder.estimate()
        current = candidate_index(self.key) if self.key is not None else None
        p_current = float(p[current]) if current is not None else 0.0
        self.confidence = p_current if self.key is not None and not _same_candidate(best, self.key) else p_best
        if self.key is not None and _same_candidate(best, self.key):
            self._streak = (None, 0)
            if (self.refine_minor and best != self.key and {best.scale, self.key.scale} == {"minor", "harmonic_minor"}
                    and self.finder.fits(best)):  # the seventh heard changed
                return self._move(step, best, p_best)
            return None
        enter, margin = self.enter, self.margin
        if self.escape is not None and self.key is not None:
            share = self.finder.in_scale(self.key)
            if share is not None and share < MIN_IN_SCALE:
                enter, margin = min(enter, self.escape), 0.0
        if p_best < enter or p_best - p_current < margin or not self.finder.fits(best):
            self._streak = (None, 0)
            return None
        seen, count = self._streak
        count = count + 1 if seen == best else 1
        self._streak = (best, count)
        if count < self.hold:
            return None
        return self._move(step, best, p_best)

    def ask_escape(self, step: int) -> Key | None:
        """Between bar lines (at beats): move only when the current key plainly does not fit what was just played
        (the escape rule of ``ask``); a key that still fits waits for the bar line. None: no move."""
        if self.escape is None or self.key is None:
            return None
        share = self.finder.in_scale(self.key)
        if share is None or share >= MIN_IN_SCALE:
            return None
        return self.ask(step)

    def _move(self, step: int, key: Key, p: float) -> Key:
        self.key, self.confidence, self._streak = key, p, (None, 0)
        self.changes.append(KeyChange(step, key, p))
        return key


#: Follower settings: ``key = "auto"`` follows the estimate; ``key_follow = "modulations"`` moves a named key only
#: on a clear, lasting change.
FOLLOW_AUTO = {"enter": 0.6, "margin": 0.25, "hold": 1, "refine_minor": True, "escape": 0.4}
FOLLOW_MODULATIONS = {"enter": 0.8, "margin": 0.5, "hold": 2, "refine_minor": False}


@functools.lru_cache(maxsize=4)
def shipped_model(path: Path = DEFAULT_MODEL) -> KeyModel:
    """The shipped key model, read once per process (immutable)."""
    return KeyModel.load(path)


def _same_candidate(a: Key, b: Key) -> bool:
    return candidate_index(a) == candidate_index(b)


__all__ = ["MODES", "FEATURES", "KeyModel", "KeyFinder", "KeyFollower", "KeyChange", "key_of_candidate",
           "candidate_index"]
