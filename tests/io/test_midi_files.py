"""MIDI files in and out (mido): takes to grid notes and tokens, the recorder's per-song tempo map, bad files."""

import mido
import pytest

from liveperf.io.midi_file import MidiFileError, read_take, take_to_notes, write_notes
from liveperf.io.recorder import Recorder
from liveperf.music.melody import HOLD, OFF, Note, notes_to_tokens, on, tokens_to_notes
from liveperf.music.notes import note_off, note_on


def test_notes_file_tokens_round_trip(tmp_path):
    tokens = [on(60), HOLD, on(62), OFF, HOLD, on(64), HOLD, HOLD, on(64), OFF]
    write_notes(tmp_path / "a.mid", tokens_to_notes(tokens), tempo_bpm=133)
    notes = take_to_notes(read_take(tmp_path / "a.mid"))
    assert notes_to_tokens(notes, len(tokens)).tolist() == tokens


def test_overlaps_chords_and_short_notes_from_a_file(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=96)
    t = mido.MidiTrack()
    mid.tracks.append(t)
    # chord C-E-G for a beat; a 5-tick grace note (shorter than a 24-tick step); overlapping legato D over C.
    t += [mido.Message("note_on", note=60, velocity=80, time=0), mido.Message("note_on", note=64, velocity=80),
          mido.Message("note_on", note=67, velocity=80), mido.Message("note_off", note=60, time=96),
          mido.Message("note_off", note=64), mido.Message("note_off", note=67),
          mido.Message("note_on", note=71, velocity=70, time=24), mido.Message("note_off", note=71, time=5),
          mido.Message("note_on", note=60, velocity=70, time=19), mido.Message("note_on", note=62, velocity=70, time=40),
          mido.Message("note_off", note=60, time=8), mido.Message("note_off", note=62, time=48)]
    mid.save(tmp_path / "odd.mid")
    notes = take_to_notes(read_take(tmp_path / "odd.mid"))
    assert notes == [Note(0, 4, 60, 80), Note(0, 4, 64, 80), Note(0, 4, 67, 80), Note(5, 5, 71, 70),
                     Note(6, 8, 60, 70), Note(8, 10, 62, 70)]
    assert notes_to_tokens(notes).tolist() == [on(67), HOLD, HOLD, HOLD, OFF, on(71), on(60), HOLD, on(62), HOLD]


def test_unmatched_note_on_ends_at_take_end(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=4)
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=50, velocity=9),
                                      mido.Message("control_change", control=1, value=3, time=8)]))
    mid.save(tmp_path / "u.mid")
    assert take_to_notes(read_take(tmp_path / "u.mid")) == [Note(0, 8, 50, 9)]


@pytest.mark.parametrize("content", [b"", b"MThd\x00\x00\x00\x06\x00", b"not midi at all" * 10])
def test_bad_files_name_the_file(tmp_path, content):
    p = tmp_path / "bad.mid"
    p.write_bytes(content)
    with pytest.raises(MidiFileError, match="bad.mid"):
        read_take(p)
    with pytest.raises(MidiFileError, match="no such file"):
        read_take(tmp_path / "missing.mid")


def test_recorder_places_each_song_on_its_own_tempo(tmp_path):
    r = Recorder(ticks_per_beat=480)
    r.begin_song("one", 120.0, 1_000_000_000, 4)
    r.add("performer", 1_000_000_000, note_on(0, 60, 90))
    r.add("partner", 1_250_000_000, note_on(1, 64, 80))  # half a beat at 120 BPM = 240 ticks
    r.add("partner", 1_500_000_000, note_off(1, 64))
    r.add("performer", 1_500_000_000, note_off(0, 60))
    r.begin_song("two", 60.0, 9_000_000_000, 3)
    r.add("partner", 10_000_000_000, note_on(1, 67, 80))  # one beat into song two at 60 BPM
    r.add("partner", 10_500_000_000, note_off(1, 67))
    path = r.save(tmp_path / "sub" / "rec.mid")
    mid = mido.MidiFile(path)
    assert [t.name for t in mid.tracks] == ["conductor", "performer", "partner"]

    def abs_events(track):
        tick, out = 0, []
        for m in track:
            tick += m.time
            if not m.is_meta or m.type in ("set_tempo", "marker"):
                out.append((tick, m.type, getattr(m, "note", getattr(m, "text", getattr(m, "tempo", None)))))
        return out

    # Song one ends at tick 480 (bar = 1920 ticks): song two starts two bars later, at 3840.
    assert abs_events(mid.tracks[0]) == [(0, "set_tempo", 500000), (0, "marker", "one"),
                                         (3840, "set_tempo", 1000000), (3840, "marker", "two")]
    assert abs_events(mid.tracks[2]) == [(240, "note_on", 64), (480, "note_off", 64),
                                         (3840 + 480, "note_on", 67), (3840 + 720, "note_off", 67)]
    assert abs_events(mid.tracks[1]) == [(0, "note_on", 60), (480, "note_off", 60)]
