"""``FrameListener``: outside JACK clients that stamp what they hear with its JACK frame (tests only)."""

from __future__ import annotations

import threading

from liveperf.io.jack_native import JackMidiClient


class FrameListener:
    """Two JACK clients, ``test-clock`` and ``test-notes``, each with one MIDI input ``in``: liveperf's compiled
    jack-native client (no Python and no GIL in JACK's thread, so it runs every cycle on time where a ctypes callback
    was seen to run late and read the *next* cycle's frame, shifting its events by a period).

    ``events[name]``: (JACK frame, bytes) of everything heard, read every 50 ms by a thread; ``jumps``: cycles
    either client did not run on time (after ``close``). With no jumps, every event was heard at its exact frame.
    """

    def __init__(self) -> None:
        self.clients = {name: JackMidiClient.open(f"test-{name}", inputs=True, outputs=False)
                        for name in ("clock", "notes")}
        self.sample_rate = self.clients["clock"].sample_rate
        self.events: dict[str, list[tuple[int, bytes]]] = {name: [] for name in self.clients}
        self.jumps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain_until_closed, name="test-frames", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for name, client in self.clients.items():
            self.events[name] += [(frame, data) for frame, _, data in client.read_frames()]

    def _drain_until_closed(self) -> None:
        while not self._stop.wait(0.05):
            self._drain()

    def close(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._drain()
            self.jumps = sum(c.counters()["frame_jumps"] for c in self.clients.values())
            for client in self.clients.values():
                client.close()
