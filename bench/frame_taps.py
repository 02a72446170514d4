"""What a synth in the JACK graph hears, in frames, for the reaction bench (``bench.reaction_jack``): compiled taps on
the performer's port into liveperf and on liveperf's output, and each note-on's answer in frames."""

from __future__ import annotations

import threading

import numpy as np

from liveperf.io.jack_native import JackMidiClient


class FrameTaps:
    """What a synth in the graph hears, in JACK frames: two compiled clients (``liveperf.io.jack_native``, no
    Python in JACK's thread), one on the performer's port into liveperf and one on liveperf's output (two sources
    into one JACK input port can lose events on the dummy server). ``events[name]``: (JACK frame, bytes)."""

    def __init__(self) -> None:
        self.clients = {name: JackMidiClient.open(f"rb-tap-{name}", outputs=False) for name in ("perf", "lp")}
        self.rate = self.clients["perf"].sample_rate
        self.events: dict[str, list[tuple[int, bytes]]] = {name: [] for name in self.clients}
        self.jumps = 0  # cycles a tap read late (a later cycle's frame: its events shift by whole periods)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-taps", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, client in self.clients.items():
                self.events[name] += [(f, d) for f, _, d in client.read_frames()]

    def close(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            for name, client in self.clients.items():
                self.events[name] += [(f, d) for f, _, d in client.read_frames()]
                self.jumps += client.counters()["frame_jumps"]
                client.close()


def frame_reaction(taps: FrameTaps, warmup_s: float, partner_channel: int) -> dict:
    """Each performer note-on's first partner note-on before the next note-on, in frames after it (0: the answer
    sounds on the note-on's own frame, as a bare loopback passes it); a gap with none counts in ``no_harmony``."""
    ons = [f for f, m in taps.events["perf"] if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0]
    answers = sorted(f for f, m in taps.events["lp"] if len(m) == 3 and m[0] == 0x90 | partner_channel and m[2] > 0)
    ons = [f for f in ons if ons and f - ons[0] >= warmup_s * taps.rate]
    frames, none, j = [], 0, 0
    for f, nxt in zip(ons, ons[1:] + [1 << 62]):
        while j < len(answers) and answers[j] < f:
            j += 1
        if j < len(answers) and answers[j] < nxt:
            frames.append(answers[j] - f)
        else:
            none += 1
    a = np.asarray(frames, dtype=np.float64) * 1e3 / taps.rate
    stat = (lambda f: float(f(a)) if a.size else None)  # noqa: E731
    return {"n": int(a.size), "no_harmony": none, "tap_frame_jumps": taps.jumps,
            "same_frame": sum(1 for x in frames if x == 0), "p50_ms": stat(np.median),
            "p99_ms": stat(lambda v: np.percentile(v, 99)), "max_ms": stat(np.max)}
