"""Ableton Link with a real second peer (aalink, ``tests/link_peer.py``), inside a private network namespace that has
only loopback: ``unshare --user --map-root-user --net``, then ``ip link set lo up``. Link's discovery multicasts on
every interface, so nothing here runs outside such a namespace: the scenarios (``link_scenarios.py``) refuse to
run where any other interface exists, and these tests skip, saying why, where no namespace can be made. Each test
runs one scenario in a fresh namespace and checks what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).with_name("link_scenarios.py")
REPO = Path(__file__).resolve().parents[2]
NETNS = ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


def _why_not() -> str | None:
    try:
        import aalink  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("aalink is missing in CI: scripts/setup.sh test installs the link extra")
        return "aalink not installed (pip install 'liveperf[link]')"
    try:
        probe = subprocess.run(NETNS + ["true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a private network namespace: {exc}"
    if probe.returncode != 0:
        return f"cannot make a private network namespace: {probe.stderr.strip() or probe.returncode}"
    return None


def run_scenario(name: str, tmp_path: Path, timeout_s: float = 90) -> dict:
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    done = subprocess.run(NETNS + [sys.executable, str(SCENARIOS), name, str(tmp_path)], capture_output=True,
                          text=True, timeout=timeout_s, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_our_grid_follows_a_peers_tempo_phase_and_transport(tmp_path):
    r = run_scenario("session", tmp_path)
    assert r["peers"] == 1, r
    assert r["tempo_joined"] == pytest.approx(100.0, abs=1e-3), r  # a session already running keeps its tempo
    # Our grid puts the peer's beat where the peer has it (only the phase within the quantum is shared).
    assert max(abs(e) for e in r["phase_ms"]) < 1.0
    assert r["tempo_after"] == pytest.approx(133.0, abs=1e-3) and r["tempo_followed_s"] < 2.0
    assert max(abs(e) for e in r["phase_after_ms"]) < 1.0
    # The peer presses play: we start on the next bar line (a whole bar of 4 beats = 16 steps), within one bar.
    assert r["started"] and r["start_step"] % 16 == 0
    assert 0 < r["start_late_ns"] <= 4 * 60e9 / 133 + 20e6
    assert r["stopped"] and r["events"] == ["continue", "stop"]
    assert r["peer_tempo_led"] == 90  # leading: our tempo reaches the peer
    assert r["stats"]["tempo_changes"] >= 1 and r["stats"]["locates"] == 0


def test_a_show_on_link_joins_follows_a_tempo_change_and_says_so(tmp_path):
    r = run_scenario("show", tmp_path)
    assert r["rc"] == 0, r["output"]
    assert "Link: 1 other peer, 100.00 BPM" in r["output"], r["output"]
    report = r["report"]
    song = report["songs"][0]
    assert song["clock"] == "Link" and song["error"] == ""
    assert report["link"]["peers"] == 1 and report["link"]["tempo_changes"] >= 1
    sent = [(a, args) for a, args in r["feedback"] if a in ("/liveperf/tempo", "/liveperf/link/peers")]
    assert sent[:2] == [("/liveperf/tempo", [100.0]), ("/liveperf/link/peers", [1])]
    assert ("/liveperf/tempo", [125.0]) in sent  # the peer's new tempo, said once the grid moved to it
    assert song["phrases"] >= 1 and sum(a == "/liveperf/note/on" for a, _ in r["feedback"]) > 0
