"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# tests/ is a package (so pytest puts the repo root on sys.path); tests import the helper as plain `jack_server`.
sys.path.insert(0, str(Path(__file__).parent))

import jack_server as jack  # noqa: E402


@pytest.fixture(scope="module")
def jack_server():
    """A private JACK dummy server for this test module; yields a ``jack_server.JackServer``.

    ``JACK_DEFAULT_SERVER`` points at it while the module runs, so every JACK client of the test process
    (python-rtmidi included) and the ``jack_*`` tools find it. Without the JACK tools the fixture skips, except in
    CI (``CI=true``), where it fails: the CI script installs jackd2.
    """
    yield from _serve_jack()


@pytest.fixture(scope="module")
def jack_server_sync():
    """As ``jack_server``, but synchronous (``jackd -S``): the server starts a cycle only when every client has run
    the last one. Frames then compare exactly across clients; in the default asynchronous mode a client that runs
    late on a busy machine reads the *next* cycle's frame (its events shift by whole periods)."""
    yield from _serve_jack(sync=True)


def _serve_jack(**kw):
    missing = jack.missing_tools()
    if missing:
        reason = f"JACK tools not installed: {', '.join(missing)} (Debian/Ubuntu: apt-get install jackd2)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = jack.start_jack_server(**kw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JACK_DEFAULT_SERVER", server.name)
        mp.setenv("JACK_NO_START_SERVER", "1")
        try:
            yield server
        finally:
            server.stop()
