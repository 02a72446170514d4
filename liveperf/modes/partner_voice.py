"""The partner's one sounding note on one channel: note-on, note-off, note-length cap, silence.

Every mode plays through a ``PartnerVoice``, so the rules that keep notes from sticking live in one place:
- a new token other than ``HOLD`` ends the sounding note at the same due time;
- a note held for ``max_note_steps`` is ended (a droning partner is worse than a rest);
- ``silence(at_ns, cancel)`` ends the note at ``at_ns``; with ``cancel`` it also drops what was scheduled ahead on
  the channel (``OutputSink.cancel_pending``), and a note whose onset was still in the future needs no note-off;
- a note-on never goes out before a note-off still pending for the same pitch (a capped note's off is due at the
  next step, computed ahead; a harmony on that pitch answering the performer *now* waits for it, at most the
  lookahead) — otherwise the synth hears on, on, off: a double strike, and a stuck voice on synths that stack;
- ``density`` < 1 turns that share of note-ons into rests (drawn from the voice's own seeded RNG, so a density of 1
  draws nothing and leaves every other random stream as it was);
- ``min_note_ns`` > 0 (harmonize: notes end when the performer lets go, which can be at once): a note this voice ends
  (a new note, ``end``, ``adopt``) sounds at least that long; its note-off is never due with its note-on. A new note
  may then overlap the end of the last one by less than ``min_note_ns`` (on the same pitch it waits, as above).
  ``silence`` (stop, panic, mode switch) still ends at once.
Engine thread only; times in ns from the clock, steps on the song's grid.
"""

from __future__ import annotations

import numpy as np

from liveperf.music import melody
from liveperf.music.notes import note_off, note_on
from liveperf.timing.scheduler import REACTION_LATE_NS, OutputSink


class PartnerVoice:
    def __init__(self, channel: int, sink: OutputSink, max_note_steps: int, density: float = 1.0,
                 seed: int = 0, min_note_ns: int = 0) -> None:
        self.channel = channel
        self.sink = sink
        self.max_note_steps = max_note_steps
        self.density = density
        self.min_note_ns = min_note_ns
        self._rng = np.random.default_rng(seed)
        self._off_due: dict[int, int] = {}  # pitch -> due ns of the latest note-off scheduled for it
        self.held: tuple[int, int, int] | None = None  # (pitch, onset step, onset ns) of the sounding note

    def _off(self, due_ns: int, pitch: int, reaction: bool = False) -> None:
        if reaction:  # due the moment it was computed: flagged so the report times it with the reactions
            self.sink.schedule(due_ns, note_off(self.channel, pitch), REACTION_LATE_NS)
        else:
            self.sink.schedule(due_ns, note_off(self.channel, pitch))
        self._off_due[pitch] = max(due_ns, self._off_due.get(pitch, due_ns))

    def _end_held(self, at_ns: int, reaction: bool = False) -> None:
        """Note-off for the sounding note at ``at_ns``, or once it has sounded ``min_note_ns``, if later
        (``reaction``: ``at_ns`` is the moment it was computed; a note-off is never dropped as late either way)."""
        pitch, _step, onset_ns = self.held
        due_ns = max(at_ns, onset_ns + self.min_note_ns)
        self._off(due_ns, pitch, reaction and due_ns == at_ns)
        self.held = None

    def play(self, step: int, due_ns: int, token: int, velocity: int, reaction: bool = False) -> int:
        """Play ``token`` at grid ``step`` (due at ``due_ns``); returns the token actually played. ``reaction``: due
        the moment it was computed (``start``)."""
        if self.held is not None and token == melody.HOLD and step - self.held[1] >= self.max_note_steps:
            token = melody.OFF
        if token != melody.HOLD and self.held is not None:
            self._end_held(due_ns, reaction)
        if melody.is_on(token) and not self.start(melody.pitch_of(token), velocity, step, due_ns,
                                                  reaction=reaction):
            return melody.OFF
        return token

    def start(self, pitch: int, velocity: int, step: int, due_ns: int, roll: bool = True,
              reaction: bool = False) -> bool:
        """A note-on at ``due_ns`` (ending the sounding note there first); False when ``density`` made it a rest.
        ``roll=False``: the density was rolled already (``rests``, for answers drawn ahead). ``reaction``: due the
        moment it was computed, off the grid (an answer to a note heard now): it may go out up to
        ``scheduler.REACTION_LATE_NS`` late before it is dropped, where a grid note has the show's tolerance."""
        if self.held is not None:
            self._end_held(due_ns, reaction)
        if roll and self.rests():
            return False
        due_ns = max(due_ns, self._off_due.get(pitch, due_ns))
        data = note_on(self.channel, pitch, max(1, min(127, velocity)))
        if reaction:
            self.sink.schedule(due_ns, data, REACTION_LATE_NS)
        else:
            self.sink.schedule(due_ns, data)
        self.held = (pitch, step, due_ns)
        return True

    def rests(self) -> bool:
        """Roll the density: True when this note-on is to be a rest."""
        return self.density < 1.0 and self._rng.random() >= self.density

    def adopt(self, pitch: int, velocity: int, step: int, sent_ns: int) -> None:
        """The port already sent this note-on at ``sent_ns`` (``liveperf.modes.reflex``): end what sounded, hold it."""
        if self.held is not None and self.held[0] == pitch:  # struck again on the wire: the old note ends there
            self._off(sent_ns, pitch)
            self.held = None
        if self.held is not None:
            self._end_held(sent_ns)
        self.sink.adopt(sent_ns, note_on(self.channel, pitch, velocity))
        self.held = (pitch, step, sent_ns)

    def set_channel(self, channel: int, at_ns: int) -> None:
        """Move the voice to ``channel`` (0..15): what sounds or waits on the old channel is silenced first."""
        if channel != self.channel:
            self.silence(at_ns, cancel=True)
            self.channel = channel

    def end(self, at_ns: int, reaction: bool = False) -> None:
        """Note-off for the sounding note at ``at_ns`` (nothing if silent; never before ``min_note_ns``)."""
        if self.held is not None:
            self._end_held(at_ns, reaction)

    def cap(self, step: int, due_ns: int) -> None:
        """End a note that has sounded for ``max_note_steps`` by ``step``."""
        if self.held is not None and step - self.held[1] >= self.max_note_steps:
            self.end(due_ns)

    def silence(self, at_ns: int, cancel: bool) -> None:
        if self.held is None:
            return  # nothing sounds or waits to sound; a pending note-off keeps its own due time
        if cancel:
            self.sink.cancel_pending(self.channel, at_ns)
        # A held note whose onset is still in the future was just cancelled (never sounded): no note-off needed.
        if not cancel or self.held[2] <= at_ns:
            self._off(at_ns, self.held[0])
        self.held = None
