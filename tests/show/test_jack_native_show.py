"""`liveperf play --backend jack-native` through a real JACK server: a duet and a harmonize song with a live
performer, stopped by SIGTERM while notes sound. Checked on the wire by an outside client: every note-on has its
note-off, nothing is stuck, the process exits 130, and the report's send - due errors are the JACK thread's own
(frame-exact; only a loose bound here, the figures are in the README's benchmark)."""

from __future__ import annotations

import signal
import time

import pytest

from liveperf.models.onnx_model import shipped_models_dir
import jack_server as jack
from bench.soak_jack import BAND as BAND_PARTNERS
from wire_monitor import LivePlay, repair_offs, wait_for

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="no shipped model")]

SETLIST = """
[show]
stage_view = false
[show.osc]
enabled = false
[[song]]
title = "Native {mode}"
tempo_bpm = 160
key = "D dorian"
mode = "{mode}"
pitch_range = [45, 84]
seed = 4
channel = 3
"""


@pytest.mark.parametrize("mode", ["duet", "harmonize"])
def test_a_native_show_plays_and_a_signal_leaves_the_wire_silent(jack_server_sync, tmp_path, mode):
    # Synchronous (``conftest.jack_server_sync``): an asynchronous server loses a late client's cycle of MIDI.
    play = LivePlay(tmp_path, SETLIST.format(mode=mode), f"lpn{mode[:3]}", duration_s=60, backend="jack-native")
    try:
        play.wait_started()
        for _ in range(3):
            for p in (62, 65, 69, 72):
                play.send((0x90, p, 90))
                time.sleep(0.12)
                play.send((0x80, p, 0))
        wait_for(lambda: play.monitor.check().note_ons >= 3, 15, "the partner")
        play.send((0x90, 67, 90))  # held while the signal comes
        time.sleep(0.3)
        play.proc.send_signal(signal.SIGTERM)
        code, out, report = play.finish(timeout_s=20)
    finally:
        play.kill()
    summary = play.monitor.check()
    assert code == 130, out
    assert summary.stuck == [] and summary.unmatched_offs <= repair_offs(report), (summary.line(), report["port"])
    assert report["backend"] == "jack-native" and report["stopped"] == "signal"
    # Revoked hand-overs never reach the wire; the port's own note-offs at a release (reflex) are not the scheduler's.
    extra = repair_offs(report)  # what the port put on the wire itself
    assert summary.note_ons >= 3 and report["sent"] + report["port"]["reflex_released"] + extra >= summary.messages
    if mode == "harmonize":  # notes lifted and the next pressed at once: the port answers them in their cycle
        assert report["reflex_sent"] >= 3 and report["songs"][0]["reflex_answers"] >= 3, report
    errors = sorted(report["errors_ns"])
    # Loose bounds on the median. Grid notes are handed over ahead and go out on their frame (~10 µs here); a
    # harmony, and the duet's answer to a note it listened for (liveperf.modes.duet), is due the moment it is
    # computed, and JACK can only send it in the next cycle (256 frames: 5.3 ms). This performer's notes are mostly
    # answered that way by the duet too (a fresh-clone run: median 2.47 ms), so both modes get the reaction's bound;
    # the duet's grid notes still go out on their frame.
    assert errors and errors[len(errors) // 2] < 5_400_000 + 2_000_000, errors[:20]
    if mode == "duet":
        assert errors[0] < 200_000, errors[:20]


def test_a_native_show_says_when_the_server_is_lost_and_ends_cleanly(jack_server_sync, tmp_path, monkeypatch):
    """When the server dies mid-show and does not come back, liveperf says so at once, plays on without MIDI while it
    retries, and ends cleanly on a signal (a server that comes back: tests/show/test_faults_reconnect.py)."""
    server = jack.start_jack_server(sync=True)  # its own server, killed here; the module's stays up for the other tests
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
    play = LivePlay(tmp_path, SETLIST.format(mode="harmonize"), "lpnlost", duration_s=60, backend="jack-native")
    try:
        play.wait_started()
        for p in (62, 65, 69, 72):
            play.send((0x90, p, 90))
            time.sleep(0.12)
            play.send((0x80, p, 0))
        wait_for(lambda: play.monitor.check().note_ons >= 1, 15, "the partner")
        server.process.kill()
        server.process.wait(5)
        wait_for(lambda: any("JACK server lost" in line for line in play.lines), 5, "liveperf to say the server is lost")
        time.sleep(1.0)  # the show plays on, without MIDI
        assert play.proc.poll() is None, "liveperf died with the server"
        play.proc.send_signal(signal.SIGTERM)
        code, out, report = play.finish(timeout_s=20)
    finally:
        play.kill()  # our own rtmidi clients are zombies: deleting them is safe while no new client opened
        server.stop()
    assert code == 130, out
    assert "Traceback" not in out and "JACK server lost" in out and "JACK server back" not in out, out
    ports = report["ports"]
    assert (ports["outages"], ports["reconnects"], ports["errors"]) == (1, 0, 0), ports
    assert report["stopped"] == "signal"


BAND = """
[show]
stage_view = false
[show.osc]
enabled = false
[[song]]
title = "Native band"
tempo_bpm = 160
key = "D dorian"
mode = "duet"
voice = "bass"
pitch_range = [36, 55]
seed = 4
channel = 2
""" + BAND_PARTNERS  # a comp on channel 3, a lead on 4: the band soak's (bench.soak_jack)


def test_three_partners_play_on_their_own_channels_and_a_signal_leaves_every_one_silent(jack_server_sync, tmp_path):
    play = LivePlay(tmp_path, BAND, "lpnband", duration_s=60, backend="jack-native")
    try:
        play.wait_started()

        def channels():
            return {data[0] & 0x0F for _, data in play.monitor.snapshot() if data[0] & 0xF0 == 0x90 and data[2]}

        deadline = time.monotonic() + 30
        while channels() != {1, 2, 3} and time.monotonic() < deadline:
            for p in (62, 65, 69, 72, 69, 65):  # a phrase, then a rest the lead answers in
                play.send((0x90, p, 90))
                time.sleep(0.15)
                play.send((0x80, p, 0))
            time.sleep(1.2)
        assert channels() == {1, 2, 3}, play.monitor.check().line()  # bass duet, comp, lead: all on the wire
        play.send((0x90, 67, 90))  # held while the signal comes: the duet and the comp sound with it
        time.sleep(0.4)
        play.proc.send_signal(signal.SIGTERM)
        code, out, report = play.finish(timeout_s=20)
    finally:
        play.kill()
    summary = play.monitor.check()
    # in full (pytest cuts the assertion's copy): a failure on 2026-12-07 (28 unmatched offs, 27 repairs, 48 of 60
    # messages late, 29 steps) left too little to say why
    print(summary.line(), report and report["port"], report and report["songs"], out, sep="\n")
    assert code == 130, out
    assert summary.stuck == [] and summary.unmatched_offs <= repair_offs(report), (summary.line(), report["port"])
    assert report["songs"][0]["comp_chords"] >= 2, report["songs"][0]
