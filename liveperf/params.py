"""The one parameter table: every live-controllable value, its range, default, unit and smoothing.

The same table feeds OSC addresses (``/liveperf/param/<name>``), MIDI CC mappings (with MIDI learn), setlist
overrides and the status display, so a parameter is added here once and nowhere else.

- ``coerce`` validates a value where it enters (OSC argument, setlist field); the error names the parameter, the
  value and what is allowed. Ints are accepted for float parameters; nothing else is converted.
- ``from_cc`` maps a 7-bit controller value linearly onto a parameter's range (enums split 0..127 evenly).
- ``ParamStore`` holds the current values; float parameters glide to a new value over ``smoothing_ms``
  (a CC knob has 128 steps; the glide keeps them from zippering), ints and enums jump.
- ``MidiLearn`` turns "arm a parameter, then move a knob" into a ``(channel, cc) -> parameter`` mapping.

Ground floor: imports nothing of liveperf. ``ParamStore`` and ``MidiLearn`` are owned by one thread (the engine's);
``PARAMS`` and ``Param`` are immutable and shared freely.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MODES = ("call_response", "duet", "harmonize", "phrase", "comp")
COMP_RHYTHMS = ("beat", "half_bar", "bar", "model")
OSC_PARAM_PREFIX = "/liveperf/param/"


class ParamError(ValueError):
    """A parameter name or value that is not allowed; the message names the parameter, the value and the range."""

    def __init__(self, name: str, value: Any, allowed: str, message: str | None = None) -> None:
        super().__init__(message or f"{name}: {value!r} is not allowed; {allowed}")
        self.name = name
        self.value = value
        self.allowed = allowed


@dataclass(frozen=True)
class Param:
    """One controllable parameter. ``lo``/``hi`` are inclusive; enums have ``choices`` and ``lo = hi = None``."""

    name: str
    lo: float | int | None
    hi: float | int | None
    default: float | int | str
    unit: str  # for display: "BPM", "steps", "bars", "" for dimensionless
    kind: str  # "float" | "int" | "enum"
    smoothing_ms: int  # glide time for float parameters; 0 = jump
    doc: str
    choices: tuple[str, ...] = field(default=())

    def allowed(self) -> str:
        """The allowed values in words, for error messages and help text."""
        if self.kind == "enum":
            return f"one of {', '.join(self.choices)}"
        what = "an integer" if self.kind == "int" else "a number"
        return f"{what} from {self.lo} to {self.hi}"


def _float(name, lo, hi, default, doc, *, unit="", smoothing_ms=100) -> Param:
    return Param(name, float(lo), float(hi), float(default), unit, "float", smoothing_ms, doc)


def _int(name, lo, hi, default, doc, *, unit="") -> Param:
    return Param(name, lo, hi, default, unit, "int", 0, doc)


_TABLE = (
    # Defaults are a setlist song's (``liveperf.setlist.schema.SONG_FIELDS``): a song's start sets every one of them.
    _float("temperature", 0.0, 2.0, 1.0, "sampling temperature: lower is safer, higher is wilder (0 = greedy)"),
    _float("top_p", 0.1, 1.0, 1.0, "nucleus sampling: keep the most likely tokens up to this probability mass"),
    _int("top_k", 0, 129, 0, "keep only the k most likely tokens (0 = off)", unit="tokens"),
    _int("velocity", 1, 127, 100, "MIDI velocity of generated notes", unit="velocity"),
    _float("tempo_bpm", 20, 400, 120, "tempo of the internal clock", unit="BPM", smoothing_ms=0),
    _float("sigma", 0, 3, 0.5, "VAE variation spread: standard deviation of the latent noise"),
    _float("walk_step", 0, 1, 0.25, "latent random-walk step per phrase"),
    _float("density", 0, 1, 1.0, "chance that a generated note-on is kept"),
    _float("swing", 0.5, 0.75, 0.5, "where the partner's off-beat eighths fall in the beat: 0.5 straight, 0.67 "
           "triplet swing (setlist: \"follow\" follows the performer's)", smoothing_ms=0),
    _float("humanize_ms", 0, 20, 0.0, "each step of the partner's notes is delayed by a seeded 0 .. this many ms "
           "(0 = exactly on the grid)", unit="ms", smoothing_ms=0),
    _int("silence_steps", 1, 64, 4, "steps of performer silence before we answer", unit="steps"),
    _int("response_bars", 1, 16, 2, "length of an answer", unit="bars"),
    _int("phrase_every_bars", 2, 16, 4, "a new generated phrase every this many bars", unit="bars"),
    Param("mode", None, None, "call_response", "", "enum", 0, "how we play with the performer", MODES),
    Param("comp_rhythm", None, None, "beat", "", "enum", 0, "comp: block chords each beat, half bar or bar, or the "
          "model's own rhythm", COMP_RHYTHMS),
    _int("partner_channel", 1, 16, 1, "MIDI channel of the partner voice (1..16 as musicians count)",
         unit="channel"),
    _float("anchor_t", 0, 1, 0.0, "interpolation position between two latent anchors (0 = first, 1 = second)"),
    # style knobs (liveperf.music.style): phrase mode with the VAE; each applies to the next phrase made
    _float("style_density", -1, 1, 0.0, "VAE phrases: fewer (-1) or more (+1) notes", smoothing_ms=0),
    _float("style_register", -1, 1, 0.0, "VAE phrases: lower (-1) or higher (+1)", smoothing_ms=0),
    _float("style_range", -1, 1, 0.0, "VAE phrases: a narrower (-1) or wider (+1) contour", smoothing_ms=0),
    _float("style_mood", -1, 1, 0.0, "VAE phrases: darker, minor-coloured (-1) or brighter, major-coloured (+1)",
           smoothing_ms=0),
    _float("style_syncopation", -1, 1, 0.0, "VAE phrases: straighter (-1) or more syncopated (+1)", smoothing_ms=0),
)

PARAMS: Mapping[str, Param] = MappingProxyType({p.name: p for p in _TABLE})


MAX_PARTNERS = 8  # partner-prefixed names: p2. .. p8. (``liveperf.setlist.partners``)


def partner_of(name: str) -> tuple[int, str]:
    """``"p2.density"`` -> (2, "density"): the partner a parameter name addresses (a song's partners, 1-based; an
    unprefixed name is partner 1's). A name that only looks prefixed stays whole (and is then unknown)."""
    if isinstance(name, str) and len(name) > 3 and name[0] == "p" and name[2] == "." and name[1].isdigit():
        partner = int(name[1])
        if 1 <= partner <= MAX_PARTNERS:
            return partner, name[3:]
    return 1, name


def _param(name: str, params: Mapping[str, Param] = PARAMS) -> Param:
    name = partner_of(name)[1]
    try:
        return params[name]
    except (KeyError, TypeError):
        known = f"known parameters: {', '.join(params)}"
        raise ParamError(str(name), name, known, f"unknown parameter {name!r}; {known}") from None


def coerce(name: str, value: Any, params: Mapping[str, Param] = PARAMS) -> float | int | str:
    """Check ``value`` for parameter ``name`` and return it as the parameter's Python type.

    float parameters take int or float (finite, in range) and return float; int parameters take only ints; enums
    take only one of their strings. bool is never a number here. Raises ``ParamError``.
    """
    p = _param(name, params)
    if p.kind == "enum":
        if isinstance(value, str) and value in p.choices:
            return value
        raise ParamError(name, value, p.allowed())
    if isinstance(value, bool):
        raise ParamError(name, value, p.allowed())
    if p.kind == "int":
        ok = isinstance(value, numbers.Integral)
    else:  # ints are compared exactly (float(10**400) would overflow)
        ok = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and math.isfinite(value))
    if not ok or not p.lo <= value <= p.hi:
        raise ParamError(name, value, p.allowed())
    return int(value) if p.kind == "int" else float(value)


def from_cc(name: str, cc_value: int, params: Mapping[str, Param] = PARAMS) -> float | int | str:
    """Map a 7-bit controller value (0..127) linearly onto the parameter: 0 -> lo, 127 -> hi.

    int parameters round to the nearest integer; enums split 0..127 into equal slices, one per choice.
    """
    p = _param(name, params)
    if isinstance(cc_value, bool) or not isinstance(cc_value, numbers.Integral) or not 0 <= cc_value <= 127:
        raise ParamError(f"{name} (CC value)", cc_value, "an integer from 0 to 127")
    cc_value = int(cc_value)
    if p.kind == "enum":
        return p.choices[cc_value * len(p.choices) // 128]
    if p.kind == "int":
        # Round half up in integers: lo + round((hi - lo) * cc / 127).
        return p.lo + ((p.hi - p.lo) * cc_value * 2 + 127) // 254
    t = cc_value / 127
    # lo*(1-t) + hi*t hits both ends exactly; the clamp removes a last-bit overshoot in between.
    return min(max(p.lo * (1.0 - t) + p.hi * t, p.lo), p.hi)


def osc_address(name: str, params: Mapping[str, Param] = PARAMS) -> str:
    """The OSC address that sets parameter ``name``: ``/liveperf/param/<name>``."""
    _param(name, params)
    return OSC_PARAM_PREFIX + name


class ParamStore:
    """Current parameter values: defaults, then ``overrides`` (e.g. a song's setlist values), then live changes.

    Times are integer nanoseconds on the monotonic clock the caller uses (``time.monotonic_ns()`` in a show,
    virtual time in tests). Owned by one thread.
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, params: Mapping[str, Param] = PARAMS) -> None:
        self._params = params
        # name -> (from_value, start_ns, to_value, end_ns); a value that is not gliding has start_ns == end_ns.
        self._ramps: dict[str, tuple[Any, int, Any, int]] = {}
        for name, p in params.items():
            self._ramps[name] = (p.default, 0, p.default, 0)
        for name, value in (overrides or {}).items():
            v = coerce(name, value, params)
            self._ramps[name] = (v, 0, v, 0)

    def set(self, name: str, value: Any, now_ns: int, glide: bool = True) -> float | int | str:
        """Set ``name`` to ``value`` (checked with ``coerce``); floats glide there over the parameter's
        ``smoothing_ms`` starting at ``now_ns`` (``glide=False``: jump, e.g. a new song's values).
        Returns the checked target value."""
        target = coerce(name, value, self._params)
        p = _param(name, self._params)
        if glide and p.kind == "float" and p.smoothing_ms > 0:
            start = self.value(name, now_ns)
            self._ramps[name] = (start, now_ns, target, now_ns + p.smoothing_ms * 1_000_000)
        else:
            self._ramps[name] = (target, now_ns, target, now_ns)
        return target

    def value(self, name: str, now_ns: int) -> float | int | str:
        """The value of ``name`` at ``now_ns`` (mid-glide for a float that was just set)."""
        start, start_ns, target, end_ns = self._ramp(name)
        if now_ns >= end_ns:
            return target
        if now_ns <= start_ns:
            return start
        return start + (target - start) * ((now_ns - start_ns) / (end_ns - start_ns))

    def glide_end_ns(self, name: str) -> int:
        """When ``name`` reaches its target (a time not after the last ``set`` for a value that jumps)."""
        return self._ramp(name)[3]

    def target(self, name: str) -> float | int | str:
        """Where ``name`` is going (the last value set), ignoring any glide."""
        return self._ramp(name)[2]

    def _ramp(self, name: str) -> tuple[Any, int, Any, int]:
        """``name``'s ramp; a partner's parameter never set yet (``p3.density``) is at its default. ParamError
        naming the known parameters for an unknown name."""
        ramp = self._ramps.get(name)
        if ramp is None:
            default = _param(name, self._params).default
            ramp = (default, 0, default, 0)
        return ramp

    def snapshot(self, now_ns: int) -> dict[str, float | int | str]:
        """All values at ``now_ns``, in table order (for the status display)."""
        return {name: self.value(name, now_ns) for name in self._params}


class MidiLearn:
    """MIDI CC -> parameter mappings, with learn: ``arm(name)``, then the next CC seen is mapped to ``name``.

    ``on_cc`` takes the channel as on the wire (0..15, liveperf's inside convention); ``mappings()`` and the
    ``mappings`` argument use 1..16 as setlists do: ``{"param": "temperature", "channel": 1, "cc": 74}``.
    One controller per parameter: learning a new CC for a parameter replaces its old mapping. Owned by one thread.
    """

    def __init__(self, mappings: Iterable[Mapping[str, Any]] = (), *, params: Mapping[str, Param] = PARAMS) -> None:
        self._params = params
        self._map: dict[tuple[int, int], str] = {}
        self._armed: str | None = None
        for i, m in enumerate(mappings):
            self._add(*self._check_mapping(i, m))

    def _check_mapping(self, i: int, m: Mapping[str, Any]) -> tuple[int, int, str]:
        if not isinstance(m, Mapping) or set(m) != {"param", "channel", "cc"}:
            raise ParamError(f"cc mapping {i + 1}", m, "a table with exactly param, channel (1..16) and cc (0..127)")
        _param(m["param"], self._params)
        for key, lo, hi in (("channel", 1, 16), ("cc", 0, 127)):
            v = m[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ParamError(f"cc mapping {i + 1} {key}", v, f"an integer from {lo} to {hi}")
        return m["channel"] - 1, m["cc"], m["param"]

    def _add(self, channel: int, cc: int, name: str) -> None:
        self._map = {k: v for k, v in self._map.items() if v != name}
        self._map[(channel, cc)] = name

    @property
    def armed(self) -> str | None:
        """The parameter waiting for a controller, or None."""
        return self._armed

    def arm(self, name: str) -> None:
        """The next CC seen (any channel, any controller) will control ``name``."""
        _param(name, self._params)
        self._armed = name

    def disarm(self) -> None:
        self._armed = None

    def on_cc(self, channel: int, cc: int, value: int) -> tuple[str, float | int | str] | None:
        """A control change came in (channel 0..15, cc 0..127, value 0..127).

        Returns ``(param, mapped value)`` when the controller is mapped (or has just been learned), else None.
        """
        if self._armed is not None:
            self._add(channel, cc, self._armed)
            self._armed = None
        name = self._map.get((channel, cc))
        if name is None:
            return None
        return name, from_cc(name, value, self._params)

    def mappings(self) -> list[dict[str, Any]]:
        """The mappings in setlist form (channel 1..16), sorted by channel then controller."""
        return [{"param": name, "channel": ch + 1, "cc": cc} for (ch, cc), name in sorted(self._map.items())]
