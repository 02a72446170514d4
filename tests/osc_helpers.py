"""Waiting and tool checks shared by the OSC tests (``test_osc``, ``test_osc_feedback``)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

TIMEOUT_S = 5.0


def wait_until(predicate, timeout_s: float = TIMEOUT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.002)


def need_tools(*names: str) -> None:
    """Skip without liblo-tools, except in CI (CI=true), where the tools are installed and their absence fails."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        reason = f"liblo tools not installed: {', '.join(missing)} (Debian/Ubuntu: apt-get install liblo-tools)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
