"""Three jack-native clients in a chain for tests: a performer (out) -> liveperf's client (in and out) -> a listener
(in), each connection carrying data before the chain is handed out (a new JACK connection takes effect at a cycle
boundary)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from liveperf.io.jack_native import JackMidiClient


@contextlib.contextmanager
def native_chain(prefix: str) -> Iterator[tuple[JackMidiClient, JackMidiClient, JackMidiClient]]:
    """``(performer, lp, listener)``: clients ``<prefix>-perf``, ``<prefix>-lp``, ``<prefix>-hear``, closed on exit.
    Needs a JACK server (``JACK_DEFAULT_SERVER``)."""
    perf = JackMidiClient.open(f"{prefix}-perf", inputs=False)
    lp = JackMidiClient.open(f"{prefix}-lp")
    hear = JackMidiClient.open(f"{prefix}-hear", outputs=False)
    try:
        assert perf.connect(perf.out_name, lp.in_name) and lp.connect(lp.out_name, hear.in_name)
        deadline = time.monotonic() + 5
        while not lp.read() or not hear.read():
            assert time.monotonic() < deadline, "no data crossed the new JACK connections"
            perf.write(perf.now_ns(), bytes([0xBF, 119, 1]))
            lp.write(lp.now_ns(), bytes([0xBF, 119, 1]))
            time.sleep(0.02)
        time.sleep(0.05)
        lp.read(), hear.read(), lp.emitted(), perf.emitted()
        yield perf, lp, hear
    finally:
        for c in (perf, lp, hear):
            c.close()
