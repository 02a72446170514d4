"""The stage view and stage keys on a real terminal (a pty), in a real show: `liveperf play` draws the view, and the
``n`` key moves to the next song at the bar line; the terminal is left as it was."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_view_draws_and_the_n_key_changes_song(tmp_path):
    master, slave = pty.openpty()
    report = tmp_path / "report.json"
    text = (ROOT / "setlists" / "demo.toml").read_text().replace("[[song]]", "[show.osc]\nenabled = false\n\n[[song]]",
                                                                     1)
    (tmp_path / "demo.toml").write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "liveperf.cli", "play", str(tmp_path / "demo.toml"), "--backend",
                             "file", "--duration", "8", "--report-json", str(report), "--record-dir",
                             str(tmp_path / "rec")], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                            env=dict(os.environ, COLUMNS="100", LINES="30"))
    os.close(slave)
    out = b""

    def read_for(seconds: float) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    return

    try:
        deadline = time.monotonic() + 60
        while b"Jig answer" not in out and time.monotonic() < deadline and proc.poll() is None:
            read_for(0.2)
        assert b"Jig answer" in out, out[-2000:]
        read_for(1.0)
        os.write(master, b"n")  # next song, at the next bar line
        while proc.poll() is None and time.monotonic() < deadline:
            read_for(0.2)
        read_for(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, out[-3000:].decode(errors="replace")
    data = json.loads(report.read_text())
    songs = data["songs"]
    assert [s["title"] for s in songs] == ["Jig answer in D", "Reel in A dorian", "Hornpipe that modulates",
                                          "Chorale with a comp"]
    assert songs[0]["next_song"] == 1  # the key, not the end of the song, moved us on
    bar_ns = 60e9 / 150 * 3  # 6/8 at 150 BPM: three quarter-note beats
    bars = (songs[0]["end_ns"] - songs[0]["start_ns"]) / bar_ns
    assert abs(bars - round(bars)) < 1e-6 and songs[0]["end_ns"] - songs[0]["start_ns"] < 8e9
    text = out.decode(errors="replace")
    assert "Reel in A dorian" in text and "BPM" in text  # the view showed the next songs
    os.close(master)
