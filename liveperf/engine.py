"""The engine: one object, one thread, all musical state of the song being played.

``on_input(ts_ns, data)`` takes the performer's raw MIDI (already timestamped by the input adapter);
``on_step(step)`` computes one grid step a little before it is due and schedules what it plays on the sink
(``(due_ns, bytes)``). No I/O, no wall clock: the loop (``liveperf.loop``) calls it, in real or virtual time.

The engine holds one object per mode (``call_response``, ``duet``, ``harmonize``, ``phrase``) and routes input to
the active one. Changes that must not land mid-bar wait for the next bar line: a mode switch
(``request_mode``; the old mode's sounding note ends at the bar line, the new mode begins there). A tempo change
(``request_tempo``, tap tempo) applies at the next step computed, on the internal clock only. When we are the
clock master (``send_clock``), every step schedules its 24-ppqn MIDI clock ticks on the show's ``ClockOut``
(``liveperf.timing.clock_out``: Start before the first; a song change or a panic keeps it running).
Transport changes from an external clock (``relocate``, ``halt``) silence the mode at once and begin it again.
With a ``reflex`` (``liveperf.modes.reflex``: the port answered a note-on itself), every answer the port sent is taken
over here: by the mode that can hold it (harmonize's ``adopt``), or else adopted and ended at once (the note-on was
filtered, or the mode changed), so the scheduler always knows what sounds.
With a ``keys`` follower (``liveperf.music.key_finder``: ``key = "auto"`` or ``key_follow = "modulations"``), every
note-on and note-off is heard at its nearest step, and at each bar line (or beat, ``key_every_steps``) the follower
is asked before the step is computed: a new key replaces every mode's key mask and cadence there
(``key_changes``), so a change never lands between them and never cuts a note. Between bar lines, every
``key_escape_steps`` (a beat), it is asked only whether the key plainly does not fit (``KeyFollower.ask_escape``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from liveperf.music.chords import SUSTAIN_CC, Chord, ChordListener
from liveperf.timing.clock_out import ClockOut
from liveperf.music.notes import note_off
from liveperf.timing.tap_tempo import TapTempo
from liveperf.modes.band import Band, apply_param
from liveperf.modes.settings import with_key
from liveperf.params import partner_of



class Mode(Protocol):
    name: str

    @property
    def idle(self) -> bool: ...

    def begin(self, step: int) -> None: ...

    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None: ...

    def note_off(self, ts_ns: int, pitch: int) -> None: ...

    def release_performer(self, ts_ns: int) -> None: ...

    def trigger(self) -> None: ...

    def on_step(self, step: int) -> None: ...

    def stop(self, now_ns: int) -> None: ...


@dataclass
class InputStats:
    note_ons: int = 0
    note_offs: int = 0
    triggers: int = 0
    taps: int = 0
    mode_changes: int = 0
    echoes: int = 0
    all_notes_off: int = 0  # CC 120 / 123 from the controller (a panic button, a stuck key's cure)
    ignored: int = 0


class Engine:
    """Routes performer input to the active mode; owns the modes. Engine thread only."""

    def __init__(self, modes, *, clock=None, sink=None, initial: str | None = None, trigger_cc: int | None = None,
                 tap_cc: int | None = None, mode_cc: int | None = None, input_channel: int | None = None,
                 echo_guard=None, send_clock: bool = False, steps_per_bar: int = 16, reflex=None,
                 clock_out: ClockOut | None = None, keys=None, pitch_range: tuple[int, int] = (0, 127),
                 key_every_steps: int | None = None, key_escape_steps: int | None = None) -> None:
        self.modes: dict[str, Mode] = modes if isinstance(modes, dict) else {modes.name: modes}
        self._mode_name = initial if initial is not None else next(iter(self.modes))
        self.mode = self.modes[self._mode_name]
        self.clock = clock if clock is not None else self.mode.clock
        self.sink = sink
        self.trigger_cc = trigger_cc
        self.tap_cc = tap_cc
        self.mode_cc = mode_cc
        self.input_channel = input_channel  # None: omni
        self.echo_guard = echo_guard
        self.send_clock = send_clock and sink is not None
        self.steps_per_bar = steps_per_bar
        self.input_stats = InputStats()
        self.tap = TapTempo()
        self._pending_mode: str | None = None
        self._pending_tempo: float | None = None
        # The show's MIDI clock out (shared by its songs), or this engine's own when none is given.
        self.clock_out = (clock_out if clock_out is not None else ClockOut()) if self.send_clock else None
        self.halted = False  # the external transport stopped us; ``relocate`` starts again
        self.switches: list[tuple[int, str]] = []  # (step, mode) of every switch, for reports and tests
        self.reflex = reflex
        self.reflex_ended = 0  # answers the port sent that no mode could hold: adopted and ended at once
        self.chords = ChordListener()  # the chord the performer holds (``chord_at``; OSC /liveperf/chord)
        self.keys = keys  # a key_finder.KeyFollower, or None: the song's key holds
        self.pitch_range = pitch_range  # the partner's range, for the key mask of a new key
        self.key_every_steps = key_every_steps or steps_per_bar  # the follower is asked at bar lines (or beats)
        # ... and between them, every this many steps (a beat), only whether the key plainly does not fit
        self.key_escape_steps = key_escape_steps
        self.key_changes: list[tuple[int, str]] = []  # (step, key name) of every key change applied
        self.key_errors = 0  # keys heard that had no pitch in the partner's range: not applied
        self._key_asked_step: int | None = None
        if reflex is not None:
            reflex.input_channel = input_channel

    @property
    def idle(self) -> bool:
        return self.mode.idle and self._pending_mode is None

    @property
    def pending_mode(self) -> str | None:
        """The mode this engine switches to at the next bar line, if one was asked for."""
        if isinstance(self.mode, Band):
            return self.mode.parts[0].pending
        return self._pending_mode

    @property
    def mode_name(self) -> str:
        """The current mode (of partner 1, in a band: ``liveperf.modes.band``)."""
        return self.mode.parts[0].mode_name if isinstance(self.mode, Band) else self._mode_name

    def partner_modes(self) -> list[str]:
        """Each partner's mode as of the next bar line (its pending switch, else its current mode): one entry for a
        song with one partner, one per partner for a band (``liveperf.modes.band``)."""
        if isinstance(self.mode, Band):
            return [p.pending or p.mode_name for p in self.mode.parts]
        return [self._pending_mode or self._mode_name]

    def mode_names(self) -> list[str]:
        """The modes there are to switch to (partner 1's, in a band)."""
        return list(self.mode.parts[0].modes if isinstance(self.mode, Band) else self.modes)

    # ---- control (engine thread) -----------------------------------------------------------------------------
    def request_mode(self, name: str, partner: int = 1) -> None:
        """Switch to mode ``name`` at the next bar line (KeyError for a mode this song has no models for, or a
        partner it does not have; a band switches that partner: ``liveperf.modes.band``)."""
        if isinstance(self.mode, Band):
            self.mode.request_mode(name, partner)
            return
        if partner != 1:
            raise KeyError(f"partner {partner}: this song has one partner")
        if name not in self.modes:
            raise KeyError(f"mode {name!r} is not available in this song; available: {', '.join(self.modes)}")
        self._pending_mode = None if name == self._mode_name else name

    def request_tempo(self, tempo_bpm: float) -> bool:
        """Internal clock: new tempo from the next step computed. False (nothing changes) when following a clock."""
        if not hasattr(self.clock, "set_tempo"):
            return False
        self._pending_tempo = float(tempo_bpm)
        return True

    def tap_tempo(self, ts_ns: int) -> None:
        """A tap (CC, OSC, stage key) at ``ts_ns``; from the third tap on, the tempo follows the taps."""
        self.input_stats.taps += 1
        bpm = self.tap.tap(ts_ns)
        if bpm is not None:
            self.request_tempo(bpm)

    def set_param(self, name: str, value, now_ns: int) -> bool:
        """Apply live parameter ``name`` = ``value`` (checked by ``params.coerce``) to every mode of the song (of
        one partner: ``p2.density``, ``liveperf.params.partner_of``; unprefixed: partner 1).
        Mode settings change between steps; ``mode`` waits for the next bar line; ``tempo_bpm`` applies at the next
        step (internal clock only); a new ``partner_channel`` silences the old channel first. Returns False when the
        parameter does not apply here (tempo while following MIDI clock, anchor_t without a VAE interpolation, a
        partner the song does not have)."""
        partner, name = partner_of(name)
        band = isinstance(self.mode, Band)
        if partner != 1 and (not band or partner > len(self.mode.parts)):
            return False
        if name == "mode":
            self.request_mode(value, partner)
            return True
        if name == "tempo_bpm":
            return self.request_tempo(value)
        modes = self.mode.part(partner).modes if band else self.modes
        if name == "anchor_t":
            source = getattr(modes.get("phrase"), "source", None)
            if not hasattr(source, "set_position"):
                return False
            source.set_position(float(value))
            return True
        applied = apply_param(modes.values(), name, value, now_ns)
        if applied and self.reflex is not None:
            self.reflex.enable(False)  # the table was drawn with the old settings; the next step draws anew
        return applied

    # ---- input -----------------------------------------------------------------------------------------------
    def on_input(self, ts_ns: int, data: bytes) -> None:
        if len(data) != 3 or data[0] < 0x80 or data[0] >= 0xF0 or data[1] > 0x7F or data[2] > 0x7F:
            self.input_stats.ignored += 1
            return
        kind, ch = data[0] & 0xF0, data[0] & 0x0F
        answer = None
        if self.reflex is not None and kind == 0x90 and data[2] > 0:
            answer = self.reflex.answered(ts_ns, data)
        if self.input_channel is not None and ch != self.input_channel:
            self.input_stats.ignored += 1
            self._end_answer(answer)
            return
        if kind in (0x80, 0x90) and self.echo_guard is not None and self.echo_guard.is_echo(ts_ns, data):
            self.input_stats.echoes += 1
            self._end_answer(answer)
            return
        if kind == 0x90 and data[2] > 0:
            self.input_stats.note_ons += 1
            self.chords.note_on(data[1])
            if self.keys is not None:
                self.keys.finder.note_on(data[1], self.clock.nearest_step(ts_ns))
            adopt = getattr(self.mode, "adopt", None)
            if answer is None or adopt is None or not adopt(ts_ns, data[1], data[2], answer):
                self._end_answer(answer)
                self.mode.note_on(ts_ns, data[1], data[2])
        elif kind == 0x80 or kind == 0x90:
            self.input_stats.note_offs += 1
            self.chords.note_off(data[1])
            if self.keys is not None:
                self.keys.finder.note_off(data[1], self.clock.nearest_step(ts_ns))
            self.mode.note_off(ts_ns, data[1])
        elif kind == 0xB0 and data[1] in (120, 123):  # All Sound Off / All Notes Off: every key is up
            self.input_stats.all_notes_off += 1
            self.chords.release_all()
            if self.keys is not None:
                self.keys.finder.release_all(self.clock.nearest_step(ts_ns))
            self.mode.release_performer(ts_ns)
        elif kind == 0xB0 and data[1] == self.trigger_cc and data[2] >= 64:
            self.input_stats.triggers += 1
            self.mode.trigger()
        elif kind == 0xB0 and data[1] == self.tap_cc and data[2] >= 64:
            self.tap_tempo(ts_ns)
        elif kind == 0xB0 and data[1] == self.mode_cc:
            names = self.mode_names()
            self.input_stats.mode_changes += 1
            self.request_mode(names[min(len(names) - 1, data[2] * len(names) // 128)])
        elif kind == 0xB0 and data[1] == SUSTAIN_CC:
            self.chords.control(data[1], data[2])  # the pedal holds released notes in the chord
        else:
            self.input_stats.ignored += 1

    def _end_answer(self, answer) -> None:
        """An answer the port sent that no mode holds: the scheduler takes it over and ends it now."""
        if answer is not None and self.sink is not None:
            self.sink.adopt(answer.sent_ns, answer.answer)
            self.sink.schedule(answer.sent_ns, note_off(answer.answer[0] & 0x0F, answer.answer[1]))
            self.reflex_ended += 1

    def input_ended(self, now_ns: int) -> None:
        """The performer's source is finished: release whatever it still holds, as if the keys came up now."""
        self.chords.release_all()
        if self.keys is not None:
            self.keys.finder.release_all(self.clock.nearest_step(now_ns))
        self.mode.release_performer(now_ns)

    def chord_at(self, step: int) -> Chord | None:
        """The chord the performer holds as ``step`` is computed (``liveperf.music.chords.ChordListener``: the last chord
        named, kept through single notes and rests). The show control asks before the step, to send it on time."""
        self.chords.on_step(step)
        return self.chords.current

    # ---- the grid ------------------------------------------------------------------------------------------------
    def begin(self, step: int) -> None:
        """The song (or the transport) starts at ``step``."""
        self.mode.begin(step)

    def on_step(self, step: int) -> None:
        self.chords.on_step(step)
        if self.keys is not None:
            self.key_at(step)
            self.keys.finder.on_step(step)
        if self._pending_tempo is not None:
            if hasattr(self.clock, "set_tempo"):
                self.clock.set_tempo(self._pending_tempo, step)
            self._pending_tempo = None
        if self._pending_mode is not None and step % self.steps_per_bar == 0:
            self.mode.stop(self.clock.ns_at_step(step))
            self._mode_name, self._pending_mode = self._pending_mode, None
            self.mode = self.modes[self._mode_name]
            self.mode.begin(step)
            self.switches.append((step, self._mode_name))
        if self.send_clock:
            self._send_clock(step)
        if self.reflex is not None:  # answers to note-ons that never reached us (a second is far beyond any queue)
            for answer in self.reflex.leftovers(self.clock.ns_at_step(step) - 1_000_000_000):
                self._end_answer(answer)
        self.mode.on_step(step)

    def key_at(self, step: int):
        """``(key, confidence)`` the partner plays ``step`` in, or None when the song's key holds (no follower). At a
        bar line (or beat: ``key_every_steps``) the follower is asked first, once per step (the show control asks before the step, to send a
        change on time; ``on_step`` asks too)."""
        if self.keys is None:
            return None
        if step != self._key_asked_step:
            if step % self.key_every_steps == 0:
                self._key_asked_step = step
                self._follow_key(step, self.keys.ask)
            elif self.key_escape_steps and step % self.key_escape_steps == 0:
                self._key_asked_step = step
                self._follow_key(step, self.keys.ask_escape)
        return self.keys.key, self.keys.confidence

    def _follow_key(self, step: int, ask) -> None:
        before = self.keys.key
        key = ask(step)
        if key is None:
            return
        try:
            new = self.mode.keyed(key) if isinstance(self.mode, Band) else \
                [(mode, with_key(mode.s, key, self.pitch_range)) for mode in self.modes.values()]
        except ValueError:  # no pitch of that key in the partner's range: keep the last one
            self.key_errors += 1
            self.keys.key = before
            self.keys.changes.pop()
            return
        for mode, settings in new:
            mode.s = settings
        if self.reflex is not None:
            self.reflex.enable(False)  # the table was drawn in the old key; the next step draws anew
        self.key_changes.append((step, str(key)))

    def _send_clock(self, step: int) -> None:
        self.clock_out.step(self.sink, self.clock, step)

    def wake_ns(self) -> int | None:
        """When the mode wants ``on_wake`` between steps (the duet's listening window), or None."""
        return None if self.halted else getattr(self.mode, "wake_ns", None)

    def on_wake(self, now_ns: int) -> None:
        wake = getattr(self.mode, "on_wake", None)
        if wake is not None:
            wake(now_ns)

    # ---- transport (external clock) and ending -------------------------------------------------------------------
    def relocate(self, step: int, at_ns: int) -> None:
        """The transport jumped (Start, Continue, Song Position, a clock that came back): silence, begin at ``step``."""
        self.mode.stop(at_ns)
        self.mode.begin(step)
        self.halted = False

    def halt(self, at_ns: int) -> None:
        """The transport stopped (Stop, clock dropout): silence now; ``relocate`` begins again."""
        self.mode.stop(at_ns)
        self.halted = True

    def stop(self, now_ns: int, keep_clock: bool = False) -> None:
        """Silence the partner now (song end, panic, shutdown); a clock master also sends Stop, unless
        ``keep_clock`` (a panic, a song change at a bar line: the drum machine must not restart)."""
        self.mode.stop(now_ns)
        if self.reflex is not None:
            self.reflex.enable(False)
            for answer in self.reflex.leftovers(1 << 62):
                self._end_answer(answer)
        if self.clock_out is not None and not keep_clock:
            self.clock_out.stop(self.sink, now_ns)
