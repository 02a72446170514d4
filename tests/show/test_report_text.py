"""What the CLI says around a show, word for word: the end-of-show send line (rtmidi and jack-native) and the
notice when ``play`` finds no MIDI system and goes on in file mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from liveperf.cli import file_mode_notice, main
from liveperf.io.midi_ports import ALSA_SEQ_DEVICE
from liveperf.models.onnx_model import shipped_models_dir
from liveperf.show.report import ShowReport, add_timing, send_summary

TIMING = {"p50": 12.4, "p99": 80.6, "max": 140.2}


def test_rtmidi_send_line_times_every_message_sent():
    r = ShowReport("jack-rtmidi", sent=32, late_dropped=1, timing_us=TIMING | {"n": 32})
    assert send_summary(r) == ("32 messages sent, 1 dropped as late, 0 send errors; timing error (send - due) "
                               "p50 12 µs, p99 81 µs, max 140 µs over 32 messages")


def test_nothing_sent_is_said_once():
    assert send_summary(ShowReport("file", late_dropped=2, send_errors=1)) == (
        "no messages sent, 2 dropped as late, 1 send errors")


def test_jack_native_reflex_harmonies_are_counted_as_sent_but_not_timed():
    r = ShowReport("jack-native", sent=32, reflex_sent=12, timing_us=TIMING | {"n": 20})
    assert send_summary(r) == ("32 messages sent, 0 dropped as late, 0 send errors; timing error (send - due on "
                               "JACK's frame clock) p50 12 µs, p99 81 µs, max 140 µs over 20 of them (the other 12 "
                               "are reflex harmonies, with no due time)")


def test_jack_native_with_only_reflex_harmonies_says_why_there_is_no_timing():
    # Was "32 messages sent, 0 dropped as late, 0 send errors; no messages sent".
    r = ShowReport("jack-native", sent=32, reflex_sent=32)
    assert send_summary(r) == ("32 messages sent, 0 dropped as late, 0 send errors; no timing figures: every one "
                               "was a harmony the port sent in the note-on's own JACK cycle (reflex), which has no "
                               "due time")


def test_file_mode_notice_says_what_plays_and_how_to_choose_another_input():
    rec = Path("recordings/demo-x")
    assert file_mode_notice(None, rec) == (
        "liveperf: playing in file mode instead: each song's performer take (`take` in the setlist; the demo "
        "setlists use the shipped takes) plays the performer's part in real time, the partner answers, and both "
        "are recorded to recordings/demo-x/. To play your own MIDI file as the performer, add --input FILE.mid. "
        "To play live, start a MIDI system (see above) and run this again.")
    assert file_mode_notice(Path("mine.mid"), rec) == (
        "liveperf: playing in file mode instead: mine.mid plays the performer's part of every song in real time, "
        "the partner answers, and both are recorded to recordings/demo-x/. To play live, start a MIDI system (see "
        "above) and run this again.")


@pytest.mark.skipif(not (shipped_models_dir() / "melody_dnn.onnx").exists(), reason="shipped model missing")
@pytest.mark.skipif(sys.platform == "darwin" or os.path.exists(ALSA_SEQ_DEVICE),
                    reason="a MIDI system may be available here")
def test_play_without_a_midi_system_says_it_plays_the_takes_in_file_mode(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "liveperf-test-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    code = main(["play", "setlists/demo.toml", "--song", "1", "--duration", "0.2", "--no-stage-view",
                 "--record-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("liveperf: No MIDI system found: JACK server 'liveperf-test-no-such-server' not "
                               "running") and lines[0].endswith(".")
    assert "--input FILE.mid for file mode" not in out  # the old hint read as if file mode needed --input
    assert lines[1] == file_mode_notice(None, tmp_path)
    assert any(tmp_path.glob("*.mid"))


def test_the_send_line_gives_reactions_apart_from_notes_scheduled_ahead():
    r = ShowReport("jack-native", sent=5)
    add_timing(r, [4_000, 4_000, 6_000, 1_500_000, 2_500_000], [0] * 5, [0, 0, 0, 1, 1], [])
    assert r.timing_us["n"] == 5 and r.reactions == [0, 0, 0, 1, 1]
    assert send_summary(r) == (
        "5 messages sent, 0 dropped as late, 0 send errors; timing error (send - due on JACK's frame clock) p50 6 "
        "µs, p99 2460 µs, max 2500 µs over 5 messages; of these, 3 scheduled ahead: p50 4 µs, p99 6 µs, max 6 µs; "
        "2 reactions (due when computed, so sent a little after): p50 2000 µs, p99 2490 µs, max 2500 µs")


def test_without_reactions_the_send_line_is_not_split():
    r = ShowReport("jack-native", sent=2)
    add_timing(r, [4_000, 6_000], [0, 0], [0, 0], [])
    assert r.timing_ahead_us == {} and "reactions" not in send_summary(r)
