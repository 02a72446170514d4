"""The external MIDI clock drops out mid-show and comes back, checked on the wire by an outside JACK client.

A JACK client plays the band's clock into liveperf's input (Start, then 24 ticks a beat at 120 BPM from a Python
thread: jittery by a millisecond or so, which the follower's fit absorbs). After a few beats the ticks stop: with
``clock_dropout = "stop"`` liveperf must silence the partner within the 250 ms dropout window and stay silent; when
the ticks come back it resumes. Then Stop and SIGTERM. On the wire: nothing sounds during the dropout, nothing is left
sounding at the end, no note-off without its note-on; the report counts the dropout and the resume.
"""

from __future__ import annotations

import threading
import time

import pytest

from liveperf.models.onnx_model import shipped_models_dir
from wire_monitor import LivePlay, repair_offs, wait_for

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="no shipped model")]

SETLIST = """\
[show]
stage_view = false
clock = "midi"
clock_dropout = "stop"
[show.osc]
enabled = false

[[song]]
title = "Band clock"
tempo_bpm = 120
key = "A minor"
mode = "duet"
channel = 2
pitch_range = [36, 72]
max_note_beats = 1
seed = 2
"""
TICK_S = 60 / 120 / 24


class Clock:
    """Sends F8 every ``TICK_S`` on ``send`` while ``running``; a thread of its own."""

    def __init__(self, send) -> None:
        self.send = send
        self.running = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self.done.is_set():
            if not self.running.is_set():
                self.running.wait(0.01)
                next_t = time.monotonic()
                continue
            next_t += TICK_S
            while (left := next_t - time.monotonic()) > 0:
                time.sleep(min(left, 0.002))
            self.send([0xF8])


def sounding(play: LivePlay) -> list:
    return play.monitor.check().stuck  # "stuck" at this moment = still sounding


def test_clock_dropout_silences_the_partner_and_the_clock_brings_it_back(jack_server, tmp_path):
    play = LivePlay(tmp_path, SETLIST, "lpk", duration_s=60)
    lock = threading.Lock()

    def send(data) -> None:
        with lock:
            play.send(data)

    clock = Clock(send)
    try:
        time.sleep(1.5)  # models load after the ports open
        send([0xFA])
        clock.running.set()
        wait_for(lambda: play.monitor.check().note_ons >= 3, 15, "the partner playing to the clock")
        clock.running.clear()  # the cable is pulled
        dropped_at = time.monotonic_ns()
        time.sleep(0.8)  # 250 ms to notice, then silence
        assert sounding(play) == [], "a note still sounds 0.8 s into the dropout"
        quiet_from = time.monotonic_ns()
        time.sleep(0.7)
        assert play.monitor.note_ons_since(quiet_from) == 0, "the partner played without a clock"
        clock.running.set()  # the clock comes back: resume
        resumed_at = time.monotonic_ns()
        wait_for(lambda: play.monitor.note_ons_since(resumed_at) >= 2, 15, "the partner after the clock came back")
        clock.running.clear()
        send([0xFC])
        time.sleep(0.5)
        play.proc.terminate()
        code, out, report = play.finish(30)
    finally:
        clock.done.set()
        clock.running.set()
        play.kill()
    wire = play.monitor.check()
    assert code == 130, out
    assert wire.stuck == [] and wire.unmatched_offs <= repair_offs(report), (wire.line(), report["port"])
    stats = report["songs"][0]["clock_stats"]
    assert stats["dropouts"] >= 1 and stats["resumes"] >= 1 and stats["starts"] == 1, stats
    assert dropped_at < resumed_at
