"""Faults mid-show: SIGINT, SIGTERM and SIGHUP reach `liveperf play` while its partner note is sounding.

Three shows run side by side on one JACK server (one per signal, so the three cost the time of one), each with
its own performer and wire monitor. The performer holds a note, the partner (harmonize mode) answers it, and while
both notes sound the signal arrives. On the wire every note-on must have its note-off; the process must exit 130
(stopped by a signal) and leave its per-song recording as a readable MIDI file with the notes played.
"""

from __future__ import annotations

import signal
import time

import mido
import pytest

from liveperf.models.onnx_model import shipped_models_dir
from wire_monitor import LivePlay, wait_for

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="no shipped model")]

SETLIST = """
[show]
stage_view = false
[show.osc]
enabled = false
[[song]]
title = "Signals"
tempo_bpm = 150
key = "D dorian"
mode = "harmonize"
pitch_range = [50, 84]
seed = 4
channel = 3
"""
SIGNALS = {"int": signal.SIGINT, "term": signal.SIGTERM, "hup": signal.SIGHUP}


def test_signals_mid_note_silence_the_wire_and_keep_the_recording(jack_server, tmp_path):
    plays: dict[str, LivePlay] = {}
    try:
        for name in SIGNALS:
            # One at a time: three players loading their models at once on 2 cores stalled the JACK dummy server
            # past jack_lsp's 10 s in CI (and once past the 15 s wait below).
            plays[name] = play = LivePlay(tmp_path, SETLIST, f"lps{name}", duration_s=60)
            # A short phrase first: its answers show the song is running (models load after the ports open).
            for p in (62, 65, 69):
                play.send((0x90, p, 90))
                time.sleep(0.1)
                play.send((0x80, p, 0))
            wait_for(lambda: play.monitor.check().note_ons >= 1, 15, f"the partner ({name})")
        for name, play in plays.items():
            # Held: the partner's harmony to it sounds when the signal comes. On a loaded CI machine a harmony was
            # once not heard within 5 s (dropped as late while another player shut down): strike the key again.
            for attempt in range(3):
                play.send((0x90, 67, 90))
                try:
                    wait_for(lambda: play.monitor.check().stuck, 5, f"a sounding partner note ({name})")
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
                    play.send((0x80, 67, 0))
            play.proc.send_signal(SIGNALS[name])
        results = {name: play.finish(timeout_s=20) for name, play in plays.items()}
    finally:
        for play in plays.values():
            play.kill()
    for name, (code, out, report) in results.items():
        summary = plays[name].monitor.check()
        assert code == 130, (name, out)
        # Invariants first; how many answers went out depends on the machine (a late one is dropped and counted),
        # but the held note's harmony was sounding when the signal came (awaited above).
        assert summary.note_ons >= 1 and summary.stuck == [] and summary.unmatched_offs == 0, (name, summary.line())
        assert report["stopped"] == "signal"
        files = sorted(plays[name].record_dir.glob("*.mid"))
        assert len(files) == 1, (name, list(plays[name].record_dir.iterdir()))
        notes = [m for track in mido.MidiFile(files[0]).tracks for m in track if m.type == "note_on" and m.velocity]
        assert len(notes) >= 4 + 1, (name, notes)  # the performer's four notes and the partner's answer(s)
        assert not list(plays[name].record_dir.glob("*.journal*")), "the journal is finished into the .mid"
