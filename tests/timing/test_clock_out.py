"""MIDI clock out (``liveperf.timing.clock_out``) that a drum machine can follow: Start once, 24 ticks per quarter with
none dropped, no Stop / Start on a panic or a song change at a bar line, Stop after the last tick. Exact event
lists in virtual time for the engine; one real-time show for the song change, the panic and the report."""

from __future__ import annotations

import threading
import time

import pytest

from liveperf.timing.clock import InternalClock
from liveperf.timing.clock_out import ClockOut
from liveperf.engine import Engine
from liveperf.io.osc_protocol import Command
from liveperf.loop import ScriptedInput, run_loop
from liveperf.models.onnx_model import shipped_models_dir
from liveperf.timing.virtual_scheduler import VirtualScheduler
from tests.modes.test_modes import four_modes

START, STOP, TICK = ("raw", 0xFA), ("raw", 0xFC), ("raw", 0xF8)


def play_song(sched, source, clock_out, tempo_bpm, start_ns, steps, keep_clock, panic_at_step=None):
    """One song on a shared virtual scheduler, as the show plays it: its own engine and clock, the show's
    ``ClockOut``; ends after ``steps`` (at its bar line when ``keep_clock``: a song change)."""
    clock = InternalClock(tempo_bpm, 4, start_ns)
    engine = Engine(four_modes(clock, sched, source.now_ns), clock=clock, sink=sched, initial="harmonize",
                    send_clock=True, clock_out=clock_out)
    original = engine.on_step

    def on_step(step):
        if step == panic_at_step:
            engine.stop(source.now_ns(), keep_clock=True)  # as ShowController does on a panic
        original(step)

    engine.on_step = on_step
    last = run_loop(engine, clock, source, lookahead_ns=8_000_000, stop_at_step=steps, stop_when_done=False)
    end = clock.ns_at_step(last)
    engine.stop(end, keep_clock=keep_clock)
    return end


def describe(sent):
    from liveperf.music.notes import describe as d
    return [(t, d(m)) for t, m in sent]


def test_a_song_change_and_a_panic_keep_the_clock_running_and_every_tick_goes_out():
    source = ScriptedInput([])
    sched = VirtualScheduler(now_fn=source.now_ns)
    clock_out = ClockOut()
    # Song 1 at 100 BPM (a tick is 25 ms) for 16 steps, a panic at step 6; a song change at its bar line to
    # song 2 at 150 BPM (a tick is 16.67 ms) for 8 steps; the show ends.
    bar_ns = play_song(sched, source, clock_out, 100, 0, 16, keep_clock=True, panic_at_step=6)
    end_ns = play_song(sched, source, clock_out, 150, bar_ns, 8, keep_clock=False)
    sched.close(end_ns)
    wire = describe(sched.sent)
    assert bar_ns == 16 * 150_000_000 and end_ns == bar_ns + 8 * 100_000_000
    assert [m for _, m in wire if m in (START, STOP)] == [START, STOP]
    assert wire[0] == (0, START) and wire[-1] == (end_ns, STOP)
    ticks = [t for t, m in wire if m == TICK]
    expect = [i * 25_000_000 for i in range(96)] + [bar_ns + i * 100_000_000 // 6 for i in range(48)]
    assert len(ticks) == 96 + 48 and ticks == pytest.approx(expect, abs=1)
    assert clock_out.ticks == 144 and sched.stats.clock_ticks == 144 and (clock_out.starts, clock_out.stops) == (1, 1)


def test_a_late_tick_goes_out_late_instead_of_being_dropped():
    now = [10_000_000]
    sched = VirtualScheduler(late_tolerance_ns=2_000_000, now_fn=lambda: now[0])
    sched.schedule(1_000_000, b"\xf8")  # 9 ms late: a drum machine needs it all the same
    sched.schedule(1_000_000, bytes((0x90, 60, 90)))  # a note-on that late is dropped
    sched.flush()
    assert sched.sent == [(10_000_000, b"\xf8")]
    assert sched.stats.late_dropped == 1 and sched.stats.late_note_offs == 1 and sched.stats.clock_ticks == 1


class TimedOut:
    """An output port that keeps what it was sent, stamped on arrival."""

    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append((time.monotonic_ns(), bytes(data)))


class IdleIn:
    def start(self, on_message):
        pass

    def close(self):
        pass


SETLIST = """
[show]
send_clock = true

[[song]]
title = "One"
tempo_bpm = 240
mode = "harmonize"
key = "C major"

[[song]]
title = "Two"
tempo_bpm = 200
mode = "harmonize"
key = "C major"
"""


@pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="shipped model missing")
def test_a_show_sends_one_start_and_one_stop_across_a_song_change_and_a_panic(tmp_path):
    from liveperf.setlist.schema import load_setlist
    from liveperf.show.run import Show, ShowOptions

    (tmp_path / "set.toml").write_text(SETLIST)
    out = TimedOut()
    show = Show(load_setlist(tmp_path / "set.toml"), ShowOptions(duration_s=1.6), log=lambda *_: None)

    def commands():  # from outside, as OSC would: a panic, then the next song (at song 1's next bar line, 1 s)
        time.sleep(0.3)
        show.inbox.put((time.monotonic_ns(), Command("panic")))
        time.sleep(0.1)
        show.inbox.put((time.monotonic_ns(), Command("song_next")))

    threading.Thread(target=commands, daemon=True).start()
    report = show.run([0, 1], "fake", out, IdleIn())
    system = [d for _, d in out.sent if d[0] >= 0xF0]
    assert [d for d in system if d != b"\xf8"] == [b"\xfa", b"\xfc"]
    assert system[0] == b"\xfa" and system[-1] == b"\xfc"
    assert [s.title for s in report.songs] == ["One", "Two"] and report.songs[0].next_song == 1
    c = report.clock_out
    assert (c["starts"], c["stops"]) == (1, 1)
    assert c["ticks_sent"] == c["ticks_expected"] == c["ticks_scheduled"] == system.count(b"\xf8") > 0
    assert report.control["commands"] == 2
