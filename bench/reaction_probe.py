"""Where a harmonize reaction's time goes inside liveperf: ``liveperf play`` with timestamps taken at each hand-off.

    python -m bench.reaction_probe PROBE_JSON -- <liveperf play arguments>   # run by ``bench.reaction_jack --probe``
    python -m bench.reaction_probe --cold-peek     # the duet model's peek back to back vs after an idle gap

Wraps (from outside, nothing in liveperf is changed) the functions one harmony passes through and takes
``time.monotonic_ns()`` at each, appending to lists that are written as JSON when the show ends:

- ``inbox``: (poll stamp ``ts_ns``, the moment the MIDI input thread hands the note-on to the engine's queue);
- ``note_on``: (poll stamp ``ts_ns`` given by the MIDI input thread, engine enters ``Harmonize.note_on``, leaves it);
- ``peek`` / ``sample``: (enter, leave) of the duet model's peek and of the masked sampling inside ``note_on``;
- ``put``: (time, bytes) of every partner note-on handed to the scheduler (``Scheduler.schedule``: a queue put);
- ``send``: (before ``port.send``, after it, bytes) of every partner note-on the scheduler thread sends.

The wrappers cost a few µs each; the probe is for finding the slow stage, the plain run gives the figure.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from liveperf.timing import scheduler as sched_mod
from liveperf.io import midi_ports
from liveperf.models.phrase_models import DuetStepper
from liveperf.modes import harmonize

PROBE: dict[str, list] = {"note_on": [], "put": [], "send": [], "peek": [], "sample": [], "inbox": []}


def _is_on(data) -> bool:
    return len(data) == 3 and data[0] & 0xF0 == 0x90 and data[2] > 0


def install() -> None:
    note_on, schedule, send = harmonize.Harmonize.note_on, sched_mod.Scheduler.schedule, sched_mod.Scheduler._send

    def probed_note_on(self, ts_ns, pitch, velocity):
        t_in = time.monotonic_ns()
        note_on(self, ts_ns, pitch, velocity)
        PROBE["note_on"].append((ts_ns, t_in, time.monotonic_ns()))

    def probed_schedule(self, due_ns, data):
        if _is_on(data):
            PROBE["put"].append((time.monotonic_ns(), list(data)))
        schedule(self, due_ns, data)

    def probed_send(self, *args):  # (data, due_ns), or (now_ns, data, due_ns) in older versions
        data = args[-2]
        if not _is_on(data):
            return send(self, *args)
        t0 = time.monotonic_ns()
        send(self, *args)
        PROBE["send"].append((t0, time.monotonic_ns(), list(data)))

    peek, sample, start = DuetStepper.peek, harmonize.sample, midi_ports.MidiInPort.start

    def probed_peek(self, *args):
        t0 = time.monotonic_ns()
        out = peek(self, *args)
        PROBE["peek"].append((t0, time.monotonic_ns()))
        return out

    def probed_sample(*args):
        t0 = time.monotonic_ns()
        out = sample(*args)
        PROBE["sample"].append((t0, time.monotonic_ns()))
        return out

    def probed_start(self, on_message):
        def on(ts_ns, data):
            if _is_on(data):
                PROBE["inbox"].append((ts_ns, time.monotonic_ns()))
            on_message(ts_ns, data)
        start(self, on)

    DuetStepper.peek = probed_peek
    harmonize.sample = probed_sample
    midi_ports.MidiInPort.start = probed_start
    harmonize.Harmonize.note_on = probed_note_on
    sched_mod.Scheduler.schedule = probed_schedule
    sched_mod.Scheduler._send = probed_send


def cold_peek(gaps_s=(0.0, 0.01, 0.2), calls: int = 150) -> dict:
    """The duet model's peek (harmonize's model call) timed back to back and after an idle gap, in this process
    with nothing else running: {gap in ms: p50/p99 µs}. Shows what a model call costs when the CPU has been idle
    (caches and frequency), which is the show's case: a peek every note-on, 150-400 ms apart."""
    import numpy as np

    from liveperf.music import melody

    st = DuetStepper.load()
    out = {}
    for gap in gaps_s:
        for _ in range(30):
            st.peek(melody.on(60), melody.HOLD, 0, 0)
        lat = []
        for i in range(calls):
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter_ns()
            st.peek(melody.on(60 + i % 12), melody.HOLD, 0, i % 4)
            lat.append(time.perf_counter_ns() - t0)
        a = np.asarray(lat[20:]) / 1e3
        out[f"{gap * 1e3:g} ms"] = {"p50_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99))}
    return out


def main() -> int:
    if sys.argv[1:] == ["--cold-peek"]:
        for gap, s in cold_peek().items():
            print(f"duet peek after an idle gap of {gap:>6}: p50 {s['p50_us']:6.0f} µs  p99 {s['p99_us']:6.0f} µs")
        return 0
    out, argv = Path(sys.argv[1]), sys.argv[sys.argv.index("--") + 1:]
    install()
    from liveperf import cli

    try:
        sys.argv = ["liveperf", *argv]
        code = cli.main()
    finally:
        out.write_text(json.dumps(PROBE))
    return code or 0


def stages(probe: dict, performer_sends: list[int], arrivals: list[int]) -> dict[str, list[int]]:
    """Per harmony, ns spent in each stage, from the probe's lists, the performer's send moments of the note-ons
    that reached the engine, and the listener's arrival moments of partner note-ons (all on CLOCK_MONOTONIC).

    Harmonies are matched by order: the k-th ``note_on`` made the k-th partner note-on ``put`` (harmonize puts one
    note-on per note-on that found a candidate: those without one are skipped by time), which is sent by the first
    ``send`` of the same bytes after it (none if dropped as late)."""
    out: dict[str, list[int]] = {k: [] for k in (
        "jack_in_and_poll", "poll_stamp_to_inbox", "inbox_to_engine", "engine_note_on", "of_which_peek",
        "of_which_sample", "put_to_scheduler_send", "port_send", "send_to_listener")}
    inbox = {ts: t for ts, t in probe["inbox"]}
    peeks, samples = _within(probe["peek"], probe["note_on"]), _within(probe["sample"], probe["note_on"])
    puts, sends = list(probe["put"]), list(probe["send"])
    pi = si = ai = 0
    for k, (ts, t_in, t_out) in enumerate(probe["note_on"]):
        while pi < len(puts) and puts[pi][0] < t_in:
            pi += 1
        if pi >= len(puts) or puts[pi][0] > t_out:
            continue  # no candidate: nothing put
        t_put, data = puts[pi]
        pi += 1
        while si < len(sends) and sends[si][0] < t_put:
            si += 1
        j = si
        while j < len(sends) and sends[j][0] - t_put < 50_000_000 and sends[j][2] != data:
            j += 1
        if j >= len(sends) or sends[j][0] - t_put >= 50_000_000:
            continue  # dropped as late
        s0, s1 = sends[j][0], sends[j][1]
        si = j + 1
        if k < len(performer_sends):
            out["jack_in_and_poll"].append(ts - performer_sends[k])
        if ts in inbox:
            out["poll_stamp_to_inbox"].append(inbox[ts] - ts)
            out["inbox_to_engine"].append(t_in - inbox[ts])
        out["engine_note_on"].append(t_out - t_in)
        if k in peeks:
            out["of_which_peek"].append(peeks[k])
        if k in samples:
            out["of_which_sample"].append(samples[k])
        out["put_to_scheduler_send"].append(s0 - t_put)
        out["port_send"].append(s1 - s0)
        while ai < len(arrivals) and arrivals[ai] < s1:
            ai += 1
        if ai < len(arrivals) and arrivals[ai] - s1 < 50_000_000:
            out["send_to_listener"].append(arrivals[ai] - s1)
    return out


def _within(spans: list, note_ons: list) -> dict[int, int]:
    """{index of the note_on: duration of the span (e.g. a peek) that lies inside it}; the others are grid steps."""
    out, j = {}, 0
    for k, (_, t_in, t_out) in enumerate(note_ons):
        while j < len(spans) and spans[j][0] < t_in:
            j += 1
        if j < len(spans) and spans[j][1] <= t_out:
            out[k] = spans[j][1] - spans[j][0]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
