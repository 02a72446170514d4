"""File mode end to end in real time: a take plays the performer, the shipped model answers, the recording holds both.

Asserts behaviour (answers after each phrase, on the song's grid, in key and range, every note-on paired) with a
wall-time tolerance no tighter than the scheduler's own rules: a note-on later than 2 ms is never sent, so recorded
note-ons sit within 3 ms of the grid; a note-off is always sent, late if the machine stalled, so note-offs only get a
loose bound (never early, at most 50 ms late) that a noisy CI machine cannot break.
"""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from liveperf.cli import main
from liveperf.io.midi_file import write_notes
from liveperf.music.melody import Note
from liveperf.models.onnx_model import shipped_models_dir
from liveperf.music.scales import parse_key

pytestmark = pytest.mark.skipif(not (shipped_models_dir() / "melody_dnn.onnx").exists(),
                                reason="shipped model missing")

TEMPO = 200  # fast, to keep the test short: a 16th is 75 ms
SETLIST = """
[show]
lookahead_ms = 8
late_tolerance_ms = 2

[[song]]
title = "Test tune"
tempo_bpm = {tempo}
key = "G major"
pitch_range = [55, 79]
silence_steps = 4
response_bars = 1
temperature = 0.7
seed = 3
take = "take.mid"
"""


def phrase(start: int) -> list[Note]:
    pitches = [67, 69, 71, 72, 74, 72, 71, 69]
    return [Note(start + 2 * i, start + 2 * i + 2, p, 90) for i, p in enumerate(pitches)]


def notes_by_track(path: Path):
    mid = mido.MidiFile(path)
    tracks = {}
    for track in mid.tracks[1:]:
        name = track[0].name
        tick, out = 0, []
        for msg in track:
            tick += msg.time
            if msg.type in ("note_on", "note_off"):
                out.append((tick, msg.type if msg.velocity else "note_off", msg.note))
        tracks[name] = out
    return mid.ticks_per_beat, tracks


def test_file_mode_records_answers_on_grid_in_key(tmp_path):
    # Two 16-step phrases with 3 bars between them (silence 4 + 1-bar answer + room).
    write_notes(tmp_path / "take.mid", phrase(0) + phrase(64), tempo_bpm=TEMPO)
    (tmp_path / "set.toml").write_text(SETLIST.format(tempo=TEMPO))
    out = tmp_path / "rec.mid"
    assert main(["play", str(tmp_path / "set.toml"), "--backend", "file", "--record", str(out)]) == 0
    tpb, tracks = notes_by_track(out)
    step_ticks = tpb // 4
    partner = tracks["partner"]
    assert tracks["performer"] and partner
    tol_ticks = 3e-3 * TEMPO * tpb / 60  # 3 ms in ticks
    late_off_ticks = 50e-3 * TEMPO * tpb / 60  # 50 ms in ticks
    key = parse_key("G major")
    held = {}
    for tick, kind, pitch in partner:
        after, before = tick % step_ticks, step_ticks - tick % step_ticks
        if kind == "note_on":
            assert min(after, before) <= tol_ticks, (tick, kind, pitch)
        else:
            assert before <= tol_ticks or after <= late_off_ticks, (tick, kind, pitch)
        if kind == "note_on":
            assert key.contains(pitch) and 55 <= pitch <= 79
            assert pitch not in held
            held[pitch] = tick
        else:
            held.pop(pitch, None)
    assert not held, f"note-ons without note-offs: {held}"
    # Answers start 4 steps after each phrase ends (steps 16+4=20 and 80+4=84) and stay within 1 bar.
    onsets = [round(t / step_ticks) for t, k, _ in partner if k == "note_on"]
    first, second = [s for s in onsets if s < 64], [s for s in onsets if s >= 64]
    assert first and second
    assert 20 <= min(first) and max(first) < 36
    assert 84 <= min(second) and max(second) < 100


class FakeInPort:
    """A live input port that never plays (records that it was started and closed)."""

    def __init__(self):
        self.started = self.closed = False

    def start(self, on_message):
        self.started = True

    def close(self):
        self.closed = True


class RecordingOutPort:
    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(bytes(data))


def test_live_mode_ignores_song_takes_and_stops_at_duration(tmp_path):
    from liveperf.setlist.schema import load_setlist
    from liveperf.show.run import Show, ShowOptions

    write_notes(tmp_path / "take.mid", phrase(0), tempo_bpm=TEMPO)
    (tmp_path / "set.toml").write_text(SETLIST.format(tempo=TEMPO))
    inp, out = FakeInPort(), RecordingOutPort()
    show = Show(load_setlist(tmp_path / "set.toml"), ShowOptions(duration_s=0.5), log=lambda *_: None)
    report = show.run([0], "fake", out, inp)
    # The song has a take, but with a live port nothing is played from it and nothing is echoed.
    assert out.sent == [] and report.songs[0].performer_notes == 0
    assert inp.started and inp.closed


def test_a_model_that_fails_its_probe_is_named_before_the_first_note(tmp_path):
    """A duet model with the right metadata whose output is NaN for most inputs loads fine; ``play`` now runs
    ``check``'s probe and says so, naming the setlist and the song, before the song starts."""
    from liveperf.setlist.schema import load_setlist
    from liveperf.show.run import Show, ShowOptions
    from tests.show.test_faults_gauntlet import nan_duet

    nan_duet(tmp_path / "nan_duet.onnx")
    (tmp_path / "set.toml").write_text('[[song]]\ntitle = "Broken"\ntempo_bpm = 200\nkey = "C major"\nmode = "duet"\n'
                                       'duet_model = "nan_duet.onnx"\n')
    lines = []
    show = Show(load_setlist(tmp_path / "set.toml"), ShowOptions(duration_s=0.3), log=lines.append)
    report = show.run([0], "fake", RecordingOutPort(), FakeInPort())
    warning = next(i for i, line in enumerate(lines) if "fails a probe step" in line)
    start = next(i for i, line in enumerate(lines) if line.startswith("[1. Broken]"))
    assert warning < start and f"{tmp_path / 'set.toml'}: song 1 ('Broken')" in lines[warning]
    assert any("nan_duet.onnx: non-finite" in w for w in report.warnings), report.warnings
