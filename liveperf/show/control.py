"""Show control on the engine thread: OSC commands, stage-view keys, Program Change / Bank Select / Song Select and
mapped CCs become song changes (at the next bar line), parameter changes, taps, MIDI learn, panic and stop.

Threads: the OSC and key threads only enqueue ``(ts_ns, Command)`` on the engine's inbox; MIDI arrives there as
bytes. ``on_command``, ``on_midi`` and ``on_step`` run on the engine thread (one song's engine thread at a time; the
show hands the controller from one song to the next after joining the old thread). The controller never changes
songs itself: it sets ``pending_song``; the loop stops at the next bar line (``stop_at_bar``) and the show starts
that song there. Feedback and slow work (writing a learned mapping into the setlist) go to a ``TimedWorker``.

Feedback follows what is played: ``/liveperf/state`` says "playing" or "stopped" (following MIDI clock: before the
band's Start, after its Stop or a "stop" dropout; and at the end of the show), sent when it changes; ``/liveperf/tempo``
is sent at a song's start, on a tempo change made here, and, for a tempo that moves by itself (MIDI clock followed,
tap tempo), at a beat where it has moved ``TEMPO_FEEDBACK_BPM`` or more from the last value sent: at most once a
beat, like the beat feedback, and never for the fit's jitter. The same once-a-beat samples give the tempo the song
was played at (``played_tempo_bpm``) for the report. Following Link, ``/liveperf/link/peers`` says how many other
peers the session has, at a song's start and at a beat where the count changed.

Parameters: one ``ParamStore`` for the show. A song's start sets its setlist values (``song_params``), so a live
change lasts until the next song. Float parameters glide (``smoothing_ms``): while one glides, every step applies
its current value.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from liveperf.io.osc_protocol import Command
from liveperf.show.log_limit import RepeatLimiter
from liveperf.params import MidiLearn, ParamError, ParamStore
from liveperf.setlist.schema import Setlist, SetlistError, Song
from liveperf.music.style import KNOB_PARAMS

_BANK_MSB, _BANK_LSB = 0, 32
# A followed tempo moves this far from the last /liveperf/tempo before it is sent again: a 2-beat fit of MIDI clock
# through JACK wanders up to ~0.25 BPM around the true tempo (``liveperf.timing.midi_clock``), which is not a change.
TEMPO_FEEDBACK_BPM = 0.5


def song_params(song: Song) -> dict:
    """A song's setlist values as live parameters (what a song change resets them to); partner k's (``[[song.
    partner]]``) as ``pk.<name>``."""
    values = _partner_params(song)
    for k, partner in enumerate(song.partners, start=2):
        values.update({f"p{k}.{name}": v for name, v in _partner_params(partner).items() if name != "tempo_bpm"})
    return values


def _partner_params(song: Song) -> dict:
    values = {"temperature": song.temperature, "top_p": song.top_p, "top_k": song.top_k,
              "sigma": song.sigma, "walk_step": song.walk_step, "density": song.density,
              "silence_steps": song.silence_steps, "response_bars": song.response_bars,
              "phrase_every_bars": song.phrase_every_bars, "mode": song.mode, "partner_channel": song.channel,
              "tempo_bpm": song.tempo_bpm, "comp_rhythm": song.comp_rhythm, "humanize_ms": song.humanize_ms,
              **dict(zip(KNOB_PARAMS, song.style))}
    if song.velocity is not None:
        values["velocity"] = song.velocity
    if song.swing is not None:
        values["swing"] = song.swing
    return values


@dataclass
class ControlStats:
    commands: int = 0
    song_requests: int = 0
    params_set: int = 0
    params_ignored: int = 0  # valid, but not applicable now (tempo while following MIDI clock)
    program_changes: int = 0
    mapped_ccs: int = 0
    learned: int = 0
    refused: int = 0  # a song that does not exist, prev on the first song, ...
    log: list[str] = field(default_factory=list)  # the last few refusals, for the stage view


class ShowController:
    """See the module docstring. ``playlist``: setlist indices in the order the show plays them by itself."""

    def __init__(self, setlist: Setlist, playlist: list[int], *, worker=None, feedback=None,
                 on_panic: Callable[[int], None] = lambda ts: None, on_stop: Callable[[], None] = lambda: None,
                 on_learned: Callable[[list[dict]], None] | None = None, log: Callable[[str], None] = print,
                 counts: Callable[[], tuple[int, int, int, int]] = lambda: (0, 0, 0, 0),
                 on_beat: Callable[[int, int], None] = lambda bar, beat: None) -> None:
        self.setlist = setlist
        self.playlist = list(playlist)
        self.worker = worker  # TimedWorker or None
        self.feedback = feedback  # OscFeedback (used on the worker thread only) or None
        self.on_panic = on_panic
        self.on_stop = on_stop
        self.on_learned = on_learned
        self.log = log
        self.counts = counts  # (late-dropped, input dropped, errors, copies guarded) for /liveperf/stats, once a bar
        self.on_beat = on_beat  # (bar, beat), engine thread: the stage view's snapshot
        self.params = ParamStore()
        self.learn = MidiLearn(setlist.cc)
        self.stats = ControlStats()
        self._repeats = RepeatLimiter()  # garbage input must not bury the log in refusals
        self.current: int | None = None
        self.pending_song: int | None = None
        self.engine = None
        self.clock = None
        self._steps_per_bar = 16
        self._gliding: dict[str, int] = {}  # float parameter -> ns its glide ends
        self._bank: list[int | None] = [None, None]  # Bank Select MSB, LSB (performer input, any channel)
        self._mode_shown: str | None = None
        self._partners_shown: list[str] = []  # each partner's mode as last sent (/liveperf/partner/mode)
        self._chord_shown = None  # the last chord sent on /liveperf/chord (the engine's ``chord_at``)
        self._key_shown = None  # the last key sent on /liveperf/key (the engine's ``key_at``)
        self._tempo_shown: float | None = None  # the last tempo sent on /liveperf/tempo
        self._peers_shown: int | None = None  # the last Link peer count sent on /liveperf/link/peers
        self._state_shown: str | None = None  # the last state sent on /liveperf/state
        self._tempo_samples: list[float] = []  # the clock's tempo at each beat played of this song

    # ---- songs -------------------------------------------------------------------------------------------------
    def bind(self, index: int, engine, clock, start_ns: int, steps_per_bar: int) -> None:
        """A song starts: route control to its engine; reset parameters to the song's values."""
        song = self.setlist.songs[index]
        self.current, self.pending_song = index, None
        self.engine, self.clock, self._steps_per_bar = engine, clock, steps_per_bar
        for name, value in song_params(song).items():
            self.params.set(name, value, start_ns, glide=False)
        self._gliding.clear()
        self._mode_shown = engine.mode_name
        self._chord_shown = None  # the new song's first chord is sent, whatever the last song ended on
        self._key_shown = None
        self._tempo_samples = []
        self._feedback(start_ns, "song", index + 1, song.title)
        self._feedback(start_ns, "mode", engine.mode_name)
        self._partners_shown = engine.partner_modes()
        if len(self._partners_shown) > 1:
            for k, name in enumerate(self._partners_shown, start=1):
                self._feedback(start_ns, "partner_mode", k, name)
        self._send_tempo(start_ns, clock.tempo_bpm)
        self._peers_shown = None
        self._send_peers(start_ns)
        self._state_shown = None  # a new song says its state, whatever the last one ended in
        # Following MIDI clock, the engine waits for the band's Start (or Continue) before it plays.
        self.on_transport("playing" if getattr(clock, "running", True) else "stopped", start_ns)

    def on_transport(self, state: str, ts_ns: int) -> None:
        """The transport changed (``liveperf.loop.run_loop``'s ``on_transport``, engine thread; the show's thread at
        its end): "playing" or "stopped" goes out on ``/liveperf/state`` at ``ts_ns`` when it differs from the last
        sent."""
        if state != self._state_shown:
            self._state_shown = state
            self._feedback(ts_ns, "state", state)

    def played_tempo_bpm(self) -> float | None:
        """The tempo the bound song was played at: the median of the clock's tempo at each beat played (the
        followed MIDI clock's fit, or the internal clock's after taps and tempo changes), so a short ramp or the
        fit's first beats do not move it; rounded to 0.01 BPM. None when no beat was played (the band never
        started). Engine thread, or after it has ended."""
        if not self._tempo_samples:
            return None
        return round(statistics.median(self._tempo_samples), 2)

    def next_index(self, index: int) -> int | None:
        """The song after ``index`` in the playlist (None: end of the set)."""
        later = [i for i in self.playlist if i > index]
        return later[0] if later else None

    def prev_index(self, index: int) -> int | None:
        earlier = [i for i in self.playlist if i < index]
        return earlier[-1] if earlier else None

    def request_song(self, index: int | None, why: str) -> bool:
        """Switch to setlist song ``index`` at the next bar line (the latest request wins)."""
        self.stats.song_requests += 1
        if index is None or not 0 <= index < len(self.setlist.songs):
            return self._refuse(f"{why}: no such song")
        self.pending_song = index
        return True

    # ---- input from the engine thread's inbox --------------------------------------------------------------------
    def on_command(self, ts_ns: int, cmd) -> None:
        """One ``Command`` from OSC or the stage keys (already type- and range-checked)."""
        if not isinstance(cmd, Command):
            self.stats.refused += 1
            return
        self.stats.commands += 1
        kind, value = cmd.kind, cmd.value
        cur = self.current if self.current is not None else 0
        if kind == "song_next":
            nxt = self.next_index(cur)
            self.request_song(nxt, "next song") if nxt is not None else self._refuse("next song: this is the last")
        elif kind == "song_prev":
            prv = self.prev_index(cur)
            self.request_song(prv, "previous song") if prv is not None else self._refuse("previous song: this is "
                                                                                          "the first")
        elif kind == "song_select":
            self._select(value)
        elif kind == "param":
            self.set_param(value[0], value[1], ts_ns)
        elif kind == "tap" and self.engine is not None:
            self.engine.tap_tempo(ts_ns)
        elif kind == "learn":
            self.learn.arm(value)
            self.log(f"MIDI learn: move a knob to control {value}")
        elif kind == "panic":
            if self.engine is not None:
                self.engine.stop(ts_ns, keep_clock=True)  # notes off; a drum machine following us keeps going
            self.on_panic(ts_ns)
        elif kind == "stop":
            self.on_stop()
        elif kind == "feedback_add" and self.feedback is not None and self.worker is not None:
            self.worker.now(self.feedback.add_target, *value)
        else:
            self.stats.refused += 1

    def on_midi(self, ts_ns: int, data: bytes) -> bool:
        """Performer MIDI that controls the show rather than the music; True when consumed (not for the engine)."""
        if not data:
            return False
        status = data[0]
        kind = status & 0xF0
        if status == 0xF3 and len(data) == 2 and data[1] < 0x80:  # Song Select: 0-based song number
            if self.setlist.program_change == "select":
                self.request_song(data[1] if data[1] < len(self.setlist.songs) else None, f"Song Select {data[1]}")
            return True
        if kind == 0xC0 and len(data) == 2 and data[1] < 0x80:
            if self.setlist.program_change != "select":
                return True
            self.stats.program_changes += 1
            msb, lsb = self._bank
            bank = None if msb is None and lsb is None else ((msb or 0) << 7) | (lsb or 0)
            self.request_song(self.setlist.song_for_program(data[1], bank), f"Program Change {data[1] + 1}"
                              + (f" (bank {bank})" if bank is not None else ""))
            return True
        if kind == 0xB0 and len(data) == 3 and data[1] < 0x80 and data[2] < 0x80:
            if data[1] == _BANK_MSB:
                self._bank = [data[2], None]  # a new MSB starts a new bank number
                return True
            if data[1] == _BANK_LSB:
                self._bank[1] = data[2]
                return True
            armed = self.learn.armed
            hit = self.learn.on_cc(status & 0x0F, data[1], data[2])
            if armed is not None:
                self.stats.learned += 1
                self.log(f"MIDI learn: {armed} <- channel {(status & 0x0F) + 1} CC {data[1]}")
                if self.on_learned is not None and self.worker is not None:
                    self.worker.now(self.on_learned, self.learn.mappings())
            if hit is None:
                return False
            self.stats.mapped_ccs += 1
            self.set_param(hit[0], hit[1], ts_ns)
            return True
        return False

    # ---- parameters ------------------------------------------------------------------------------------------------
    def set_param(self, name: str, value, ts_ns: int) -> None:
        try:
            target = self.params.set(name, value, ts_ns)
        except ParamError as exc:
            self._refuse(str(exc))
            return
        self.stats.params_set += 1
        end_ns = self.params.glide_end_ns(name)
        if end_ns > ts_ns:
            self._gliding[name] = end_ns
            return  # on_step applies it, step by step
        self._apply(name, target, ts_ns)

    def _apply(self, name: str, value, at_ns: int) -> None:
        if self.engine is None:
            return
        try:
            ok = self.engine.set_param(name, value, at_ns)
        except KeyError as exc:  # a mode this song cannot play
            self._refuse(str(exc))
            return
        if not ok:
            self.stats.params_ignored += 1
        elif name == "tempo_bpm":
            self._send_tempo(at_ns, float(value))

    def on_step(self, step: int, due_ns: int) -> None:
        """Before the engine computes ``step`` (due at ``due_ns``): glides, beat and state feedback."""
        for name, end_ns in list(self._gliding.items()):
            self._apply(name, self.params.value(name, due_ns), due_ns)
            if due_ns >= end_ns:
                del self._gliding[name]
        if self.engine is not None:
            chord = self.engine.chord_at(step)
            if chord is not None and chord != self._chord_shown:
                self._chord_shown = chord
                self._feedback(due_ns, "chord", chord.name, chord.root, chord.quality)
            key = self.engine.key_at(step)
            if key is not None and key[0] is not None and key[0] != self._key_shown:
                self._key_shown = key[0]
                self._feedback(due_ns, "key", str(key[0]), round(float(key[1]), 3))
        spb = self.clock.steps_per_beat if self.clock is not None else 4
        if step % spb == 0:
            bar, beat = step // self._steps_per_bar + 1, (step % self._steps_per_bar) // spb + 1
            self._feedback(due_ns, "beat", bar, beat)
            self.on_beat(bar, beat)
            if self.clock is not None:
                tempo = float(self.clock.tempo_bpm)
                self._tempo_samples.append(tempo)
                if self._tempo_shown is None or abs(tempo - self._tempo_shown) >= TEMPO_FEEDBACK_BPM:
                    self._send_tempo(due_ns, tempo)
                self._send_peers(due_ns)
        if step % self._steps_per_bar == 0 and self.engine is not None:
            pending = self.engine.pending_mode
            name = pending or self.engine.mode_name  # the engine switches at this bar line, after this call
            if name != self._mode_shown:
                self._mode_shown = name
                self._feedback(due_ns, "mode", name)
            partners = self.engine.partner_modes()
            if len(partners) > 1 and partners != self._partners_shown:
                for k, (old, new) in enumerate(zip(self._partners_shown, partners), start=1):
                    if old != new:
                        self._feedback(due_ns, "partner_mode", k, new)
                self._partners_shown = partners
            self._feedback(due_ns, "counts", *self.counts())

    # ---- helpers -----------------------------------------------------------------------------------------------------
    def _select(self, value) -> None:
        if isinstance(value, int):
            self.request_song(value - 1 if 1 <= value <= len(self.setlist.songs) else None, f"song {value}")
            return
        try:
            hits = self.setlist.find(str(value))
        except SetlistError as exc:
            self._refuse(str(exc))
            return
        self.request_song(hits[0], f"song {value!r}")

    def _refuse(self, why: str) -> bool:
        self.stats.refused += 1
        self.stats.log = (self.stats.log + [why])[-5:]
        line = self._repeats.line(f"control: {why}", time.monotonic())
        if line is not None:
            self.log(line)
        return False

    def flush_log(self) -> None:
        """At the end of the show: say how many refusals were not printed (``RepeatLimiter``)."""
        for line in self._repeats.flush():
            self.log(f"control: {line}")

    def _send_peers(self, at_ns: int) -> None:
        """Following Link (the clock has ``peers``): the peer count on ``/liveperf/link/peers`` when it changed."""
        peers = getattr(self.clock, "peers", None)
        if peers is not None and peers != self._peers_shown:
            self._peers_shown = peers
            self._feedback(at_ns, "link_peers", int(peers))

    def _send_tempo(self, at_ns: int, tempo_bpm: float) -> None:
        self._tempo_shown = tempo_bpm
        self._feedback(at_ns, "tempo", round(tempo_bpm, 2))

    def _feedback(self, due_ns: int, what: str, *args) -> None:
        if self.feedback is not None and self.worker is not None:
            self.worker.at(due_ns, getattr(self.feedback, what), *args)
