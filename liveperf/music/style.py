"""Style knobs: five musical attributes of a phrase, measured the same way wherever they are used, and what moves
them in a phrase the VAE makes.

Attributes of a token phrase (``liveperf.melody`` tokens on a 16th grid, ``steps_per_beat`` steps per beat, the
phrase starting on a beat). A phrase without an onset has none (NaN):
- ``density``: onsets per beat;
- ``register``: mean MIDI pitch of the onsets;
- ``range``: the spread of the onset pitches (standard deviation, semitones): how far the contour moves (the
  span from lowest to highest grows with the number of notes; the spread much less);
- ``mood``: bright vs dark. The phrase's diatonic collection is the major scale that holds most of its sounding time
  (ties: the better Krumhansl-Kessler fit); mood is how much better its pitch-class profile (weighted by how long
  each pitch sounds) correlates with that scale's major key than with its relative minor (-2..2; positive is
  major-coloured). Comparing the relative pair, not the best major with the best minor anywhere, is what tells
  C major from A minor: both use the same notes;
- ``syncopation``: share of onsets that sound through a metrically stronger position of the beat than their own
  (a 16th held over the half-beat, an off-beat note held over the next beat).

The knobs (``STYLE_KNOBS``, live parameters ``style_<name>`` from -1 to 1, 0 = neutral) act on the VAE's phrase
through five means, one per attribute (``controls``):
- ``density``, ``register`` and ``syncopation`` move the latent code before decoding (``attribute_offset``). The
  directions are fitted offline (``python -m export.vae_attributes``) on the VAE's training phrases: the code
  regressed on the five standardised attributes together, so a direction is the change of the mean code per
  standard deviation of its attribute with the others held; a knob at +-1 moves the code by ``KNOB_SPAN_SD`` of them.
- ``range``, ``mood`` (and ``syncopation`` a second time) steer the decoder's logits (``steer``): the code does not
  carry range or mood in a line the decoder follows (moving along either changed the decoded phrases by a fifth of
  a standard deviation). ``range`` favours pitches far from (or near to) the phrase's own centre, ``mood`` the
  pitch classes of the key's major (or of its relative minor), ``syncopation`` onsets off the beat held over it.
- Each means also moves the other attributes (more notes spread wider). The ``mix`` (5 x 5), measured through the
  live generator and inverted offline, gives the blend of means that moves a knob's own attribute and, to first
  order, no other. Directions and mix ship inside the decoder's metadata (``liveperf.attribute_directions``).
- A turned knob also *chooses*: phrase mode draws ``candidates_for(knobs)`` phrases (1 at 0, ``SELECT_MAX`` from
  +-0.5 on; from ``SELECT_CODES`` codes near the steered one) and keeps the one ``choose`` finds nearest what the
  knobs ask (each turned knob's attribute at ``TARGET_SPAN_SD`` x knob standard deviations of the model's own
  phrases, ``ATTRIBUTE_MEAN`` / ``ATTRIBUTE_SD``; the others near their mean; the notes in one scale). Steering
  alone moved the means, but a phrase-to-phrase spread as wide as real music's hid the knob (docs/modes.md).
- Restyle (phrase mode's ``latent = "restyle"``: the performer's last 2 bars encoded, no noise) reshapes the
  performer's own line for ``register`` (steps along the scale, ``reshape_line``) and ``range`` (distances from its
  centre stretched), so its contour stays; the other knobs move the code as above, the decoder is held near the
  performer's line (``anchor``), and the choice asks for the performer's attributes moved ``RESTYLE_SPAN_SD`` and
  for their contour (``contour_corr``). The strengths were chosen on the content split's validation tunes.
- Call and response's planned answers are chosen among their candidates with the knobs too
  (``liveperf.modes.answer_plan.style_score``).
Pure functions; no threads.
"""

from __future__ import annotations

import json

import numba
import numpy as np
from numba import types

from liveperf.music import melody

STYLE_KNOBS = ("density", "register", "range", "mood", "syncopation")
LATENT_KNOBS = ("density", "register", "syncopation")  # moved in the code; the others steer the logits
KNOB_PARAMS = tuple(f"style_{k}" for k in STYLE_KNOBS)
KNOB_SPAN_SD = 3.0  # a latent knob at +-1 moves the code by 3 of its attribute's standard deviations
RANGE_LOGIT = 5.0  # logit bias per 6 semitones from the phrase's centre, at range = +-1
SYNC_LOGIT = 1.5  # logit bias on onsets off the beat and on holding over the beat, at syncopation = +-1
MOOD_LOGIT = 4.0  # logit bias per standard deviation of the major-minus-minor profile, at mood = +-1
METADATA_KEY = "attribute_directions"

# Krumhansl-Kessler key profiles (tonic first)
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _rotations(profile: np.ndarray) -> np.ndarray:
    rows = np.stack([np.roll(profile, r) for r in range(12)])
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


_MAJOR_ROWS = _rotations(KK_MAJOR)
_MINOR_ROWS = _rotations(KK_MINOR)


@numba.njit(numba.int64(numba.int64, numba.int64), cache=True, nogil=True)
def _weight(step, spb):  # pragma: no cover (compiled; the specification and the compiled rows both call it)
    """Metrical weight of a step within its beat: 2 on the beat, 1 on the half beat, 0 elsewhere."""
    pos = step % spb
    if pos == 0:
        return 2
    return 1 if spb % 2 == 0 and pos == spb // 2 else 0


TIE = 1e-9  # fits this close are equal (a symmetric profile fits two scales equally, up to rounding)
_DIATONIC = np.stack([np.isin(np.arange(12), (np.array([0, 2, 4, 5, 7, 9, 11]) + r) % 12) for r in range(12)])


def _mood(held: np.ndarray) -> float:
    """``mood`` of a pitch-class profile of sounding time [12] (module docstring)."""
    if held.std() == 0:
        return 0.0
    prof = (held - held.mean()) / np.linalg.norm(held - held.mean())
    major, minor = _MAJOR_ROWS @ prof, np.roll(_MINOR_ROWS @ prof, -9)  # minor[r]: the relative minor of r major
    inside = _DIATONIC.astype(np.float64) @ held
    best = np.flatnonzero(inside == inside.max())
    fit = np.maximum(major[best], minor[best])
    r = int(best[np.flatnonzero(fit >= fit.max() - TIE)[0]])  # the first of equal fits, whatever the rounding
    return float(major[r] - minor[r])


def attributes(tokens, steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT) -> np.ndarray:
    """The five attributes (``STYLE_KNOBS`` order) of one phrase, float64 [5]; NaN where a phrase has no onset."""
    t = np.asarray(tokens, dtype=np.int64)
    on = np.flatnonzero(t >= melody.PITCH_OFFSET)
    if on.size == 0:
        return np.full(len(STYLE_KNOBS), np.nan)
    pitches = t[on] - melody.PITCH_OFFSET
    sounding = melody.sounding_pitch(t)
    held = np.bincount(sounding[sounding >= 0] % 12, minlength=12).astype(np.float64)
    mood = _mood(held)
    syncopated = 0
    ends = list(on[1:]) + [t.size]
    for start, nxt in zip(on, ends):
        end = start + 1
        while end < nxt and t[end] == melody.HOLD:
            end += 1  # the note sounds through steps start .. end - 1
        w = _weight(int(start), steps_per_beat)
        if any(_weight(s, steps_per_beat) > w for s in range(int(start) + 1, int(end))):
            syncopated += 1
    return np.array([on.size / (t.size / steps_per_beat), pitches.mean(), pitches.std(),
                     mood, syncopated / on.size])


def attributes_of(phrases, steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT) -> np.ndarray:
    """``attributes`` of each phrase of ``phrases`` [N, T]: float64 [N, 5]."""
    return np.stack([attributes(p, steps_per_beat) for p in np.asarray(phrases)])


def attributes_rows(phrases, steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT) -> np.ndarray:
    """``attributes`` of every row of ``phrases`` [K, T] at once, compiled (a knob's candidates are measured as they
    are drawn, on the engine thread: ``attributes`` is the specification, ~0.2 ms a phrase): float64 [K, 5]."""
    rows = np.ascontiguousarray(phrases, dtype=np.int64)
    out = np.empty((rows.shape[0], len(STYLE_KNOBS)))
    _attributes_rows(rows, int(steps_per_beat), _MAJOR_ROWS, _MINOR_ROWS, _DIATONIC_F, TIE, out)
    return out


_DIATONIC_F = np.ascontiguousarray(_DIATONIC, dtype=np.float64)
_I64_2D, _F64_2D = types.int64[:, ::1], types.float64[:, ::1]


@numba.njit(types.void(_I64_2D, types.int64, _F64_2D, _F64_2D, _F64_2D, types.float64, _F64_2D), cache=True,
            nogil=True)
def _attributes_rows(rows, spb, major_rows, minor_rows, diatonic, tie, out):  # pragma: no cover (compiled)
    k_rows, steps = rows.shape
    held, prof, fit_r = np.empty(12), np.empty(12), np.empty(12)
    for k in range(k_rows):
        t = rows[k]
        n_on = 0
        total = 0.0
        for i in range(steps):
            if t[i] >= 2:
                n_on += 1
                total += t[i] - 2
        if n_on == 0:
            out[k, :] = np.nan
            continue
        mean = total / n_on
        var = 0.0
        for i in range(steps):
            if t[i] >= 2:
                var += (t[i] - 2 - mean) ** 2
        held[:] = 0.0
        src = 1  # OFF: nothing sounds before the first token that is not HOLD
        for i in range(steps):
            if t[i] != 0:
                src = t[i]
            if src >= 2:
                held[(src - 2) % 12] += 1.0
        h_mean = held.mean()
        norm = 0.0
        for c in range(12):
            prof[c] = held[c] - h_mean
            norm += prof[c] * prof[c]
        mood = 0.0
        if norm > 0.0:
            prof /= np.sqrt(norm)
            for r in range(12):  # how much of the sounding time each major scale holds
                fit_r[r] = 0.0
                for c in range(12):
                    fit_r[r] += diatonic[r, c] * held[c]
            top = fit_r.max()
            best_fit = -np.inf
            for sweep in range(2):  # the best fit, then the first scale within TIE of it
                for r in range(12):
                    if fit_r[r] != top:
                        continue
                    major = minor = 0.0
                    for c in range(12):
                        major += major_rows[r, c] * prof[c]
                        minor += minor_rows[(r + 9) % 12, c] * prof[c]
                    if sweep == 0:
                        best_fit = max(best_fit, major, minor)
                    elif max(major, minor) >= best_fit - tie:
                        mood = major - minor
                        break
        syncopated = 0
        for start in range(steps):
            if t[start] < 2:
                continue
            end = start + 1
            while end < steps and t[end] == 0:
                end += 1
            w = _weight(start, spb)
            for s in range(start + 1, end):
                if _weight(s, spb) > w:
                    syncopated += 1
                    break
        out[k, 0] = n_on / (steps / spb)
        out[k, 1] = mean
        out[k, 2] = np.sqrt(var / n_on)
        out[k, 3] = mood
        out[k, 4] = syncopated / n_on


def parse_directions(raw: str, latent_dim: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """The decoder metadata's style entry (JSON ``{"knobs": LATENT_KNOBS, "directions": [latent knobs x latent],
    "mix": [5 x 5]}``) as (directions float32 [latent knobs, latent], mix float32 [5, 5]); ``ValueError`` naming
    ``source`` when it does not fit this runtime or the decoder."""
    try:
        data = json.loads(raw)
        knobs = tuple(data["knobs"])
        rows = np.asarray(data["directions"], dtype=np.float32)
        mix = np.asarray(data["mix"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{source}: {METADATA_KEY} is not readable ({exc})") from None
    if knobs != LATENT_KNOBS or rows.shape != (len(LATENT_KNOBS), latent_dim) or not np.isfinite(rows).all():
        raise ValueError(f"{source}: {METADATA_KEY} must hold {LATENT_KNOBS} x {latent_dim} finite numbers")
    if mix.shape != (len(STYLE_KNOBS),) * 2 or not np.isfinite(mix).all() or np.abs(mix).max() > 4:
        raise ValueError(f"{source}: {METADATA_KEY} mix must be {len(STYLE_KNOBS)} x {len(STYLE_KNOBS)} numbers "
                         "within +-4")
    return rows, mix


def controls(knobs, mix: np.ndarray | None) -> np.ndarray:
    """What the knobs (``STYLE_KNOBS`` order, each -1..1) ask of the five means (latent directions and logit
    steering, in ``STYLE_KNOBS`` order): ``mix @ knobs``, float32 [5]. ``mix`` undoes how each means also moves the
    other attributes (fitted by ``export.vae_attributes``); None: each knob drives its own means alone."""
    k = np.asarray(knobs, dtype=np.float32)
    return k if mix is None else mix @ k


def attribute_offset(directions: np.ndarray | None, u) -> np.ndarray | None:
    """The latent offset for controls ``u`` (``controls``), or None when no latent control is set or the decoder has
    no directions (the code is decoded as it is)."""
    k = np.asarray([u[STYLE_KNOBS.index(name)] for name in LATENT_KNOBS], dtype=np.float32)
    if directions is None or not k.any():
        return None
    return k @ directions


def mood_profile(tonic_pcs) -> np.ndarray | None:
    """Per pitch class, how much more it belongs to the key's major (the relative major of a minor key) than to that
    major's relative minor: the difference of their Krumhansl-Kessler profiles, each standardised, float32 [12];
    None without a tonic triad."""
    pcs = set(tonic_pcs)
    for root in sorted(pcs):
        if (root + 7) % 12 in pcs and ((root + 4) % 12 in pcs or (root + 3) % 12 in pcs):
            major = root if (root + 4) % 12 in pcs else (root + 3) % 12
            z_major, z_minor = (KK_MAJOR - KK_MAJOR.mean()) / KK_MAJOR.std(), (KK_MINOR - KK_MINOR.mean()) / KK_MINOR.std()
            return (np.roll(z_major, major) - np.roll(z_minor, (major + 9) % 12)).astype(np.float32)
    return None


def steer(logits: np.ndarray, u, tonic_pcs, steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT) -> np.ndarray:
    """Decoder logits [B, T, 130] with the ``range`` and ``mood`` controls of ``u`` (``controls``) applied (a new
    array; the input when both are 0). Range: + ``RANGE_LOGIT`` x knob per 6 semitones between a pitch and the phrase's centre (its expected onset
    pitch under the unsteered logits). Mood: + ``MOOD_LOGIT`` x knob x ``mood_profile`` per pitch class."""
    rng_k, mood_k = float(u[STYLE_KNOBS.index("range")]), float(u[STYLE_KNOBS.index("mood")])
    sync_k = float(u[STYLE_KNOBS.index("syncopation")])
    if rng_k == 0.0 and mood_k == 0.0 and sync_k == 0.0:
        return logits
    out = np.array(logits, dtype=np.float32)
    # One bias over [B, T, pitches], added once (the three parts add up; each pass over the logits costs)
    bias = np.zeros((1, out.shape[1], 1), dtype=np.float32)
    if sync_k:  # onsets off the beat, held over it (or, below 0, onsets on the beat)
        on_beat = np.arange(out.shape[1]) % steps_per_beat == 0
        bias[0, ~on_beat, 0] = np.float32(sync_k * SYNC_LOGIT)
        out[:, on_beat, melody.HOLD] += np.float32(sync_k * SYNC_LOGIT)
    pitch = np.arange(melody.NUM_PITCHES, dtype=np.float32)
    if rng_k:
        pl = out[:, :, melody.PITCH_OFFSET:]
        p = np.exp(pl - pl.max(axis=2, keepdims=True))
        centre = ((p @ pitch) / p.sum(axis=2)).mean(axis=1)  # [B]
        bias = bias + (rng_k * RANGE_LOGIT / 6.0) * np.abs(pitch[None] - centre[:, None])[:, None]
    profile = mood_profile(tonic_pcs) if mood_k else None
    if profile is not None:
        bias = bias + np.float32(mood_k * MOOD_LOGIT) * profile[np.arange(melody.NUM_PITCHES) % 12]
    out[:, :, melody.PITCH_OFFSET:] += bias.astype(np.float32, copy=False)
    return out


RESTYLE_REGISTER_STEPS = 7  # restyle: register +-1 moves the performer's phrase this many scale steps (an octave)
RESTYLE_RANGE_FACTOR = 2.0  # restyle: range +-1 doubles / halves every note's distance from the phrase's centre
RESTYLE_ANCHOR_LOGIT = 3.0  # restyle: logit bias per 6 semitones between a pitch and the performer's at that step


def reshape_line(tokens: np.ndarray, steps: int, spread: float, key_allowed: np.ndarray | None,
                 allowed: np.ndarray) -> np.ndarray:
    """Restyle's register and range, done to the line itself so its contour stays: every note moved ``steps``
    steps along the key's scale (``key_allowed``: token mask of the key over all pitches, None = every pitch) after
    its distance from the phrase's mean pitch is multiplied by ``spread`` (and taken to the nearest pitch of the
    key). A note that lands outside ``allowed`` (the partner's range) moves by octaves into it, or keeps its pitch
    when none lies there. With no step and no stretch, it takes each note outside ``allowed`` to the key's nearest
    pitch (``liveperf.modes.phrase.in_key``). A new array."""
    out = np.array(tokens, dtype=np.int64)
    on = np.flatnonzero(out >= melody.PITCH_OFFSET)
    if on.size == 0 or (steps == 0 and spread == 1.0 and allowed[out[on]].all()):
        return out
    scale = np.flatnonzero(key_allowed[melody.PITCH_OFFSET:] if key_allowed is not None else
                           np.ones(melody.NUM_PITCHES, dtype=bool))
    inside = np.flatnonzero(allowed[melody.PITCH_OFFSET:])
    if scale.size == 0 or inside.size == 0:
        return out
    lo, hi = int(inside.min()), int(inside.max())
    pitches = out[on] - melody.PITCH_OFFSET
    if steps == 0 and spread == 1.0:  # a pure snap leaves notes already in key and range as they are
        keep = allowed[out[on]]
        on, pitches = on[~keep], pitches[~keep]
    centre = float((out[out >= melody.PITCH_OFFSET] - melody.PITCH_OFFSET).mean())
    # No stretch: each note's own pitch, with no arithmetic on it (so each note moves on its own: ``snap_table``)
    target = (pitches.astype(np.float64) if spread == 1.0 else centre + spread * (pitches.astype(np.float64) - centre))
    upper = np.clip(np.searchsorted(scale, target), 0, scale.size - 1)
    lower = np.maximum(upper - 1, 0)
    # the key's pitch nearest the stretched one (the lower of two as near)
    k = np.where(np.abs(scale[lower] - target) <= np.abs(scale[upper] - target), lower, upper)
    q = scale[np.clip(k + steps, 0, scale.size - 1)]
    q = np.where(q > hi, q - 12 * -(-(q - hi) // 12), np.where(q < lo, q + 12 * -(-(lo - q) // 12), q))
    ok = (q >= 0) & (q < melody.NUM_PITCHES)
    ok[ok] = allowed[q[ok] + melody.PITCH_OFFSET]
    out[on[ok]] = q[ok] + melody.PITCH_OFFSET
    return out


def shift_within(tokens: np.ndarray, steps: int, key_allowed: np.ndarray | None, allowed: np.ndarray) -> np.ndarray:
    """The line moved along the key's scale by as many of ``steps`` as keep every note in ``allowed`` (the range),
    whole: a GAN phrase's register (``reshape_line`` folds a note back by octaves; this stops short of the edge)."""
    out = np.asarray(tokens, dtype=np.int64)
    is_note = out >= melody.PITCH_OFFSET
    anywhere = np.ones_like(allowed)
    for k in range(int(steps), 0, -1) if steps > 0 else range(int(steps), 0):
        moved = reshape_line(out, k, 1.0, key_allowed, anywhere)
        if allowed[moved[is_note]].all():
            return moved
    return out


def snap_table(key_allowed: np.ndarray | None, allowed: np.ndarray) -> np.ndarray:
    """``reshape_line``'s pure snap as a table: int64 [128], the pitch each pitch becomes (itself when it is in key
    and range). With no stretch every note moves on its own, so the table is that snap of all 128 pitches."""
    return reshape_line(np.arange(melody.NUM_PITCHES) + melody.PITCH_OFFSET, 0, 1.0, key_allowed,
                        allowed) - melody.PITCH_OFFSET


#: The attributes' mean and standard deviation (``STYLE_KNOBS`` order) of the VAE's own phrases with every knob at
#: 0 (1,000 draws through the live generator, C major, range 48-84; ``python -m export.style_eval`` prints them):
#: the scale a knob's target is set on, so +-1 asks the same of every attribute relative to what the model plays.
ATTRIBUTE_MEAN = np.array([1.5551, 69.5081, 4.1641, -0.0233, 0.0682])
ATTRIBUTE_SD = np.array([0.6169, 4.8636, 1.4904, 0.3429, 0.0968])
SELECT_MAX = 24  # candidates drawn from |knob| = 0.5 on (1 at 0: the phrase as the model draws it)
SELECT_CODES = 6  # ... decoded from this many codes: the code itself and codes near it
RESTYLE_CODES = 2  # restyle: ... from the performer's code and one near it (the line is held near theirs anyway)
CODE_JITTER = 1.0  # how near: standard deviations of the prior added to each other code
TARGET_SPAN_SD = 3.0  # phrase: a knob at +-1 asks for its attribute this many standard deviations from the mean
RESTYLE_SPAN_SD = 1.5  # restyle: ... from the performer's own phrase
OTHER_WEIGHT = 0.1  # cost per squared sd an attribute no knob commands strays from its reference
KEY_WEIGHT = 10.0  # cost per share of onsets outside the phrase's best diatonic scale
CONTOUR_WEIGHT = 2.0  # restyle: cost per unit of contour correlation with the performer's line lost


def candidates_for(knobs) -> int:
    """How many phrases to draw for these knob values: the further a knob is turned, the more candidates, so the
    more firmly the chosen phrase holds the asked-for attribute (``choose``); 1 with every knob at 0."""
    turned = max((abs(float(k)) for k in knobs), default=0.0)
    return 1 + round(min(1.0, 2.0 * turned) * (SELECT_MAX - 1))


def standardised(phrases, steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT) -> np.ndarray:
    """``attributes_rows`` in standard deviations from the model's own phrases (``ATTRIBUTE_MEAN`` / ``_SD``):
    the scale ``choose`` works on, and a reference (restyle's performer, the GAN critic's choice) is given in."""
    return (attributes_rows(phrases, steps_per_beat) - ATTRIBUTE_MEAN) / ATTRIBUTE_SD


def choose(phrases: np.ndarray, knobs, reference: np.ndarray | None = None, span_sd: float = TARGET_SPAN_SD,
           steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT, line: np.ndarray | None = None) -> int:
    """The candidate (row of ``phrases`` [K, T]) nearest what the knobs ask: each turned knob's attribute, in
    standard deviations (``ATTRIBUTE_SD``), near ``reference + knob * span_sd`` (``reference``: attributes in sd
    from ``ATTRIBUTE_MEAN``, default 0: the mean phrase; restyle passes the performer's), the other attributes near
    their reference (``OTHER_WEIGHT``), the notes in one diatonic scale (``KEY_WEIGHT``) and, given ``line`` (restyle:
    the performer's tokens), its contour (``CONTOUR_WEIGHT`` x (1 - ``contour_corr``)). A phrase with no onset is
    chosen only when all are empty."""
    rows = np.asarray(phrases, dtype=np.int64)
    z = standardised(rows, steps_per_beat)
    k = np.asarray(knobs, dtype=np.float64)
    ref = np.zeros(len(STYLE_KNOBS)) if reference is None else np.nan_to_num(np.asarray(reference, np.float64))
    turned = k != 0.0
    miss = (z - (ref + k * span_sd)) ** 2
    cost = miss[:, turned].sum(axis=1) + OTHER_WEIGHT * miss[:, ~turned].sum(axis=1)
    onset = rows >= melody.PITCH_OFFSET
    counts = np.zeros((rows.shape[0], 12), dtype=np.int64)
    k_on, t_on = np.nonzero(onset)
    np.add.at(counts, (k_on, (rows[k_on, t_on] - melody.PITCH_OFFSET) % 12), 1)
    fit = (counts @ _DIATONIC.T.astype(np.int64)).max(axis=1)
    cost = cost + KEY_WEIGHT * (1.0 - fit / np.maximum(onset.sum(axis=1), 1))
    if line is not None:
        cost = cost + CONTOUR_WEIGHT * (1.0 - contour_corr(line, rows))
    cost = np.where(np.isfinite(cost), cost, np.inf)
    return int(np.argmin(cost))


def contour_corr(line: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """How each row of ``rows`` [K, T] follows ``line``'s contour [T]: Pearson's r of the pitches sounding where
    both sound, float64 [K]; 0 with fewer than 3 such steps or either flat there."""
    rows, a = np.asarray(rows, dtype=np.int64), melody.sounding_pitch(line).astype(np.float64)[None]  # a: [1, T]
    change = rows != melody.HOLD  # each row's sounding pitch (``melody.sounding_pitch``), all rows at once
    last = np.maximum.accumulate(np.where(change, np.arange(rows.shape[1]), -1), axis=1)
    src = np.where(last >= 0, np.take_along_axis(rows, np.maximum(last, 0), axis=1), melody.OFF)
    b = np.where(src >= melody.PITCH_OFFSET, src - melody.PITCH_OFFSET, -1).astype(np.float64)
    both = (a >= 0) & (b >= 0)
    n = both.sum(axis=1)
    safe = np.maximum(n, 1)
    da = np.where(both, a - (np.where(both, a, 0).sum(axis=1) / safe)[:, None], 0.0)
    db = np.where(both, b - (np.where(both, b, 0).sum(axis=1) / safe)[:, None], 0.0)
    va, vb = (da * da).sum(axis=1), (db * db).sum(axis=1)
    ok = (n >= 3) & (va > 1e-12) & (vb > 1e-12)
    return np.where(ok, (da * db).sum(axis=1) / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0)


def anchor(logits: np.ndarray, performer: np.ndarray) -> np.ndarray:
    """Restyle: decoder logits [B, T, 130] pulled towards the performer's line (``performer`` tokens [T]): minus
    ``RESTYLE_ANCHOR_LOGIT`` per 6 semitones between a pitch and the one the performer sounds at that step (steps
    where the performer is silent are left alone). A new array."""
    out = np.array(logits, dtype=np.float32)
    sounding = melody.sounding_pitch(performer)
    pitch = np.arange(melody.NUM_PITCHES, dtype=np.float32)
    steps = np.flatnonzero(sounding[:out.shape[1]] >= 0)
    out[:, steps, melody.PITCH_OFFSET:] -= np.float32(RESTYLE_ANCHOR_LOGIT / 6.0) * np.abs(
        pitch[None, :] - sounding[steps, None].astype(np.float32))
    return out
