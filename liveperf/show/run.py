"""The composition root: wires a setlist's songs to real adapters (ports or files, scheduler, recorder) and plays.

Threads: the caller's thread (signals, waiting), one engine thread per song (owns the engine and the clock),
the scheduler thread (owns the output port), and input threads (MIDI poll or take player) that only enqueue.
Every model is loaded and checked before the first note, so a broken file stops the show before it starts.
Whatever happens (end of input, duration, Ctrl-C/SIGTERM, an error in a song), the scheduler's ``close`` sends
note-offs for every note still sounding and the recording is written.
"""

from __future__ import annotations

import dataclasses
import gc
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from liveperf.timing.clock import InternalClock
from liveperf.timing.clock_out import TICKS_PER_BEAT, ClockOut
from liveperf.timing.echo_guard import EchoGuardSink
from liveperf.engine import Engine
from liveperf.io.file_input import TakePlayer, take_events
from liveperf.io.jack_probe import jack_server_priority
from liveperf.io.journal import recover
from liveperf.io.midi_file import Take
from liveperf.io.osc import OscServer
from liveperf.io.osc_feedback import OscFeedback
from liveperf.io.recorder import Recorder
from liveperf.io.timed_worker import TimedWorker
from liveperf.loop import QueueInput, run_loop
from liveperf.timing.midi_clock import MidiClockFollower
from liveperf.modes.build import SongModels, build_song, key_follower, key_text, partners_text
from liveperf.modes.planner import INLINE, ThreadPlanner
from liveperf.music.notes import is_note_off, is_note_on
from liveperf.timing.scheduler import Scheduler, engine_lookahead_ns
from liveperf.setlist.schema import Setlist, SetlistError
from liveperf.setlist.lint import setlist_warnings
from liveperf.setlist.write import store_cc_mappings
from liveperf.show.control import ShowController
from liveperf.show.load import load_copies, load_song_models, probe_warnings, song_take
from liveperf.show.report import ShowReport, SongReport, add_engine_figures, add_timing
from liveperf.show.link import begin_song, start_link
from liveperf.show.songs import drain_inbox, send_patch
from liveperf.show.stage import StageFeed
from liveperf.timing.link_clock import LinkClock


def log_line(text: str) -> None:
    """The show's log: one line on stdout, flushed at once (a rig's log file or a pipe sees it as it happens)."""
    print(text, flush=True)


@dataclass
class ShowOptions:
    input_path: Path | None = None  # performer take for every song (file mode input)
    record_path: Path | None = None  # the whole show in one MIDI file, written at the end
    record_dir: Path | None = None  # one MIDI file per song, crash-safe (journal flushed at every bar line)
    backend: str = "auto"  # auto | jack-native | jack-rtmidi | alsa | coremidi | file
    duration_s: float | None = None  # per song
    provider: str = "cpu"
    client_name: str = "liveperf"
    lead_in_ms: float = 250.0
    seed: int | None = None  # overrides every song's seed
    realtime: bool = True  # ask for SCHED_FIFO for the scheduler thread (falls back, and says so)
    stage_view: bool = False  # draw the stage view (and read stage keys) when stdout is a terminal


class NullPort:
    """Output for file mode with no MIDI system: sends nowhere (the recorder hears everything)."""

    def send(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def sending_priority(backend: str) -> int | None:
    """SCHED_FIFO priority for the sending thread. Under JACK it must stay below the server: JACK runs every
    client in one cycle, so a sending thread that preempts the server only makes the cycle (and every clock tick
    and note in it) late. Measured here: with a non-real-time JACK server, a FIFO sending thread made the
    jack_midi_clock stream arrive in bursts (partner notes a tick off the grid); without it, on the grid."""
    if backend not in ("jack-rtmidi", "jack-native"):
        return 70
    prio = jack_server_priority()
    if prio is None:
        return 70
    return None if prio == 0 else max(1, min(70, prio - 10))


class Show:
    def __init__(self, setlist: Setlist, options: ShowOptions, log: Callable[[str], None] | None = None) -> None:
        self.setlist = setlist
        self.options = options
        self.log = log if log is not None else log_line
        self.stop_event = threading.Event()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # the engine thread's only input: (ts_ns, bytes|Command)
        self.osc: OscServer | None = None  # after run() has started it: the bound ports are on it
        self.osc_ready = threading.Event()  # set once the OSC server is listening (or has failed to)
        self.controller: ShowController | None = None
        self.clock_out: ClockOut | None = None  # the MIDI clock we send (``[show] send_clock``), for the whole show
        self.stopped_by = ""  # "stop command" when OSC or the stage view asked; a signal leaves it empty
        self.now_ns: Callable[[], int] = time.monotonic_ns  # the show's clock (``run`` sets it for its port)
        self.planner = INLINE  # ``run`` starts the show's planner thread
        self.lookahead_ns = int(setlist.lookahead_ms * 1e6)  # ``run`` sets it for its port (engine_lookahead_ns)

    def run(self, indices: list[int], backend: str, out_port, in_port=None) -> ShowReport:
        """Play the songs ``indices`` on ``out_port`` (and ``in_port`` for live input, None in file mode).
        Songs follow each other in ``indices`` order; show control (OSC, Program Change, Song Select) may jump to
        any song of the setlist, at the next bar line."""
        setlist, opts = self.setlist, self.options
        warnings = setlist_warnings(setlist)  # songs that can never sound; any song can be selected live
        for w in warnings:
            self.log(f"warning: {w}")
        # The show's clock: the jack-native port's frame clock (its stamps and due times are on it), else monotonic.
        self.now_ns = getattr(out_port, "now_ns", time.monotonic_ns)
        self.lookahead_ns = engine_lookahead_ns(int(setlist.lookahead_ms * 1e6), out_port)
        every = list(range(len(setlist.songs)))
        models = load_song_models(setlist, every, opts.provider)  # any song can be selected live
        self.copies, copy_warning = load_copies(setlist)
        for w in probe_warnings(setlist, models) + ([copy_warning] if copy_warning else []):  # before the first note
            warnings.append(w)
            self.log(f"warning: {w}")
        # Takes are the performer only in file mode; with a live input port the musician is the performer.
        takes = {i: song_take(setlist, setlist.songs[i], opts.input_path) if in_port is None else None for i in every}
        for i in indices:
            if in_port is None and takes[i] is None:
                raise ValueError(f"{setlist.path}: song {i + 1} ({setlist.songs[i].title!r}) has no take and no "
                                 f"--input was given; in file mode every song needs a performer take")
        report = ShowReport(backend=backend, warnings=warnings)
        if opts.record_dir is not None:
            # A show killed last time left journals: make them MIDI files before this show writes its own.
            report.recovered = recover(opts.record_dir, on_error=lambda p, why: self.log(f"recover {p}: {why}"))
            for p in report.recovered:
                self.log(f"recovered an interrupted recording: {p}")
        recorder = Recorder(folder=opts.record_dir, on_error=lambda m: self.log(f"recorder: {m}"))
        worker = TimedWorker(log=self.log).start()
        self.planner = ThreadPlanner()  # answers planned off the engine thread's steps (``liveperf.modes.planner``)
        feedback = OscFeedback(setlist.osc.feedback, setlist.osc.feedback_protocol) if setlist.osc.enabled else None
        scheduler = Scheduler(out_port, late_tolerance_ns=int(setlist.late_tolerance_ms * 1e6), clock_ns=self.now_ns,
                              on_sent=lambda ts, data: self._on_sent(ts, data, recorder, worker, feedback),
                              realtime_priority=sending_priority(backend) if opts.realtime else None)
        inbox = self.inbox
        stage = self._stage = StageFeed(opts.stage_view and setlist.stage_view, setlist, inbox, log=self.log,
                                        stamp=self._show_ts)
        self.log = stage.log  # while the view draws, the show's lines go to it (and are printed after the show)
        ctl = self.controller = ShowController(
            setlist, indices, worker=worker, feedback=feedback, on_panic=lambda ts: scheduler.panic(),
            on_stop=self._stop_command, log=self.log,
            on_learned=lambda mappings: self._store_learned(mappings),
            counts=lambda: self._counts(scheduler),
            on_beat=lambda bar, beat: stage.beat(ctl, bar, beat, scheduler, self.osc))
        self._start_osc(report)
        if in_port is not None:
            in_port.start(lambda ts, data: inbox.put((ts, bytes(data))))
        # Start-up garbage is frozen so a full collection mid-show has almost nothing to walk.
        gc.collect()
        gc.freeze()
        scheduler.start()
        scheduler.wait_idle(1.0)  # the thread has started and chosen its scheduling
        note = ""
        if opts.realtime and backend in ("jack-rtmidi", "jack-native") and sending_priority(backend) is None:
            note = " (the JACK server runs without real-time priority: a FIFO sending thread would preempt it)"
        self.log(f"scheduler: {scheduler.scheduling}{note}")
        stage.start()
        spb = models[indices[0]].steps_per_beat
        follow = setlist.clock == "midi" and in_port is not None
        # Following MIDI clock or Link, one clock serves the whole show: a song change keeps the band's grid.
        shared_clock = (MidiClockFollower(spb, setlist.songs[indices[0]].tempo_bpm, on_dropout=setlist.clock_dropout)
                        if follow else None)
        link = None
        if setlist.clock == "link":
            link, shared_clock = start_link(setlist, setlist.songs[indices[0]], spb, self.now_ns, self.log)
            report.link = {} if link is not None else None
        # One MIDI clock out for the whole show: a song change at a bar line or a panic keeps it running.
        clock_out = self.clock_out = ClockOut() if setlist.send_clock and shared_clock is None else None
        try:
            index: int | None = indices[0]
            start_ns, first_step = self.now_ns() + int(opts.lead_in_ms * 1e6), 0
            while index is not None and not self.stop_event.is_set():
                if link is not None:  # the song starts on the session's bar line
                    first_step = begin_song(link, shared_clock, setlist.songs[index], spb, start_ns)
                    start_ns = shared_clock.ns_at_step(first_step)
                rep, end = self._play_song(index, models[index], takes[index], scheduler, recorder, in_port,
                                           out_port, ctl, shared_clock, start_ns, first_step)
                report.songs.append(rep)
                if ctl.pending_song is not None:  # a song change at this bar line
                    index, (bar_ns, first_step) = ctl.pending_song, end
                    start_ns = max(bar_ns, self.now_ns() + self.lookahead_ns + 5_000_000)
                    if shared_clock is None:
                        first_step = 0
                else:
                    index = ctl.next_index(index)
                    start_ns, first_step = self.now_ns() + int(opts.lead_in_ms * 1e6), end[1]
                    if shared_clock is None:
                        first_step = 0
        finally:
            ctl.flush_log()
            if clock_out is not None and clock_out.running:  # the show ended mid song change (a signal): Stop
                clock_out.stop(scheduler, self.now_ns())
                scheduler.wait_idle(1.0)
            stage.close()
            if link is not None:
                report.link = dataclasses.asdict(shared_clock.stats) | {"peers": shared_clock.peers}
                link.close()
            self.log = stage._print
            for line in stage.lines:  # what the view showed only briefly, for the record
                self.log(line)
            scheduler.close()
            if in_port is not None:
                in_port.close()
            if self.osc is not None:
                self.osc.close()
            ctl.on_transport("stopped", self.now_ns())  # unless the band's Stop said so already
            worker.close()
            self.planner.close()
            if feedback is not None:
                feedback.close()
            recorder.close()  # after the scheduler: its last note-offs belong in the last song
        if self.stop_event.is_set():
            report.stopped = self.stopped_by or "signal"
        counters = getattr(out_port, "counters", None)
        report.port = counters() if counters is not None else {}
        self._finish_report(report, scheduler, recorder, ctl, feedback, in_port)
        return report

    def _counts(self, scheduler: Scheduler) -> tuple[int, int, int, int]:
        """Engine thread, once a bar: (late-dropped, input dropped, errors, copies guarded) for the feedback. The
        scheduler's counters are plain ints it alone writes; a read from here may be one message old, never torn."""
        engine = self.controller.engine if self.controller is not None else None
        modes = engine.modes.values() if engine is not None else ()
        ignored = engine.input_stats.ignored if engine is not None else 0
        errors = scheduler.stats.send_errors + sum(m.stats.model_errors for m in modes)
        copies = sum(m.stats.copies_redrawn + m.stats.copies_cut for m in modes)
        return scheduler.stats.late_dropped, ignored, errors, copies

    def _stop_command(self) -> None:
        self.stopped_by = "stop command"
        self.stop_event.set()

    def _no_such_song(self, value) -> str | None:
        """OSC thread: why ``/liveperf/song/select value`` selects no song (the sender gets it as an error reply), or
        None. The setlist is immutable, so reading it here is safe."""
        try:
            self.setlist.find(str(value))
        except SetlistError as exc:
            return str(exc)
        return None

    def _start_osc(self, report: ShowReport) -> None:
        osc = self.setlist.osc
        try:
            if osc.enabled and (osc.udp_port is not None or osc.tcp_port is not None):
                server = OscServer(lambda ts, cmd: self.inbox.put((self._show_ts(ts), cmd)), host=osc.host,
                                   udp_port=osc.udp_port, tcp_port=osc.tcp_port, allow=osc.allow + ("127.0.0.1", "::1"),
                                   rate_limit_per_s=osc.rate_limit_per_s,  # this machine may always control it
                                   song_check=self._no_such_song)
                self.osc = server.start()
                report.osc_ports = {"udp": server.udp_port, "tcp": server.tcp_port}
                self.log(f"OSC: listening on {osc.host} udp {server.udp_port} tcp {server.tcp_port}"
                         + (f"; feedback to {', '.join(f'{h}:{p}' for h, p in osc.feedback)}" if osc.feedback else ""))
        except OSError as exc:  # the show goes on without OSC control; `liveperf check` makes this a NO-GO
            report.osc_error = f"OSC server could not listen on {osc.host} udp {osc.udp_port} tcp {osc.tcp_port}: {exc}"
            self.log(f"warning: {report.osc_error}; playing without OSC control")
        finally:
            self.osc_ready.set()

    def _show_ts(self, ts_ns: int) -> int:
        """An OSC or stage-key stamp (``time.monotonic_ns``) on the show's clock: as it is, or now on the frame
        clock (the command is handled a few microseconds after it was stamped)."""
        return ts_ns if self.now_ns is time.monotonic_ns else self.now_ns()

    @staticmethod
    def _on_sent(ts: int, data: bytes, recorder: Recorder, worker: TimedWorker, feedback) -> None:
        """Scheduler thread: every message actually sent goes to the recording and, as note feedback, to OSC, at
        ``ts`` (a timed port: the due time it was handed over for, up to its lead ahead)."""
        if data[0] >= 0xF0:
            return
        recorder.add("partner", ts, data)
        if feedback is not None and len(data) == 3:
            if is_note_on(data):
                worker.at(ts, feedback.note_on, data[1], data[2])
            elif is_note_off(data):
                worker.at(ts, feedback.note_off, data[1])

    def _store_learned(self, mappings: list[dict]) -> None:
        """Worker thread: MIDI learn made a mapping; keep it in the setlist for the next show."""
        store_cc_mappings(self.setlist.path, mappings)
        self.log(f"MIDI learn: saved {len(mappings)} mapping(s) to {self.setlist.path}")

    def _finish_report(self, report: ShowReport, scheduler: Scheduler, recorder: Recorder, ctl: ShowController,
                       feedback, in_port) -> None:
        opts = self.options
        report.sent = scheduler.stats.sent
        report.late_dropped = scheduler.stats.late_dropped
        report.send_errors = scheduler.stats.send_errors
        report.scheduling = scheduler.scheduling
        st = scheduler.stats
        add_timing(report, st.errors_ns, st.dues_ns, st.reactions, st.late_dues_ns)
        report.control = dataclasses.asdict(ctl.stats)
        report.unheld_offs = scheduler.stats.unheld_offs
        report.cancelled = scheduler.stats.cancelled
        report.port_dropped = scheduler.stats.port_dropped
        report.reflex_sent = scheduler.stats.reflex_sent
        report.wire_offs = scheduler.stats.wire_offs
        if self.clock_out is not None:
            c = self.clock_out
            expected = sum(round(r.steps * TICKS_PER_BEAT / r.steps_per_beat) for r in report.songs)
            report.clock_out = {"starts": c.starts, "stops": c.stops, "ticks_scheduled": c.ticks,
                                "ticks_sent": scheduler.stats.clock_ticks, "ticks_expected": expected}
        report.input = {k: getattr(in_port, k) for k in ("received", "malformed", "salvaged", "filtered", "dropped")
                        if in_port is not None and hasattr(in_port, k)}
        report.input["ignored"] = sum(s.input_ignored for s in report.songs)
        report.input["all_notes_off"] = sum(s.all_notes_off for s in report.songs)
        report.input["unrecordable"] = recorder.unrecordable
        if self.osc is not None:
            report.osc_in = dataclasses.asdict(self.osc.stats)
        if feedback is not None:
            report.osc_feedback = {"sent": feedback.sent, "dropped": feedback.dropped, "errors": feedback.errors}
        report.record_files = list(recorder.stats.paths)
        report.record_errors = recorder.stats.write_errors
        report.record_fallback_files = list(recorder.stats.fallback_paths)
        if not recorder.healthy:
            self.log(f"recorder: some of the recording could not be written ({recorder.stats.last_error})")
        if opts.record_path is not None:
            try:
                report.record_path = recorder.save(opts.record_path)
            except OSError as exc:  # a full disk must not turn a played show into a failed one
                self.log(f"recorder: could not write {opts.record_path}: {exc}")

    def _play_song(self, index: int, models: SongModels, take: Take | None, scheduler: Scheduler,
                   recorder: Recorder, in_port, out_port, ctl: ShowController, shared_clock, start_ns: int,
                   first_step: int) -> tuple[SongReport, tuple[int, int]]:
        """One song from ``start_ns`` (internal clock) or from step ``first_step`` of the shared MIDI clock.
        Returns its report and (ns, step) where it ended: the bar line of a song change, else when it stopped."""
        opts, setlist, inbox = self.options, self.setlist, self.inbox
        song = setlist.songs[index]
        spb = models.steps_per_beat
        follow = shared_clock is not None
        clock = shared_clock if follow else InternalClock(song.tempo_bpm, spb, start_ns)
        clock_name = "internal" if not follow else "Link" if isinstance(clock, LinkClock) else "MIDI clock"
        sink = EchoGuardSink(scheduler, int(setlist.echo_guard_ms * 1e6))
        seed = song.seed if opts.seed is None else opts.seed
        source = QueueInput(inbox, sources=1, now_ns=self.now_ns, heard_ns=getattr(out_port, "heard_through_ns", None))
        reflex = getattr(out_port, "reflex", None)  # the jack-native port answers harmonize's note-ons itself
        reflex = None if song.partners else reflex
        modes, initial = build_song(song, models, clock, sink, seed, now_fn=source.now_ns, reflex=reflex,
                                    copies=self.copies, max_copy_bars=setlist.max_copy_bars, planner=self.planner)
        bar = song.steps_per_bar(spb)
        engine = Engine(modes, clock=clock, sink=sink, initial=initial, trigger_cc=song.trigger_cc,
                        tap_cc=song.tap_cc, mode_cc=song.mode_cc, echo_guard=sink,
                        send_clock=setlist.send_clock and not follow, steps_per_bar=bar, reflex=reflex,
                        clock_out=self.clock_out, keys=key_follower(song, bar, spb), pitch_range=song.pitch_range,
                        key_every_steps=spb if song.key_change_at == "beat" else bar, key_escape_steps=spb)
        rep = SongReport(song.title, song.tempo_bpm, setlist_tempo_bpm=song.tempo_bpm, start_ns=start_ns,
                         step_ns=clock.step_ns, steps_per_beat=spb, clock=clock_name)
        for partner in (song,) + song.partners:
            send_patch(scheduler, partner, start_ns)
        ctl.bind(index, engine, clock, start_ns, bar)
        recorder.begin_song(song.title, song.tempo_bpm, start_ns, song.meter[0] * 4 / song.meter[1])
        clock_note = (f"following Link at {clock.tempo_bpm:.1f} BPM" if clock_name == "Link" else
                      "following MIDI clock on the input" if follow else
                      "internal clock (no live input to follow MIDI clock from)" if setlist.clock == "midi" else
                      "internal clock" + (", sending MIDI clock" if setlist.send_clock else ""))
        self.log(f"[{index + 1}. {song.title}] {song.tempo_bpm:g} BPM, {key_text(song)}, {partners_text(song)}, {clock_note}; "
                 f"models {', '.join(p.name for p in models.paths)} ({models.melody.provider_note})")
        # One input source either way: the take player ends with END_OF_INPUT; a live port never ends by itself.
        player = TakePlayer(take_events(take, clock), inbox, self.now_ns) if take is not None else None
        echo = take is not None and not isinstance(out_port, NullPort)
        deadline_ns = None if opts.duration_s is None else start_ns + int(opts.duration_s * 1e9)
        end = [0, first_step]  # (ns, step) where the song ended

        def on_input(ts: int, data: bytes) -> bool:
            recorder.add("performer", ts, data)
            if echo:  # file mode on a real port: the synth plays the performer's part too
                scheduler.schedule(ts, data)
            return ctl.on_midi(ts, data)

        keys_recorded = [0]

        def on_step(step: int, due_ns: int) -> None:
            ctl.on_step(step, due_ns)  # asks the key follower at a bar line (``Engine.key_at``)
            while keys_recorded[0] < len(engine.key_changes):
                at_step, name = engine.key_changes[keys_recorded[0]]
                recorder.key_change(clock.ns_at_step(at_step), name)
                keys_recorded[0] += 1

        def should_stop() -> bool:
            return self.stop_event.is_set() or (deadline_ns is not None and self.now_ns() >= deadline_ns)

        def engine_thread() -> None:
            try:
                end[1] = run_loop(engine, clock, source, lookahead_ns=self.lookahead_ns,
                                  first_step=first_step, should_stop=should_stop, on_input=on_input,
                                  stop_when_done=take is not None, stop_at_bar=lambda: ctl.pending_song is not None,
                                  on_control=ctl.on_command, on_step=on_step, on_transport=ctl.on_transport,
                                  on_step_done=self._stage.step_done if self._stage.view.enabled else None)
            except Exception as exc:  # one song's failure must not take the show down: silence it, report it
                rep.error = f"{type(exc).__name__}: {exc}"
            finally:
                now = self.now_ns()
                # A song change ends the old song's notes exactly at the bar line (computed ahead, not yet due).
                at_bar = ctl.pending_song is not None and clock.running and not rep.error
                end[0] = max(now, clock.ns_at_step(end[1])) if at_bar else now
                engine.stop(end[0], keep_clock=at_bar)  # a song change keeps the MIDI clock out running

        if player is not None:
            player.start()
        t = threading.Thread(target=engine_thread, name="liveperf-engine", daemon=True)
        t.start()
        while t.is_alive():
            t.join(0.1)  # short joins keep the main thread responsive to signals
        if player is not None:
            player.stop()
        drain_inbox(inbox)
        if ctl.pending_song is None:
            scheduler.wait_idle(2.0)
        rep.steps = end[1] - first_step
        add_engine_figures(rep, engine, end[1])
        played = ctl.played_tempo_bpm()  # following MIDI clock: the band's tempo, not the setlist's
        rep.tempo_bpm = played if played is not None else rep.tempo_bpm
        rep.end_ns = end[0]
        rep.next_song = ctl.pending_song
        if follow:
            rep.clock_stats = dataclasses.asdict(clock.stats) | {"tempo_bpm": round(clock.tempo_bpm, 2)}
            self.log(f"[{song.title}] {clock_name}: {rep.clock_stats}")
        if rep.error:
            self.log(f"[{song.title}] stopped by an error: {rep.error}")
        return rep, (end[0], end[1])
