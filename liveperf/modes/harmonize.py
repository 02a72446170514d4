"""Harmonize: each performer note-on (a chord: once) is answered at once with a partner note below it.

On a note-on, the duet model is asked (``DuetStepper.peek``: one model step that does not advance its state) what
the partner would play against ``ON(pitch)`` now; the answer is sampled among the song's key/range mask AND the
consonant intervals below the performer's pitch (``CONSONANT_BELOW``: minor/major 3rd, perfect 5th, minor/major
6th, octave, and the same an octave lower; no 4th, which is dissonant above a bass voice), and scheduled
for the moment it was computed (``now_fn``), so it goes out as soon as the scheduler can send it. The partner holds
it until the performer releases the note that caused it (or plays a new one, or the note-length cap). The partner
is one voice: a new performer note replaces the harmony.

Chords get one answer. Note-ons within ``CHORD_WINDOW_NS`` (30 ms) of the first note-on of a chord the partner
answers, while that note is still held, are one chord: a block chord (its notes in the same millisecond) or a
rolled one. The answer is the harmony of the chord's *first* note-on (the one that arrives first; for a block chord
whichever the keyboard sends first): it goes out at once, as for a single note, and waiting for the chord's top
note would delay every answer by the window. The other notes are heard (the grid's token, the velocity) but not
answered (``chord_notes`` counts them); the harmony ends when the first note is released. A density rest counts as
the chord's answer; a first note with no consonant candidate (or a failed peek) lets the next note of the chord try.
A note-on after the window, or after the chord's first note was released (a grace note into the next), is a new
note with its own answer. Every harmony sounds at least ``MIN_NOTE_NS`` (30 ms; ``PartnerVoice.min_note_ns``), so a
note-off is never due with its note-on, however soon the performer lets go or plays on: a new harmony may overlap
the last one's tail by less than that.

Every grid step the model state is advanced with both voices' tokens of the step before, so the peeks hear the
context. The state then stays as it is until the next step, so the step also computes, in one batched call
(``DuetStepper.peek_many``), the peek for every pitch of the key (in any octave, also above the partner's range)
that has a harmony at this step's position and the next one (a note-on's nearest step is one of the two); a note-on then only looks its row up and samples. Measured:
a single peek after the CPU has idled costs ~0.56 ms (0.06 ms back to back), the lookup ~nothing; a pitch not in the
table (out of key) still gets its own peek. The harmony is due when it has been sampled, not when the note-on came
in, so the model's time never counts as lateness against the scheduler's tolerance.

With a ``reflex`` (the ``jack-native`` port, ``liveperf.modes.reflex``) the step also *draws* the answer to every pitch
of the table ahead (sampler and density, in key order, from the mode's own RNGs) and publishes it, so the port can
send it in the cycle of the note-on. A note-on the port answered is *adopted* (``adopt``); one it left alone
(the partner was still sounding, say) plays the answer drawn ahead all the same, the usual way, and tells the
port (``hold``) so that the port can end it on the frame of its cause's release, as it ends its own answers.
The port answers only while the partner channel is quiet on the wire; the mode lets it while a table is drawn.
With a chord the port answers the first note-on (its answer marks the partner busy for the rest of the cycle) and
leaves the others to the engine, which hears them as the chord's. The port cannot know chords: when the first note
has no answer in the table (out of key, a rest drawn ahead) it may answer a later note of the chord; that answer is
adopted as the chord's one partner note. The port ends its answers, and the engine's (``hold``), on the frame of
the cause's release, without ``MIN_NOTE_NS``; ``VirtualReflex`` leaves that end to the engine.
Engine thread only; the measured reaction is in the README's benchmark.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.models.step_model import StepError
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats
from liveperf.music.performer_grid import PerformerGrid
from liveperf.modes.reflex import Reflex, ReflexAnswer, windows
from liveperf.music.sampler import NO_CANDIDATE, sample
from liveperf.timing.scheduler import OutputSink

# Semitones below the performer's note that sound consonant under it.
CONSONANT_BELOW = (3, 4, 7, 8, 9, 12, 15, 16, 19, 20, 21, 24)
CHORD_WINDOW_NS = 30_000_000  # note-ons this close to an answered chord's first note-on join that chord
MIN_NOTE_NS = 30_000_000  # the shortest harmony: its note-off comes at least this long after its note-on
REST = -2  # an answer drawn ahead: the density made this note-on a rest


def harmony_mask(allowed: np.ndarray, pitch: int) -> np.ndarray:
    """``allowed`` restricted to note-ons a consonant interval below ``pitch`` (no HOLD / OFF: a note must sound)."""
    mask = np.zeros_like(allowed)
    for d in CONSONANT_BELOW:
        p = pitch - d
        if 0 <= p <= 127:
            mask[melody.on(p)] = allowed[melody.on(p)]
    return mask


class Harmonize:
    name = "harmonize"

    def __init__(self, settings: ModeSettings, stepper, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray, now_fn: Callable[[], int] | None = None,
                 reflex: Reflex | None = None) -> None:
        self.s = settings
        self.stepper = stepper
        self.clock = clock
        self.sink = sink
        self.rng = rng_state
        self.now_fn = now_fn
        self.stats = ModeStats()
        self.voice = PartnerVoice(settings.channel, sink, settings.max_note_steps, settings.density,
                                  min_note_ns=MIN_NOTE_NS)
        self._mask = np.zeros(melody.NUM_CLASSES, dtype=np.bool_)
        self._table: np.ndarray | None = None  # [rows, 130] peeks for this step interval
        self._rows: dict[tuple[int, int], int] = {}  # (position mod steps_per_beat, pitch) -> row of _table
        self._pitches_for: np.ndarray | None = None  # the mask _pitches were found for
        self._pitches: list[int] = []
        self._masks: dict[int, np.ndarray] = {}  # pitch -> harmony_mask, for the pitches above
        self.table_hits = self.table_misses = 0
        self.reflex = reflex
        # (step, pitch) -> the answer drawn ahead: an ON token, REST or NO_CANDIDATE
        self._drawn: dict[tuple[int, int], int] = {}
        self.reflex_answers = 0  # harmonies the port sent itself (adopted)
        self.chord_notes = 0  # note-ons heard as part of a chord already answered (not answered themselves)
        self._velocity_for: ModeSettings | None = None
        self._velocity = np.zeros(128, dtype=np.int64)
        self.begin(0)

    @property
    def idle(self) -> bool:
        return self.voice.held is None and not self.grid.sounding

    def begin(self, step: int) -> None:
        self.grid = PerformerGrid(step)
        self._first = step
        self._cause: int | None = None  # the performer pitch the sounding harmony answers
        self._chord: tuple[int, int] | None = None  # (stamp, pitch) of the answered chord's first note-on, held
        self._partner_steps: dict[int, int] = {}  # step -> partner token there (ON at onsets, OFF at ends)
        self._partner_prev = melody.HOLD
        self._velocities: deque[int] = deque(maxlen=8)
        self._table = None
        self._drawn = {}
        self._sync_reflex()
        self.stepper.reset()

    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        step = self.grid.note_on(self.clock.nearest_step(ts_ns), pitch, velocity)
        self._velocities.append(velocity)
        if self._in_chord(ts_ns):
            self.chord_notes += 1  # the chord has its answer (module docstring)
        else:
            self._chord = None
            drawn = self._drawn.get((step, pitch))
            if drawn is not None:
                self._play_drawn(ts_ns, step, pitch, velocity, drawn)
            else:
                self._answer(ts_ns, step, pitch, velocity)
        self._sync_reflex()

    def _in_chord(self, ts_ns: int) -> bool:
        """Whether a note-on at ``ts_ns`` joins the chord answered last (module docstring)."""
        return self._chord is not None and abs(ts_ns - self._chord[0]) <= CHORD_WINDOW_NS

    def adopt(self, ts_ns: int, pitch: int, velocity: int, answer: ReflexAnswer) -> bool:
        """The port answered this note-on itself (``answer``): hold what it sent. False (the engine ends the
        answer) when the voice has moved to another channel since the table was published."""
        if answer.answer[0] & 0x0F != self.voice.channel:
            return False
        step = self.grid.note_on(self.clock.nearest_step(ts_ns), pitch, velocity)
        self._velocities.append(velocity)
        self.voice.adopt(answer.answer[1], answer.answer[2], step, answer.sent_ns)
        # On the wire already: the chord's one answer, even if the chord had one (module docstring).
        self._chord = (self._chord[0] if self._in_chord(ts_ns) else ts_ns, pitch)
        self._cause = pitch
        self._partner_steps[step] = melody.on(answer.answer[1])
        self.stats.harmonies += 1
        self.stats.tokens += 1
        self.reflex_answers += 1
        self._sync_reflex()
        return True

    def _play_drawn(self, ts_ns: int, step: int, pitch: int, velocity: int, drawn: int) -> None:
        """The answer drawn ahead for this note-on, played the usual way (the port did not send it)."""
        at_ns = ts_ns if self.now_fn is None else max(ts_ns, self.now_fn())
        if drawn == NO_CANDIDATE:
            self.stats.no_candidate += 1
            self._end(at_ns, step)
        elif drawn == REST:
            self.voice.end(at_ns, reaction=True)
            self._cause = None
            self._chord = (ts_ns, pitch)
        else:
            self.voice.start(melody.pitch_of(drawn), self._velocity_of(velocity), step, at_ns, roll=False,
                             reaction=True)
            self.reflex.hold(pitch, self.voice.channel, melody.pitch_of(drawn))
            self._cause = pitch
            self._chord = (ts_ns, pitch)
            self._partner_steps[step] = drawn
            self.stats.harmonies += 1
            self.stats.tokens += 1

    def _velocity_of(self, velocity: int) -> int:
        return self.s.velocity if self.s.velocity is not None else max(1, round(velocity * 0.85))

    def _answer(self, ts_ns: int, step: int, pitch: int, velocity: int) -> None:
        row = self._rows.get((step, pitch)) if self._table is not None else None
        try:
            if row is not None:
                self.table_hits += 1
                logits = self._table[row]
            else:
                self.table_misses += 1
                logits = self.stepper.peek(melody.on(pitch), self._partner_prev, self.s.voice, step)
        except StepError as exc:
            self.stats.model_errors += 1
            self.stats.last_error = str(exc)
            self._end(ts_ns if self.now_fn is None else max(ts_ns, self.now_fn()), step)
            return
        mask = harmony_mask(self.s.allowed, pitch)
        token = int(sample(logits, mask, self.s.temperature, self.s.top_k, self.s.top_p, self.rng, NO_CANDIDATE))
        at_ns = ts_ns if self.now_fn is None else max(ts_ns, self.now_fn())  # due now: as soon as it is known
        if token == NO_CANDIDATE:  # nothing consonant in key and range under this note: stay out of the way
            self.stats.no_candidate += 1
            self._end(at_ns, step)
            return
        self._chord = (ts_ns, pitch)
        if not self.voice.start(melody.pitch_of(token), self._velocity_of(velocity), step, at_ns, reaction=True):
            self._cause = None  # density made this one a rest
            return
        if self.reflex is not None:
            self.reflex.hold(pitch, self.voice.channel, melody.pitch_of(token))
        self._cause = pitch
        self._partner_steps[step] = token
        self.stats.harmonies += 1
        self.stats.tokens += 1

    def note_off(self, ts_ns: int, pitch: int) -> None:
        step = self.clock.nearest_step(ts_ns)
        self.grid.note_off(step, pitch)
        if self._chord is not None and pitch == self._chord[1]:
            self._chord = None  # the chord's first note is up: the next note-on is a new note
        if pitch == self._cause:
            at_ns = ts_ns if self.now_fn is None else max(ts_ns, self.now_fn())
            self._end(at_ns, step)
        self._sync_reflex()

    def _end(self, at_ns: int, step: int, reaction: bool = True) -> None:
        """The harmony ends at ``at_ns``: due when computed (the note heard now, a reaction), or a step's (the cap)."""
        if self.voice.held is not None:
            self.voice.end(at_ns, reaction=reaction)
            self._partner_steps.setdefault(step, melody.OFF)
        self._cause = None

    def release_performer(self, ts_ns: int) -> None:
        self.grid.release_all(self.clock.nearest_step(ts_ns))
        self._chord = None
        self._end(ts_ns, self.clock.nearest_step(ts_ns))
        self._sync_reflex()

    def trigger(self) -> None:
        pass

    def _onset_step(self, onset_ns: int) -> int:
        """The last grid step at or before ``onset_ns``. The note-length cap counts from there: a harmony sounds from
        its cause's note-on, between steps (the port's reflex, or a note-on past the nearest step's middle, which
        the performer grid files under the next step), and counted from the next step it outlived the cap by up to
        a step on the wire (1,410 ms against 1,333 in a JACK soak at 180 BPM)."""
        s = self.clock.nearest_step(onset_ns)
        return s - 1 if self.clock.ns_at_step(s) > onset_ns else s

    def on_step(self, step: int) -> None:
        due = self.clock.ns_at_step(step)
        held = self.voice.held
        if held is not None and step - min(held[1], self._onset_step(held[2])) >= self.s.max_note_steps:
            self._end(due, step, reaction=False)  # the cap, at the step's own time: the grid's
        if step > self._first:
            self._advance(step)
        self._build_table(step)
        if self.reflex is not None:
            self._draw_ahead(step)
        self._sync_reflex()

    def _advance(self, step: int) -> None:
        prev = step - 1
        performer = self.grid.finalize(prev)
        partner = self._partner_steps.pop(prev, melody.HOLD)
        try:
            self.stepper.feed(performer, self._partner_prev, self.s.voice, prev)
        except StepError as exc:
            self.stats.model_errors += 1
            self.stats.last_error = str(exc)
            self.stepper.reset()
        self._partner_prev = partner
        for s in [s for s in self._partner_steps if s < prev]:  # late-arriving events of finalised steps
            del self._partner_steps[s]

    def _build_table(self, step: int) -> None:
        """The peeks of every harmonizable pitch at ``step``'s position and the next (module docstring)."""
        self._table, self._rows = None, {}
        peek_many = getattr(self.stepper, "peek_many", None)
        if peek_many is None:
            return  # a stepper without batching: every note-on peeks
        if self._pitches_for is not self.s.allowed:
            self._pitches_for = self.s.allowed
            self._masks = {}
            # Every pitch of the key in any octave: the performer often plays above the partner's range.
            in_key = {q % 12 for q in range(128) if self.s.allowed[melody.on(q)]}
            self._pitches = [p for p in range(128) if p % 12 in in_key and harmony_mask(self.s.allowed, p).any()]
        if not self._pitches:
            return
        positions = [step, step + 1]  # song steps: the stepper makes the model's position input (beat or bar)
        keys = [(q, p) for q in positions for p in self._pitches]
        tokens = np.array([melody.on(p) for _, p in keys], dtype=np.int64)
        pos = np.array([q for q, _ in keys], dtype=np.int64)
        try:
            self._table = peek_many(tokens, self._partner_prev, self.s.voice, pos)
        except StepError as exc:  # the single peeks still work, or fail and are counted there
            self.stats.last_error = str(exc)
            return
        self._rows = {key: i for i, key in enumerate(keys)}

    def _draw_ahead(self, step: int) -> None:
        """Draw the answer to every pitch of the table at ``step`` and ``step + 1`` and publish them (module doc)."""
        self._drawn = {}
        if self._table is None:
            return
        answers = np.full((2, 128), -1, dtype=np.int64)
        for i, s in enumerate((step, step + 1)):
            for p in self._pitches:
                row = self._rows.get((s, p))
                if row is None:
                    continue
                mask = self._masks.get(p)
                if mask is None:
                    mask = self._masks[p] = harmony_mask(self.s.allowed, p)
                token = int(sample(self._table[row], mask, self.s.temperature, self.s.top_k, self.s.top_p, self.rng,
                                   NO_CANDIDATE))
                if token != NO_CANDIDATE and self.voice.rests():
                    token = REST
                self._drawn[(s, p)] = token
                if token >= 0:
                    answers[i, p] = melody.pitch_of(token)
        if self._velocity_for is not self.s:  # the answer's velocity per input velocity, for these settings
            self._velocity_for = self.s
            self._velocity = np.array([self._velocity_of(v) for v in range(128)], dtype=np.int64)
        self.reflex.publish(*windows(self.clock, step), self.voice.channel, answers, self._velocity)

    def _sync_reflex(self) -> None:
        """The port may answer while a table is drawn (its own checks keep it off a partner that sounds)."""
        if self.reflex is not None:
            self.reflex.enable(bool(self._drawn))

    def stop(self, now_ns: int) -> None:
        self.voice.silence(now_ns, cancel=True)
        self._cause = None
        self._chord = None
        self._drawn = {}
        self._sync_reflex()
