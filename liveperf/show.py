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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from liveperf.clock import InternalClock
from liveperf.echo_guard import EchoGuardSink
from liveperf.engine import Engine
from liveperf.io.file_input import TakePlayer, take_events
from liveperf.io.jack_probe import jack_server_priority
from liveperf.io.journal import recover
from liveperf.io.midi_file import Take, read_take
from liveperf.io.recorder import Recorder
from liveperf.loop import QueueInput, run_loop
from liveperf.midi_clock import MidiClockFollower
from liveperf.models.onnx_model import LoadedModel
from liveperf.modes.build import SongModels, build_modes
from liveperf.scheduler import Scheduler
from liveperf.setlist import Setlist, Song


@dataclass
class ShowOptions:
    input_path: Path | None = None  # performer take for every song (file mode input)
    record_path: Path | None = None  # the whole show in one MIDI file, written at the end
    record_dir: Path | None = None  # one MIDI file per song, crash-safe (journal flushed at every bar line)
    backend: str = "auto"  # auto | jack | alsa | coremidi | file
    duration_s: float | None = None  # per song
    provider: str = "cpu"
    client_name: str = "liveperf"
    lead_in_ms: float = 250.0
    seed: int | None = None  # overrides every song's seed
    realtime: bool = True  # ask for SCHED_FIFO for the scheduler thread (falls back, and says so)


@dataclass
class SongReport:
    title: str
    tempo_bpm: float
    steps: int = 0
    performer_notes: int = 0
    responses: int = 0
    interrupted: int = 0
    partner_tokens: int = 0
    phrases: int = 0
    harmonies: int = 0
    model_errors: int = 0
    echoes: int = 0
    switches: list = field(default_factory=list)  # (step, mode) of each live mode switch
    clock: str = "internal"
    clock_stats: dict = field(default_factory=dict)  # MIDI clock follower counters, when following
    error: str = ""
    start_ns: int = 0  # monotonic ns of the song's step 0
    step_ns: float = 0.0  # one grid step in ns


@dataclass
class ShowReport:
    backend: str
    songs: list[SongReport] = field(default_factory=list)
    sent: int = 0
    late_dropped: int = 0
    send_errors: int = 0
    timing_us: dict = field(default_factory=dict)  # p50/p99/max of send time minus due time
    record_path: Path | None = None
    record_files: list[Path] = field(default_factory=list)
    record_errors: int = 0
    recovered: list[Path] = field(default_factory=list)
    stopped: str = "end"
    scheduling: str = ""
    errors_ns: list[int] = field(default_factory=list)  # send time minus due time of every message sent


class NullPort:
    """Output for file mode with no MIDI system: sends nowhere (the recorder hears everything)."""

    def send(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def load_song_models(setlist: Setlist, indices: list[int], provider: str) -> dict[int, SongModels]:
    """Load (and validate) every model the selected songs can play; raises ModelLoadError naming the file.
    A file used by several songs is loaded once."""
    cache: dict[Path, LoadedModel] = {}
    return {i: SongModels.load(setlist.songs[i], setlist.path.parent, provider, cache) for i in indices}


def sending_priority(backend: str) -> int | None:
    """SCHED_FIFO priority for the sending thread. Under JACK it must stay below the server: JACK runs every
    client in one cycle, so a sending thread that preempts the server only makes the cycle (and every clock tick
    and note in it) late. Measured here: with a non-real-time JACK server, a FIFO sending thread made the
    jack_midi_clock stream arrive in bursts (partner notes a tick off the grid); without it, on the grid."""
    if backend != "jack":
        return 70
    prio = jack_server_priority()
    if prio is None:
        return 70
    return None if prio == 0 else max(1, min(70, prio - 10))


def shipped_takes_dir() -> Path:
    return Path(str(resources.files("liveperf") / "data" / "takes"))


def song_take(setlist: Setlist, song: Song, options: ShowOptions) -> Take | None:
    """The performer take for ``song``: --input, else the song's take (a shipped take name or a .mid path)."""
    if options.input_path is not None:
        return read_take(options.input_path)
    if not song.take:
        return None
    if song.take.endswith(".mid"):
        return read_take(setlist.path.parent / song.take)
    return read_take(shipped_takes_dir() / f"{song.take}.mid")


class Show:
    def __init__(self, setlist: Setlist, options: ShowOptions, log: Callable[[str], None] = print) -> None:
        self.setlist = setlist
        self.options = options
        self.log = log
        self.stop_event = threading.Event()

    def run(self, indices: list[int], backend: str, out_port, in_port=None) -> ShowReport:
        """Play the songs ``indices`` on ``out_port`` (and ``in_port`` for live input, None in file mode)."""
        setlist, opts = self.setlist, self.options
        models = load_song_models(setlist, indices, opts.provider)
        # Takes are the performer only in file mode; with a live input port the musician is the performer.
        takes = {i: song_take(setlist, setlist.songs[i], opts) if in_port is None else None for i in indices}
        for i in indices:
            if in_port is None and takes[i] is None:
                raise ValueError(f"{setlist.path}: song {i + 1} ({setlist.songs[i].title!r}) has no take and no "
                                 f"--input was given; in file mode every song needs a performer take")
        report = ShowReport(backend=backend)
        if opts.record_dir is not None:
            # A show killed last time left journals: make them MIDI files before this show writes its own.
            report.recovered = recover(opts.record_dir, on_error=lambda p, why: self.log(f"recover {p}: {why}"))
            for p in report.recovered:
                self.log(f"recovered an interrupted recording: {p}")
        recorder = Recorder(folder=opts.record_dir, on_error=lambda m: self.log(f"recorder: {m}"))
        scheduler = Scheduler(out_port, late_tolerance_ns=int(setlist.late_tolerance_ms * 1e6),
                              on_sent=lambda ts, data: data[0] < 0xF0 and recorder.add("partner", ts, data),
                              realtime_priority=sending_priority(backend) if opts.realtime else None)
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        if in_port is not None:
            in_port.start(lambda ts, data: inbox.put((ts, bytes(data))))
        # Start-up garbage is frozen so a full collection mid-show has almost nothing to walk.
        gc.collect()
        gc.freeze()
        scheduler.start()
        scheduler.wait_idle(1.0)  # the thread has started and chosen its scheduling
        note = ""
        if opts.realtime and backend == "jack" and sending_priority("jack") is None:
            note = " (the JACK server runs without real-time priority: a FIFO sending thread would preempt it)"
        self.log(f"scheduler: {scheduler.scheduling}{note}")
        try:
            for i in indices:
                if self.stop_event.is_set():
                    break
                song = setlist.songs[i]
                report.songs.append(self._play_song(song, models[i], takes[i], inbox, scheduler, recorder, in_port,
                                                    out_port))
        finally:
            scheduler.close()
            if in_port is not None:
                in_port.close()
            recorder.close()  # after the scheduler: its last note-offs belong in the last song
        if self.stop_event.is_set():
            report.stopped = "signal"
        report.sent = scheduler.stats.sent
        report.late_dropped = scheduler.stats.late_dropped
        report.send_errors = scheduler.stats.send_errors
        report.scheduling = scheduler.scheduling
        report.errors_ns = list(scheduler.stats.errors_ns)
        errs = np.array(report.errors_ns, dtype=np.int64)
        if errs.size:
            report.timing_us = {"p50": float(np.percentile(errs, 50) / 1e3), "p99": float(np.percentile(errs, 99) / 1e3),
                                "max": float(errs.max() / 1e3), "n": int(errs.size)}
        report.record_files = list(recorder.stats.paths)
        report.record_errors = recorder.stats.write_errors
        if not recorder.healthy:
            self.log(f"recorder: some of the recording could not be written ({recorder.stats.last_error})")
        if opts.record_path is not None:
            try:
                report.record_path = recorder.save(opts.record_path)
            except OSError as exc:  # a full disk must not turn a played show into a failed one
                self.log(f"recorder: could not write {opts.record_path}: {exc}")
        return report

    def _play_song(self, song: Song, models: SongModels, take: Take | None, inbox, scheduler: Scheduler,
                   recorder: Recorder, in_port, out_port) -> SongReport:
        opts, setlist = self.options, self.setlist
        spb = models.steps_per_beat
        start_ns = time.monotonic_ns() + int(opts.lead_in_ms * 1e6)
        follow = setlist.clock == "midi" and in_port is not None
        if follow:
            clock = MidiClockFollower(spb, song.tempo_bpm, on_dropout=setlist.clock_dropout)
        else:
            clock = InternalClock(song.tempo_bpm, spb, start_ns)
        sink = EchoGuardSink(scheduler, int(setlist.echo_guard_ms * 1e6))
        seed = song.seed if opts.seed is None else opts.seed
        source = QueueInput(inbox, sources=1)
        modes = build_modes(song, models, clock, sink, seed, now_fn=source.now_ns)
        engine = Engine(modes, clock=clock, sink=sink, initial=song.mode, trigger_cc=song.trigger_cc,
                        tap_cc=song.tap_cc, mode_cc=song.mode_cc, echo_guard=sink,
                        send_clock=setlist.send_clock and not follow, steps_per_bar=song.steps_per_bar(spb))
        rep = SongReport(song.title, song.tempo_bpm, start_ns=start_ns, step_ns=clock.step_ns,
                         clock="MIDI clock" if follow else "internal")
        recorder.begin_song(song.title, song.tempo_bpm, start_ns, song.meter[0] * 4 / song.meter[1])
        clock_note = ("following MIDI clock on the input" if follow else
                      "internal clock (no live input to follow MIDI clock from)" if setlist.clock == "midi" else
                      "internal clock" + (", sending MIDI clock" if setlist.send_clock else ""))
        self.log(f"[{song.title}] {song.tempo_bpm:g} BPM, {song.key}, mode {song.mode}, {clock_note}; models "
                 f"{', '.join(p.name for p in models.paths)} ({models.melody.provider_note})")
        # One input source either way: the take player ends with END_OF_INPUT; a live port never ends by itself.
        player = TakePlayer(take_events(take, clock), inbox) if take is not None else None
        echo = take is not None and not isinstance(out_port, NullPort)
        deadline_ns = None if opts.duration_s is None else start_ns + int(opts.duration_s * 1e9)

        def on_input(ts: int, data: bytes) -> None:
            recorder.add("performer", ts, data)
            if echo:  # file mode on a real port: the synth plays the performer's part too
                scheduler.schedule(ts, data)

        def should_stop() -> bool:
            return self.stop_event.is_set() or (deadline_ns is not None and time.monotonic_ns() >= deadline_ns)

        def engine_thread() -> None:
            try:
                rep.steps = run_loop(engine, clock, source, lookahead_ns=int(self.setlist.lookahead_ms * 1e6),
                                     should_stop=should_stop, on_input=on_input, stop_when_done=take is not None)
            except Exception as exc:  # one song's failure must not take the show down: silence it, report it
                rep.error = f"{type(exc).__name__}: {exc}"
            finally:
                engine.stop(time.monotonic_ns())

        if player is not None:
            player.start()
        t = threading.Thread(target=engine_thread, name="liveperf-engine", daemon=True)
        t.start()
        while t.is_alive():
            t.join(0.1)  # short joins keep the main thread responsive to signals
        if player is not None:
            player.stop()
        _drain_inbox(inbox)
        scheduler.wait_idle(2.0)
        rep.performer_notes = engine.input_stats.note_ons
        rep.echoes = engine.input_stats.echoes
        rep.switches = list(engine.switches)
        if follow:
            rep.clock_stats = dataclasses.asdict(clock.stats) | {"tempo_bpm": round(clock.tempo_bpm, 2)}
            self.log(f"[{song.title}] MIDI clock: {rep.clock_stats}")
        for mode in modes.values():
            rep.responses += mode.stats.responses
            rep.interrupted += mode.stats.interrupted
            rep.partner_tokens += mode.stats.tokens
            rep.phrases += mode.stats.phrases
            rep.harmonies += mode.stats.harmonies
            rep.model_errors += mode.stats.model_errors
        if rep.error:
            self.log(f"[{song.title}] stopped by an error: {rep.error}")
        return rep


def _drain_inbox(inbox: queue.SimpleQueue) -> None:
    while True:
        try:
            inbox.get_nowait()
        except queue.Empty:
            return
