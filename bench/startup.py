"""Start-up: import + numba compile with a cold and a warm cache, and `liveperf check` with a warm cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from bench import REPO_ROOT

DEMO_SETLIST = REPO_ROOT / "setlists" / "demo.toml"  # the repo's, whatever the current directory


def _timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run() -> dict:
    env = dict(os.environ)
    # A private numba cache: the first run compiles (cold), the second loads what the first wrote (warm).
    env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="liveperf-numba-")
    load = [sys.executable, "-c", "import liveperf.music.sampler, liveperf.show.run"]
    cold = _timed(load, env)
    warm = _timed(load, env)
    check = [sys.executable, "-m", "liveperf.cli", "check", str(DEMO_SETLIST), "--no-midi"]
    check_warm = min(_timed(check, env) for _ in range(3))
    return {"import_cold_cache_s": cold, "import_warm_cache_s": warm, "check_demo_warm_cache_s": check_warm}
