"""The recorder under write errors: a full disk (kept in memory, written once there is room, or put in a fallback
folder at the end), a journal healed by rewriting it whole, and real errors from a file-size limit.

Times are chosen so ticks are exact: at 120 BPM and 960 ticks per beat an 8th note (250 ms) is 480 ticks.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from liveperf.io import journal as jr
from liveperf.io.recorder import Recorder
from tests.recorder_helpers import EIGHTH_120_NS, REPO, off, on, read_song_file


# ---- write errors ----

class FullDisk:
    """An opener whose files raise ENOSPC on write while ``full`` (the file is created, as on a real disk)."""

    def __init__(self, full: bool = True) -> None:
        self.full = full

    def __call__(self, path, mode):
        return _FullDiskFile(open(path, mode), self)


class _FullDiskFile:
    def __init__(self, f, disk: FullDisk) -> None:
        self._f, self._disk = f, disk

    def write(self, data):
        if self._disk.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.write(data)

    def flush(self):
        self._f.flush()

    def fileno(self):
        return self._f.fileno()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_disk_full_keeps_recording_in_memory_and_writes_everything_once_there_is_room(tmp_path):
    disk, reports = FullDisk(full=True), []
    rec = Recorder(folder=tmp_path, opener=disk, on_error=reports.append)
    rec.begin_song("Full", 120, 0, 4)
    for k in range(8):
        rec.add("performer", k * EIGHTH_120_NS, on(60 + k))  # never raises
    assert not rec.sync()
    assert not rec.healthy and rec.stats.write_errors >= 1
    assert "No space left on device" in rec.stats.last_error and "01-full.journal" in rec.stats.last_error
    assert len(reports) == 1 and reports[0].startswith("recording not safe on disk")
    rec.end_song()
    assert not rec.sync()  # the .mid cannot be written either
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half files left behind
    disk.full = False
    assert rec.close() and rec.healthy
    assert read_song_file(tmp_path / "01-full.mid")[2]["performer"] == [(k * 480, on(60 + k)) for k in range(8)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-full.mid"]
    assert len(reports) == 1


class FullDiskUnder(FullDisk):
    """Full only under ``folder`` (the recordings' disk); other file systems have room."""

    def __init__(self, folder: Path) -> None:
        super().__init__(full=True)
        self.folder = folder

    def __call__(self, path, mode):
        return _FullDiskFile(open(path, mode), self) if Path(path).is_relative_to(self.folder) else open(path, mode)


def test_a_disk_still_full_at_the_end_puts_the_whole_recording_in_a_fallback_folder_and_says_where(tmp_path):
    show_dir, elsewhere, reports = tmp_path / "rec", tmp_path / "other-disk", []
    rec = Recorder(folder=show_dir, opener=FullDiskUnder(show_dir), on_error=reports.append,
                   fallback_dirs=[show_dir / "no", elsewhere])
    rec.begin_song("Full to the end", 120, 0, 4)
    for k in range(8):
        rec.add("performer", k * EIGHTH_120_NS, on(60 + k))
        rec.add("partner", k * EIGHTH_120_NS, on(48 + k, ch=1))
    assert not rec.close()  # not healthy: the show's folder never got it
    assert rec.stats.fallback_paths == [elsewhere / "01-full-to-the-end.mid"]
    tracks = read_song_file(elsewhere / "01-full-to-the-end.mid")[2]
    assert tracks["performer"] == [(k * 480, on(60 + k)) for k in range(8)]
    assert tracks["partner"] == [(k * 480, on(48 + k, ch=1)) for k in range(8)]
    assert reports[-1] == (f"{show_dir / '01-full-to-the-end.mid'} could not be written; the whole song is in "
                           f"{elsewhere / '01-full-to-the-end.mid'} instead")


def test_journal_write_error_mid_song_is_healed_by_rewriting_it_whole(tmp_path):
    disk = FullDisk(full=False)
    rec = Recorder(folder=tmp_path, opener=disk)
    rec.begin_song("Heal", 120, 0, 4)
    rec.add("partner", 0, on(60))
    assert rec.sync()
    disk.full = True
    rec.add("partner", EIGHTH_120_NS, off(60))
    rec.add("partner", 2 * EIGHTH_120_NS, on(62))
    assert not rec.sync() and not rec.healthy
    disk.full = False
    assert rec.sync() and rec.healthy  # rewritten from memory
    assert [e[1:] for e in jr.read_journal(tmp_path / "01-heal.journal").events] == [
        (0, on(60)), (EIGHTH_120_NS, off(60)), (2 * EIGHTH_120_NS, on(62))]
    assert rec.close()


REAL_LIMIT_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    from liveperf.io.recorder import Recorder

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # files may not grow past 4 KiB: writes fail (EFBIG)
    rec = Recorder(folder=sys.argv[1])
    rec.begin_song("Limited", 120, 0, 4)
    for i in range(2000):
        rec.add("performer", i * 1_000_000, bytes([0x90 if i % 2 == 0 else 0x80, 60, 100 if i % 2 == 0 else 0]))
    print(rec.sync(), rec.healthy, rec.stats.write_errors > 0)
    print(rec.stats.last_error)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
    print(rec.close(), rec.healthy)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
def test_real_write_errors_from_a_file_size_limit(tmp_path):
    """A real kernel write failure without root: RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1 << 20:
        pytest.skip("the hard file-size limit is too low to lift it again")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", REAL_LIMIT_SCRIPT, str(tmp_path)], capture_output=True, env=env,
                         cwd=REPO, timeout=60, text=True)
    assert out.returncode == 0, out.stderr
    sync, error, close = out.stdout.splitlines()
    assert (sync, close) == ("False False True", "True True")
    assert "01-limited.journal" in error and "File too large" in error
    notes = read_song_file(tmp_path / "01-limited.mid")[2]["performer"]
    assert len(notes) == 2000 and notes[-1][0] == round(1999 * 1e6 * 120 * 960 / 60e9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-limited.mid"]
