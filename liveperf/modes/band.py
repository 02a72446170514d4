"""Several partners at once (``[[song.partner]]``): the ``Band`` is one mode to the engine and plays every partner.

Each partner (``Part``) has its own modes (``build_modes`` for its own settings: mode, channel, voice, range, model),
its own current mode and its own pending switch, made at the next bar line like the engine's. The band hears every
performer event and passes it to each partner's current mode; at each step every partner's mode computes that
step, in partner order; ``wake_ns`` is the earliest of theirs (a listening duet or comp). ``stop`` (song end, song
change, panic, transport stop, shutdown) stops every partner, so every voice of every partner lets go. Live
parameters address one partner (``liveperf.params.partner_of``: ``p2.temperature``; an unprefixed name is partner
1). One engine thread owns the band and everything in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from liveperf.modes.settings import ModeStats, with_key, with_param


@dataclass
class Part:
    """One partner: its label, its modes by name, the current one and the one asked for at the next bar line."""

    name: str
    modes: dict
    mode_name: str
    pitch_range: tuple[int, int]
    pending: str | None = None
    switches: list = field(default_factory=list)  # (step, mode)

    @property
    def mode(self):
        return self.modes[self.mode_name]


class Band:
    name = "band"

    def __init__(self, parts: list[Part], steps_per_bar: int, clock) -> None:
        if not parts:
            raise ValueError("a band needs at least one partner")
        self.parts = parts
        self.steps_per_bar = steps_per_bar
        self.clock = clock

    # ---- what the engine and the show read ---------------------------------------------------------------------
    @property
    def s(self):
        return self.parts[0].mode.s

    @property
    def voice(self):
        return self.parts[0].mode.voice

    @property
    def feel(self):
        return getattr(self.parts[0].mode, "feel", None)

    def leaf_modes(self):
        """Every mode of every partner (the key follower sets them all)."""
        for part in self.parts:
            yield from part.modes.values()

    @property
    def stats(self) -> ModeStats:
        """The partners' counters summed (last_error: the first partner's that has one)."""
        total = ModeStats()
        for mode in self.leaf_modes():
            for f in fields(ModeStats):
                value = getattr(mode.stats, f.name)
                if isinstance(value, int):
                    setattr(total, f.name, getattr(total, f.name) + value)
                elif value and not total.last_error:
                    total.last_error = value
        return total

    @property
    def chords(self) -> int:
        return sum(getattr(mode, "chords", 0) for mode in self.leaf_modes())

    @property
    def idle(self) -> bool:
        return all(part.mode.idle and part.pending is None for part in self.parts)

    @property
    def wake_ns(self) -> int | None:
        wakes = [w for part in self.parts if (w := getattr(part.mode, "wake_ns", None)) is not None]
        return min(wakes) if wakes else None

    # ---- control ------------------------------------------------------------------------------------------------
    def part(self, partner: int) -> Part:
        """Partner ``partner`` (1-based); KeyError naming the partners there are."""
        if not 1 <= partner <= len(self.parts):
            raise KeyError(f"partner {partner}: this song has partners 1..{len(self.parts)}")
        return self.parts[partner - 1]

    def request_mode(self, name: str, partner: int = 1) -> None:
        """Partner ``partner`` switches to mode ``name`` at the next bar line (KeyError: no such mode or partner)."""
        part = self.part(partner)
        if name not in part.modes:
            raise KeyError(f"mode {name!r} is not available to partner {partner}; available: {', '.join(part.modes)}")
        part.pending = None if name == part.mode_name else name

    def set_param(self, name: str, value, now_ns: int, partner: int = 1) -> bool:
        """Live parameter ``name`` = ``value`` for one partner's modes (as ``Engine.set_param`` for one partner)."""
        part = self.part(partner)
        return apply_param(part.modes.values(), name, value, now_ns)

    def keyed(self, key) -> list:
        """(mode, settings in ``key``) for every mode of every partner, each in its own range; ValueError when a
        partner's range has no pitch of ``key``."""
        return [(mode, with_key(mode.s, key, part.pitch_range)) for part in self.parts for mode in part.modes.values()]

    # ---- the mode interface, for every partner -------------------------------------------------------------------
    def begin(self, step: int) -> None:
        for part in self.parts:
            part.mode.begin(step)

    def on_step(self, step: int) -> None:
        for part in self.parts:
            if part.pending is not None and step % self.steps_per_bar == 0:
                part.mode.stop(self.clock.ns_at_step(step))
                part.mode_name, part.pending = part.pending, None
                part.mode.begin(step)
                part.switches.append((step, part.mode_name))
            part.mode.on_step(step)

    def on_wake(self, now_ns: int) -> None:
        for part in self.parts:
            wake = getattr(part.mode, "wake_ns", None)
            if wake is not None and now_ns >= wake:
                part.mode.on_wake(now_ns)

    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        for part in self.parts:
            part.mode.note_on(ts_ns, pitch, velocity)

    def note_off(self, ts_ns: int, pitch: int) -> None:
        for part in self.parts:
            part.mode.note_off(ts_ns, pitch)

    def release_performer(self, ts_ns: int) -> None:
        for part in self.parts:
            part.mode.release_performer(ts_ns)

    def trigger(self) -> None:
        for part in self.parts:
            part.mode.trigger()

    def stop(self, now_ns: int) -> None:
        for part in self.parts:
            part.mode.stop(now_ns)


def apply_param(modes, name: str, value, now_ns: int) -> bool:
    """Apply live parameter ``name`` to ``modes`` (one partner's): settings between steps, a new channel silences
    the old one first. False when it is not a mode setting."""
    applied = False
    for mode in modes:
        new = with_param(mode.s, name, value)
        if new is None:
            continue
        mode.voice.set_channel(new.channel, now_ns)
        mode.voice.density = new.density
        if name == "swing" and getattr(mode, "feel", None) is not None:
            mode.feel.set(new.swing)  # a partner's modes share one Feel
        if name == "humanize_ms" and getattr(mode, "feel", None) is not None:
            mode.feel.humanize_ms = new.humanize_ms
        mode.s = new
        applied = True
    return applied
