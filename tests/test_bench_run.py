"""``bench.run`` from outside the repo root: it starts, says in --help where it writes (the current directory, not
the source tree), and the child Pythons its benches start can import ``bench`` and ``tests`` from anywhere."""

from __future__ import annotations

import os
import subprocess
import sys

from bench import REPO_ROOT, let_children_import_bench, startup


def _help(args: list[str], cwd, env=None) -> str:
    env = dict(os.environ if env is None else env, COLUMNS="200")  # argparse wraps to the terminal's width
    done = subprocess.run([sys.executable, *args, "--help"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_run_as_a_file_from_another_directory_and_where_it_writes(tmp_path):
    out = _help([str(REPO_ROOT / "bench" / "run.py")], cwd=tmp_path)
    assert "--out OUT" in out and "(default: liveperf-bench/<date-time>/ in the current directory)" in out
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


def test_children_started_elsewhere_import_bench_and_tests(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "")
    let_children_import_bench()
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)
    done = subprocess.run([sys.executable, "-c", "import bench.reaction_probe, tests.jack_server"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "bench.run" in _help(["-m", "bench.run"], cwd=tmp_path)  # -m finds it through PYTHONPATH too


def test_startup_checks_the_demo_setlist_of_the_repo_not_of_the_current_directory():
    assert startup.DEMO_SETLIST.is_absolute() and startup.DEMO_SETLIST.is_file()


def test_the_timing_benches_tell_grid_notes_from_reactions():
    """A due time on a step (the report's step_ns is rounded, so within 1 µs) is the grid's; the duet's correction at
    the end of its listening window, due when computed, is a reaction."""
    from bench.grid import on_grid

    start, step = 5_000_000_123, 60e9 / (180 * 4)  # 180 BPM sixteenths: 83,333,333.3 ns
    steps = [start + round(k * step) for k in (0, 1, 7, 10_000)]
    dues = steps + [steps[1] + 27_777_778, steps[2] - 2_000, steps[3] + 999]
    assert on_grid(dues, start, step).tolist() == [True] * 4 + [False, False, True]
    assert on_grid([], start, step).tolist() == []
