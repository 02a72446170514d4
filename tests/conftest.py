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
    the last one. In JACK's default asynchronous mode a client that has not finished its cycle in time (the
    non-real-time dummy server on a busy machine: 775-1658 "client ... was not finished" xruns in a 7 s soak with
    both cores kept busy) misses that cycle's MIDI, and a client that runs late reads the next cycle's frame. A lost
    note-off on its way to the test's wire monitor then reads as a stuck note: the likeliest cause of two CI
    failures. Under the same load a synchronous server showed no client xruns, only the dummy driver's own timer
    lateness. Its cost: a starved client slows the whole graph, and with three shows loading models at once a new
    client's open timed out (5 s), so the tests with several shows keep the asynchronous server.
    """
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
