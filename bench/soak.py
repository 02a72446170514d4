"""Soak in virtual time: a long set through the real engine, every song, every mode, random performer input.

    python -m bench.soak --minutes 60            # the long form (about a minute or two of wall time per hour)
    python -m bench.soak --minutes 3 --seed 2    # what tests/show/test_soak.py runs

Every song of the shipped setlists (``setlists/*.toml``) is played in turn, in segments of ``--segment-minutes``
virtual minutes, with the shipped ONNX models (``SongModels.load`` / ``build_modes``, as ``liveperf play`` does),
through ``run_loop`` with ``ScriptedInput`` and a ``VirtualScheduler``. The performer is random but seeded:
phrases, held chords, CCs, notes on other channels, garbage bytes, keys never released; at random bar lines the
mode is switched (``Engine.request_mode``) and the tempo changed (``Engine.request_tempo``).

The wire is checked as it streams (nothing is kept): every note-on has its note-off, never a note-off for a note not
sounding, nothing sounding after each song's end, times never going back. Resident memory (``/proc/self/status``
VmRSS, after ``gc.collect()``) is sampled at every segment; growth is the mean of the last 10 % of samples over the
mean of the first 10 % (after the first segment, which loads the models). Prints the figures; exit 1 on a failed
invariant.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.proc import rss_kib
from liveperf.timing.clock import InternalClock
from liveperf.timing.echo_guard import EchoGuardSink
from liveperf.engine import Engine
from liveperf.loop import ScriptedInput, run_loop
from liveperf.modes.build import SongModels, build_modes
from liveperf.music.notes import is_note_off, is_note_on
from liveperf.timing.virtual_scheduler import VirtualScheduler
from liveperf.setlist.schema import load_setlist

REPO = Path(__file__).resolve().parent.parent
MODES = ("call_response", "duet", "harmonize", "phrase")
NS_PER_S = 1_000_000_000


class StreamingWire:
    """Stands in for ``VirtualScheduler.sent``: checks each ``(t_ns, data)`` as it is appended, keeps counters."""

    def __init__(self) -> None:
        self.sounding: dict[tuple[int, int], int] = {}
        self.messages = self.note_ons = self.note_offs = self.unmatched_offs = self.time_reversals = 0
        self.longest_note_ns = 0
        self.last_ns = 0

    def append(self, item: tuple[int, bytes]) -> None:
        t, data = item
        self.messages += 1
        if t < self.last_ns:
            self.time_reversals += 1
        self.last_ns = max(self.last_ns, t)
        if len(data) != 3:
            return
        key = (data[0] & 0x0F, data[1])
        if is_note_on(data):
            self.note_ons += 1
            self.sounding.setdefault(key, t)
        elif is_note_off(data):
            self.note_offs += 1
            began = self.sounding.pop(key, None)
            if began is None:
                self.unmatched_offs += 1
            else:
                self.longest_note_ns = max(self.longest_note_ns, t - began)


@dataclass
class SoakResult:
    virtual_minutes: float
    wall_s: float = 0.0
    songs_played: int = 0
    steps: int = 0
    input_events: int = 0
    mode_switches: int = 0
    tempo_changes: int = 0
    wire: dict = field(default_factory=dict)
    stuck_after_song: int = 0
    late_dropped: int = 0
    cancelled: int = 0
    unheld_offs: int = 0
    input_ignored: int = 0
    model_errors: int = 0
    rss_kib: list = field(default_factory=list)
    rss_growth_pct: float = 0.0

    @property
    def ok(self) -> bool:
        w = self.wire
        return (w.get("stuck_at_end", 1) == 0 and w.get("unmatched_offs", 1) == 0 and self.stuck_after_song == 0
                and w.get("time_reversals", 1) == 0)


def performer_events(rng: random.Random, start_ns: int, seconds: float, low: int, high: int) -> list:
    """Seeded random performer input for ``seconds`` from ``start_ns``: (ts_ns, bytes)."""
    out: list[tuple[int, bytes]] = []
    t = start_ns
    end = start_ns + int(seconds * NS_PER_S)
    while t < end:
        kind = rng.random()
        if kind < 0.45:  # a phrase of single notes
            for _ in range(rng.randint(2, 12)):
                p, d = rng.randint(low, high), rng.randint(60, 600) * 1_000_000
                out += [(t, bytes((0x90, p, rng.randint(30, 127)))), (t + d, bytes((0x80, p, 0)))]
                t += d + rng.randint(0, 150) * 1_000_000
        elif kind < 0.55:  # a chord, released together (velocity-0 note-ons as offs)
            ps = rng.sample(range(low, high + 1), 3)
            d = rng.randint(200, 1500) * 1_000_000
            out += [(t, bytes((0x90, p, 90))) for p in ps] + [(t + d, bytes((0x90, p, 0))) for p in ps]
            t += d
        elif kind < 0.65:  # controllers: mod wheel sweeps, sustain
            for _ in range(rng.randint(4, 30)):
                out.append((t, bytes((0xB0, rng.choice((1, 64, 74)), rng.randrange(128)))))
                t += rng.randint(5, 40) * 1_000_000
        elif kind < 0.72:  # garbage: random bytes, truncated and stray messages, system bytes
            for _ in range(rng.randint(1, 20)):
                out.append((t, bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))))
                t += rng.randint(0, 20) * 1_000_000
        elif kind < 0.76:  # notes on another channel, and a key whose note-off never comes
            p = rng.randint(low, high)
            out.append((t, bytes((0x90 | rng.randrange(1, 16), p, 80))))
            if rng.random() < 0.5:
                out.append((t + 300_000_000, bytes((0x80 | rng.randrange(1, 16), p, 0))))
            t += 100_000_000
        else:  # rest: the partner's turn
            t += rng.randint(500, 4000) * 1_000_000
    return [(ts, d) for ts, d in out if ts < end]


def play_segment(song, models, setlist, rng, start_ns, seconds, sched, result) -> int:
    """One song for ``seconds`` of virtual time from ``start_ns``; returns the ns at which it stopped."""
    spb = models.steps_per_beat
    clock = InternalClock(song.tempo_bpm, spb, start_ns)
    events = performer_events(rng, start_ns, seconds, *song.pitch_range)
    result.input_events += len(events)
    source = ScriptedInput(events, start_ns=start_ns)
    sched._now_fn = source.now_ns
    sink = EchoGuardSink(sched, int(setlist.echo_guard_ms * 1e6))
    modes = build_modes(song, models, clock, sink, rng.randrange(1 << 30), now_fn=source.now_ns)
    bar = song.steps_per_bar(spb)
    engine = Engine(modes, clock=clock, sink=sink, initial=rng.choice(MODES), trigger_cc=song.trigger_cc,
                    echo_guard=sink, steps_per_bar=bar)
    plain_on_step = engine.on_step

    def on_step(step: int) -> None:
        if step % bar == 0:
            if rng.random() < 0.3:
                engine.request_mode(rng.choice(MODES))
            if rng.random() < 0.05:
                engine.request_tempo(rng.choice((60, 90, 120, 150, 180, 200)))
                result.tempo_changes += 1
        plain_on_step(step)

    engine.on_step = on_step
    end_ns = start_ns + int(seconds * NS_PER_S)
    steps = run_loop(engine, clock, source, lookahead_ns=int(setlist.lookahead_ms * 1e6),
                     should_stop=lambda: source.now_ns() >= end_ns, stop_when_done=False)
    stop_ns = max(source.now_ns(), end_ns)
    engine.stop(stop_ns)
    sched.flush(stop_ns + 10 * NS_PER_S)  # everything the song scheduled, including its last note-offs
    result.steps += steps
    result.mode_switches += len(engine.switches)
    result.input_ignored += engine.input_stats.ignored
    result.model_errors += sum(m.stats.model_errors for m in modes.values())
    return stop_ns + 10 * NS_PER_S


def run(minutes: float, seed: int = 1, segment_minutes: float = 1.0, setlists: list[Path] | None = None,
        log=print) -> SoakResult:
    paths = setlists or sorted((REPO / "setlists").glob("*.toml"))
    songs = []
    cache: dict = {}
    for path in paths:
        sl = load_setlist(path)
        songs += [(sl, song, SongModels.load(song, sl.path.parent, "cpu", cache)) for song in sl.songs]
    rng = random.Random(seed)
    result = SoakResult(virtual_minutes=minutes)
    wire = StreamingWire()
    sched = VirtualScheduler(late_tolerance_ns=2_000_000)
    sched.sent = wire  # streamed and checked, not kept
    t0 = time.perf_counter()
    now_ns, played_s, i = 0, 0.0, 0
    while played_s < minutes * 60:
        sl, song, models = songs[i % len(songs)]
        seconds = min(segment_minutes * 60, minutes * 60 - played_s)
        sched.late_tolerance_ns = int(sl.late_tolerance_ms * 1e6)
        now_ns = play_segment(song, models, sl, rng, now_ns, seconds, sched, result)
        played_s += seconds
        i += 1
        if wire.sounding:
            result.stuck_after_song += len(wire.sounding)
            log(f"  STUCK after {song.title!r}: {sorted(wire.sounding)}")
        gc.collect()
        result.rss_kib.append(rss_kib() or 0)
        log(f"  {played_s / 60:6.1f} min  {song.title[:28]:<28} wire {wire.messages:>8} msgs  "
            f"RSS {result.rss_kib[-1] / 1024:7.1f} MiB")
    sched.close(now_ns)
    result.songs_played = i
    result.wall_s = time.perf_counter() - t0
    result.wire = {"messages": wire.messages, "note_ons": wire.note_ons, "note_offs": wire.note_offs,
                   "unmatched_offs": wire.unmatched_offs, "stuck_at_end": len(wire.sounding),
                   "time_reversals": wire.time_reversals, "longest_note_ms": wire.longest_note_ns / 1e6}
    result.late_dropped, result.cancelled = sched.stats.late_dropped, sched.stats.cancelled
    result.unheld_offs = sched.stats.unheld_offs
    samples = result.rss_kib[1:] if len(result.rss_kib) > 2 else result.rss_kib
    k = max(1, len(samples) // 10)
    first, last = sum(samples[:k]) / k, sum(samples[-k:]) / k
    result.rss_growth_pct = 100.0 * (last - first) / first
    return result


def format_result(r: SoakResult) -> str:
    w = r.wire
    return "\n".join([
        f"virtual soak: {r.virtual_minutes:g} min of music in {r.wall_s:.1f} s wall ({r.songs_played} song segments, "
        f"{r.steps} steps, {r.input_events} performer events, {r.mode_switches} mode switches, "
        f"{r.tempo_changes} tempo changes)",
        f"wire: {w['messages']} messages, {w['note_ons']} note-ons, {w['note_offs']} note-offs, "
        f"{w['stuck_at_end']} stuck at the end, {r.stuck_after_song} sounding after a song, "
        f"{w['unmatched_offs']} note-offs without note-on, longest note {w['longest_note_ms']:.0f} ms",
        f"scheduler: {r.late_dropped} dropped as late, {r.cancelled} cancelled, {r.unheld_offs} redundant "
        f"note-offs not sent; engine: {r.input_ignored} input messages ignored, {r.model_errors} model errors",
        f"RSS: first 10 % {r.rss_kib[1 if len(r.rss_kib) > 2 else 0] / 1024:.1f} MiB, last {r.rss_kib[-1] / 1024:.1f} MiB, "
        f"growth {r.rss_growth_pct:+.2f} % (mean of last 10 % of samples over first 10 %)",
        "RESULT: " + ("PASS" if r.ok else "FAIL"),
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="virtual minutes of music (default 60)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--segment-minutes", type=float, default=1.0, help="virtual minutes per song before the next")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    r = run(args.minutes, args.seed, args.segment_minutes)
    print(format_result(r))
    if args.json:
        args.json.write_text(json.dumps(asdict(r), indent=2))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
