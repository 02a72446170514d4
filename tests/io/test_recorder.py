"""The recorder: per-song files with exact ticks, journals that survive ``kill -9``, recovery, disk-full handling,
and the whole-show file of ``save``. Write errors: ``test_recorder_errors``.

Times are chosen so ticks are exact: at 120 BPM and 960 ticks per beat an 8th note (250 ms) is 480 ticks.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from liveperf.io import journal as jr
from liveperf.io.recorder import Recorder
from tests.recorder_helpers import BAR_120_NS, EIGHTH_120_NS, REPO, off, on, read_song_file, wait_for


# ---- per-song files ----

def test_folder_mode_writes_one_file_per_song_with_exact_ticks(tmp_path):
    folder = tmp_path / "show"
    rec = Recorder(folder=folder)
    rec.add("performer", 5, on(40))  # before any song: dropped
    t0 = 1_000_000
    rec.begin_song("Blue Moon (live)", 120, t0, 4)
    rec.add("performer", t0, on(60))
    rec.add("performer", t0 + EIGHTH_120_NS, off(60))
    rec.add("partner", t0 + BAR_120_NS, on(67, 90))
    rec.add("partner", t0 + BAR_120_NS + 3 * EIGHTH_120_NS, off(67))
    rec.add("performer", t0 - 1000, bytes([0xB0, 64, 127]))  # lead-in: clamped to tick 0
    t1 = 60_000_000_000
    rec.begin_song("Second: tune!", 90, t1, 3)
    rec.add("partner", t1 + 666_666_667, on(72))  # one beat at 90 BPM -> tick 960
    rec.add("partner", t1 + 2_000_000_000, off(72))  # three beats -> tick 2880
    rec.end_song()
    assert rec.close()
    assert sorted(p.name for p in folder.iterdir()) == ["01-blue-moon-live.mid", "02-second-tune.mid"]
    assert rec.stats.paths == [folder / "01-blue-moon-live.mid", folder / "02-second-tune.mid"]
    assert (rec.stats.songs, rec.stats.events, rec.stats.write_errors) == (2, 7, 0)

    tpb, conductor, tracks = read_song_file(folder / "01-blue-moon-live.mid")
    assert tpb == 960
    assert conductor == [(0, "set_tempo", 120.0), (0, "marker", "Blue Moon (live)")]
    assert tracks["performer"] == [(0, on(60)), (0, bytes([0xB0, 64, 127])), (480, off(60))]
    assert tracks["partner"] == [(3840, on(67, 90)), (3840 + 1440, off(67))]
    _, conductor, tracks = read_song_file(folder / "02-second-tune.mid")
    assert conductor == [(0, "set_tempo", 90.0), (0, "marker", "Second: tune!")]
    assert tracks == {"performer": [], "partner": [(960, on(72)), (2880, off(72))]}


def test_numbers_continue_after_files_already_in_the_folder(tmp_path):
    (tmp_path / "07-old.mid").write_bytes(b"")
    rec = Recorder(folder=tmp_path)
    rec.begin_song("New", 120, 0, 4)
    assert rec.close()
    assert (tmp_path / "08-new.mid").exists()


def test_events_after_end_song_reach_the_file_at_close(tmp_path):
    """The scheduler's final note-offs may come after ``end_song``: the song's file is rewritten with them."""
    rec = Recorder(folder=tmp_path)
    rec.begin_song("Tune", 120, 0, 4)
    rec.add("partner", 0, on(60))
    rec.end_song()
    assert rec.sync()
    assert read_song_file(tmp_path / "01-tune.mid")[2]["partner"] == [(0, on(60))]
    rec.add("partner", EIGHTH_120_NS, off(60))
    assert rec.close()
    assert read_song_file(tmp_path / "01-tune.mid")[2]["partner"] == [(0, on(60)), (480, off(60))]
    assert not list(tmp_path.glob("*.journal*")) and not list(tmp_path.glob("*.tmp"))


def test_tempo_change_moves_later_ticks_and_is_in_the_conductor(tmp_path):
    rec = Recorder(folder=tmp_path)
    rec.begin_song("Slower", 120, 0, 4)
    rec.tempo_change(BAR_120_NS, 60)  # tick 3840, then a beat is 1 s
    rec.add("performer", BAR_120_NS - EIGHTH_120_NS, on(60))  # tick 3360
    rec.add("performer", BAR_120_NS + 1_500_000_000, off(60))  # 3840 + 1.5 beats = 5280
    assert rec.close()
    _, conductor, tracks = read_song_file(tmp_path / "01-slower.mid")
    assert conductor == [(0, "set_tempo", 120.0), (0, "marker", "Slower"), (3840, "set_tempo", 60.0)]
    assert tracks["performer"] == [(3360, on(60)), (5280, off(60))]


def test_unknown_track_and_bad_tempo_are_refused_where_they_enter():
    rec = Recorder()
    with pytest.raises(ValueError, match="performer"):
        rec.add("drums", 0, on(60))
    with pytest.raises(ValueError, match="tempo_bpm"):
        rec.begin_song("x", 0, 0, 4)
    with pytest.raises(ValueError, match="tempo_bpm"):
        rec.tempo_change(0, 3.5)  # slower than a MIDI file's tempo can say


# ---- journal: bar-line syncs, reading, recovery ----

def test_journal_is_synced_after_each_bar_line(tmp_path):
    rec = Recorder(folder=tmp_path, sync_delay_ns=10_000_000)
    start = time.monotonic_ns()
    rec.begin_song("Fast", 600, start, 4)  # a bar is 400 ms
    rec.add("performer", start + 100_000_000, on(60))
    assert wait_for(lambda: rec.stats.durable_ns >= start + 400_000_000, 3.0)
    song = jr.read_journal(tmp_path / "01-fast.journal")  # read by another handle: it is on disk
    assert song.events == [("performer", start + 100_000_000, on(60))]
    assert (song.title, song.tempo_bpm, song.start_ns, song.beats_per_bar) == ("Fast", 600.0, start, 4.0)
    assert rec.close()


def test_explicit_bar_line_syncs_the_journal(tmp_path):
    rec = Recorder(folder=tmp_path, sync_delay_ns=0)
    now = time.monotonic_ns()
    rec.begin_song("Slow", 4, now, 4)  # the first computed bar line is a minute away
    rec.add("partner", now, on(50))
    rec.bar(now + 1)
    assert wait_for(lambda: rec.stats.durable_ns == now + 1, 3.0)
    assert jr.read_journal(tmp_path / "01-slow.journal").events == [("partner", now, on(50))]
    assert rec.close()


def test_read_journal_drops_a_truncated_last_line_and_skips_corrupt_ones(tmp_path):
    song = jr.SongRecord("T", 120, 10, 4, 960, events=[("performer", 10, on(60)), ("partner", 20, off(60))],
                         tempos=[(30, 90.0)])
    path = tmp_path / "01-t.journal"
    path.write_bytes(jr.journal_bytes(song) + b"partner 40 zz\n" + b"\0\0\0\n" + b"performer 50 903c6")
    back = jr.read_journal(path)
    assert back.events == song.events and back.tempos == song.tempos
    assert (back.title, back.tempo_bpm, back.start_ns, back.beats_per_bar) == ("T", 120, 10, 4)
    assert back.ticks_per_beat == 960
    assert back.skipped_lines == 3


def test_read_journal_names_the_file_when_the_header_is_bad(tmp_path):
    path = tmp_path / "x.journal"
    path.write_bytes(b"liveperf-journal 1 {\"title\": \"a\"}\n")
    with pytest.raises(jr.JournalError, match=r"x\.journal: bad header"):
        jr.read_journal(path)
    path.write_bytes(b"liveperf-journ")
    with pytest.raises(jr.JournalError, match="no complete header"):
        jr.read_journal(path)


def test_recover_converts_leftover_journals_and_is_idempotent(tmp_path):
    song = jr.SongRecord("Left over", 120, 0, 4, 960,
                         events=[("performer", 0, on(60)), ("performer", EIGHTH_120_NS, off(60))])
    (tmp_path / "01-left-over.journal").write_bytes(jr.journal_bytes(song) + b"partner 12")
    (tmp_path / "01-left-over.mid.tmp").write_bytes(b"half")
    (tmp_path / "02-done.journal").write_bytes(jr.journal_bytes(song))
    (tmp_path / "02-done.mid").write_bytes(b"kept as is")
    (tmp_path / "03-bad.journal").write_bytes(b"garbage\n")
    errors = []
    assert jr.recover(tmp_path, on_error=lambda p, why: errors.append(p.name)) == [tmp_path / "01-left-over.mid"]
    assert errors == ["03-bad.journal"]
    assert read_song_file(tmp_path / "01-left-over.mid")[2]["performer"] == [(0, on(60)), (480, off(60))]
    assert (tmp_path / "02-done.mid").read_bytes() == b"kept as is"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "01-left-over.journal.recovered", "01-left-over.mid", "02-done.journal.recovered", "02-done.mid",
        "03-bad.journal"]
    with pytest.raises(jr.RecoverError, match="03-bad.journal"):
        jr.recover(tmp_path)
    assert jr.recover(tmp_path / "missing") == []


def test_a_recovered_journal_ends_the_notes_that_were_sounding_at_the_kill(tmp_path):
    # Killed while the performer held E4 and the partner C3 (struck twice): the journal stops there.
    song = jr.SongRecord("Cut short", 120, 0, 4, 960, events=[
        ("performer", 0, on(60)), ("performer", EIGHTH_120_NS, off(60)), ("performer", EIGHTH_120_NS, on(64)),
        ("partner", EIGHTH_120_NS, on(48, ch=1)), ("partner", 2 * EIGHTH_120_NS, on(48, ch=1)),
        ("partner", 3 * EIGHTH_120_NS, bytes((0xB0 | 1, 1, 64)))])
    (tmp_path / "01-cut-short.journal").write_bytes(jr.journal_bytes(song))
    assert jr.recover(tmp_path) == [tmp_path / "01-cut-short.mid"]
    tracks = read_song_file(tmp_path / "01-cut-short.mid")[2]
    assert tracks["performer"] == [(0, on(60)), (480, off(60)), (480, on(64)), (1440, off(64))]
    assert tracks["partner"] == [(480, on(48, ch=1)), (960, on(48, ch=1)), (1440, bytes((0xB1, 1, 64))),
                                 (1440, off(48, ch=1))]


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from liveperf.io.recorder import Recorder

    rec = Recorder(folder=sys.argv[1])
    start = time.monotonic_ns() + 300_000_000
    bar3 = start + 3 * 2_000_000_000
    rec.begin_song("Kill me", 120, start, 4)
    printed = False

    def sleep_until(ns):
        global printed
        while time.monotonic_ns() < ns:
            if not printed and rec.stats.durable_ns >= bar3:
                print("bar 2 done", flush=True)
                printed = True
            time.sleep(0.002)

    for k in range(5 * 8):  # 8ths for five bars; the test kills us in the fourth
        on_ns = start + k * 250_000_000
        track, pitch = ("performer", 60 + k % 12) if k % 2 == 0 else ("partner", 72 + k % 12)
        for ts, data in ((on_ns, bytes([0x90, pitch, 100])), (on_ns + 125_000_000, bytes([0x80, pitch, 0]))):
            sleep_until(ts)
            rec.add(track, ts, data)
    time.sleep(60)
""")


def test_kill_9_mid_song_keeps_every_note_before_the_last_bar_line(tmp_path):
    """A recording process killed with SIGKILL in bar 4: recover() gives every note of bars 1-3, at exact ticks."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else b""
        assert line == b"bar 2 done\n", proc.stderr.read1(4000) if not ready else line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir()] == ["01-kill-me.journal"]

    assert jr.recover(tmp_path) == [tmp_path / "01-kill-me.mid"]
    expected = {"performer": [], "partner": []}
    for k in range(5 * 8):
        track, pitch = ("performer", 60 + k % 12) if k % 2 == 0 else ("partner", 72 + k % 12)
        expected[track] += [(k * 480, on(pitch)), (k * 480 + 240, off(pitch))]
    _, conductor, tracks = read_song_file(tmp_path / "01-kill-me.mid")
    assert conductor == [(0, "set_tempo", 120.0), (0, "marker", "Kill me")]
    bar3_tick = 3 * 3840
    last_tick = max(e[0] for t in tracks.values() for e in t)
    for track in ("performer", "partner"):
        before = [e for e in expected[track] if e[0] < bar3_tick]
        assert [e for e in tracks[track] if e[0] < bar3_tick] == before  # all of bars 1-3, exact
        played = [e for e in tracks[track] if e in expected[track]]
        assert played == expected[track][:len(played)]  # later: only what was played, in order
        # ... and a note sounding at the kill ends where the recovered part ends (recover closes it)
        closing = [e for e in tracks[track] if e not in expected[track]]
        assert all(t == last_tick and d[0] & 0xF0 == 0x80 for t, d in closing), closing
        assert sum(d[0] & 0xF0 == 0x90 for _, d in tracks[track]) == sum(d[0] & 0xF0 == 0x80 for _, d in tracks[track])
    assert len(expected["performer"]) + len(expected["partner"]) > sum(len(t) for t in tracks.values())


# ---- the whole-show file ----

def record_two_songs(rec: Recorder) -> None:
    rec.add("partner", 1, on(30))  # before the first song: dropped
    rec.begin_song("One", 120, 0, 4)
    rec.add("performer", 0, on(60))
    rec.add("partner", BAR_120_NS + EIGHTH_120_NS, off(60))  # tick 4320: song one ends in its second bar
    rec.begin_song("Two", 90, 100_000_000_000, 3)
    rec.add("performer", 100_000_000_000 + 666_666_667, on(64))


def test_save_writes_the_whole_show_in_one_file_as_before(tmp_path):
    rec = Recorder()
    record_two_songs(rec)
    path = rec.save(tmp_path / "sub" / "show.mid")
    _, conductor, tracks = read_song_file(path)
    two = 3 * 3840  # the bar after song one's last event, plus one empty bar
    assert conductor == [(0, "set_tempo", 120.0), (0, "marker", "One"),
                         (two, "set_tempo", 90.0), (two, "marker", "Two")]
    assert tracks == {"performer": [(0, on(60)), (two + 960, on(64))], "partner": [(4320, off(60))]}
    assert not list(tmp_path.glob("*.journal"))


def test_save_in_folder_mode_gives_the_same_file(tmp_path):
    memory, folder = Recorder(), Recorder(folder=tmp_path / "songs")
    record_two_songs(memory)
    record_two_songs(folder)
    a = memory.save(tmp_path / "a.mid")
    b = folder.save(tmp_path / "b.mid")
    assert folder.close()
    assert a.read_bytes() == b.read_bytes()
    assert folder.save(tmp_path / "c.mid").read_bytes() == a.read_bytes()  # after close too
    assert sorted(p.name for p in (tmp_path / "songs").iterdir()) == ["01-one.mid", "02-two.mid"]


def test_messages_a_midi_file_cannot_hold_are_dropped_and_counted_not_fatal(tmp_path):
    """A stray System Reset (FF) once killed the writer thread (mido refuses realtime messages in files)."""
    rec = Recorder(folder=tmp_path)
    rec.begin_song("Junk", 120, 0, 4)
    for junk in (b"\xff", b"\xf8", b"\x90\x40", b"\x90\x80\x10", b"", b"\xf0\x01\x02", b"\xf3\x01"):
        rec.add("performer", 1_000, junk)
    rec.add("performer", 0, on(60))
    rec.add("performer", EIGHTH_120_NS, off(60))
    rec.add("partner", 0, b"\xf0\x7e\x01\xf7")  # a whole sysex is kept
    rec.close()
    assert rec.unrecordable == 7 and rec.healthy
    _, _, tracks = read_song_file(tmp_path / "01-junk.mid")
    assert tracks["performer"] == [(0, on(60)), (480, off(60))]
    assert tracks["partner"] == [(0, b"\xf0\x7e\x01\xf7")]
