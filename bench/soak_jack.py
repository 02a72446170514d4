"""Real-time soak through JACK: `liveperf play` for minutes at 180 BPM with dense input, watched on the wire.

    flock /tmp/liveperf-quiet.lock python -m bench.soak_jack --minutes 10     # the long form
    python -m bench.soak_jack --minutes 10 --busy --async --band               # JACK's default mode, under load
    python -m bench.soak_jack --minutes 10 --busy --async --rt-jack --band     # the same, real-time: as on stage
    python -m bench.soak_jack --minutes 0.25                                  # what tests/show/test_soak_jack.py runs

With ``--band`` the song has two more partners beside its own (a comp on channel 3, a call-and-response lead on
4), every voice of every partner checked on the wire. A private JACK dummy server (48 kHz, 64 frames = 1.3 ms) is started. liveperf plays one song at 180 BPM as its own
process; a performer client plays into its input (as bench/timing_jack.py: a bar of 16ths, then two bars of mod
wheel every 16th), switches the mode every 4 bars through the song's mode CC (all five modes in turn) and sends a
little garbage; the wire monitor (tests/wire_monitor.py, its own JACK client) records every output message.
Resident memory of the liveperf process is sampled every second; growth is measured after a warm-up
(``--warmup-s``): mean of the last 10 % of samples over the mean of the first 10 %. At the end liveperf gets
SIGTERM, so every note-off of the end is checked too.

``--async`` runs JACK's default asynchronous server (a client late in its cycle loses that cycle's MIDI: what the
port's repairs are for; the default is a synchronous server, where none is lost), ``--busy`` keeps one core busy.

Figures: stuck notes, note-offs without note-on (beyond the port's own repair note-offs), duplicate note-ons and
notes longer than the note-length cap (``max_note_beats``, 4 beats = 1.33 s, plus ``CAP_SLACK_MS``) on the wire,
the port's counters of late cycles and repairs. Two outside clients listen: the wire monitor (python-rtmidi, as a
synth would; stamped when its Python thread reads, so a busy core delays its stamps by up to hundreds of ms) and
a frame listener (a compiled jack-native client: every message stamped at the JACK frame it arrived on), whose
stamps give the note lengths. The two streams are compared (``wire_monitor.compare_witnesses``): on JACK's
asynchronous server a listener late in its cycle loses that cycle's MIDI, so a note-off one listener lost shows
there as a duplicate note-on the other, which heard the note-off, explains; only duplicates neither explains fail
the run (a note-on sent twice is heard twice). Messages sent and dropped as late and send time
minus due time (p50/p99/max, liveperf's own report), RSS growth. Exit 1 if a note stuck, liveperf crashed, or RSS grew
more than 5 %.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.proc import busy_core, rss_kib, stop_busy  # noqa: E402
from bench.grid import on_grid  # noqa: E402
from jack_server import start_jack_server, use_server  # noqa: E402
from jack_server import jack_connect  # noqa: E402
from liveperf.io.jack_native import JackMidiClient  # noqa: E402
from wire_monitor import LivePlay, check_stream, compare_witnesses  # noqa: E402

TEMPO = 180
CAP_NS = 4 * 60_000_000_000 // TEMPO  # max_note_beats (default 4) at the tempo
CAP_SLACK_MS = 10.0  # a note ends on a step's frame; the monitor stamps it when its Python thread reads it
STEP_NS = int(60e9 / (TEMPO * 4))
MODE_CC = 20
SETLIST = f"""
[show]
lookahead_ms = 8
late_tolerance_ms = 2
stage_view = false
[show.osc]
enabled = false
[[song]]
title = "Soak"
tempo_bpm = {TEMPO}
key = "E minor"
pitch_range = [52, 84]
silence_steps = 2
response_bars = 1
temperature = 0.9
mode_cc = {MODE_CC}
channel = 2
seed = 1
"""
MODE_VALUES = (0, 30, 60, 90, 120)  # mode_cc value -> call_response, duet, harmonize, phrase, comp (value * 5 // 128)
# --band: two more partners beside the song's own (which still switches mode): a comp and a call-and-response lead
BAND = """
[[song.partner]]
name = "comp"
mode = "comp"
channel = 3
[[song.partner]]
name = "lead"
mode = "call_response"
pitch_range = [67, 88]
channel = 4
"""


def performer_events(seconds: float, seed: int = 1) -> list[tuple[int, bytes]]:
    """(offset ns, message): 3-bar cycles of 16 sixteenths then 32 steps of CC1, a mode change every 4 bars,
    a few garbage events per cycle."""
    rng = random.Random(seed)
    out, step, scale = [], 0, [64, 66, 67, 69, 71, 72, 74, 76]
    while step * STEP_NS < seconds * 1e9:
        for k in range(16):
            p = scale[(k * 3 + step // 48) % len(scale)]
            out.append(((step + k) * STEP_NS, bytes((0x90, p, 70 + k))))
            out.append(((step + k) * STEP_NS + int(STEP_NS * 0.8), bytes((0x80, p, 0))))
        for k in range(16, 48):
            out.append(((step + k) * STEP_NS, bytes((0xB0, 1, (k * 5) % 128))))
        for _ in range(3):
            out.append(((step + rng.randrange(48)) * STEP_NS + 1000, bytes(rng.randrange(256) for _ in range(2))))
        step += 48
    for bar in range(0, step // 16, 4):
        out.append((bar * 16 * STEP_NS - 3 * STEP_NS, bytes((0xB0, MODE_CC, MODE_VALUES[(bar // 4) % len(MODE_VALUES)]))))
    return sorted((t, m) for t, m in out if t >= 0)


def run(minutes: float, warmup_s: float = 30.0, log=print, band: bool = False, busy: bool = False,
        sync: bool = True, streams: Path | None = None, rt_jack: bool = False) -> dict:
    # Synchronous (the default): no client misses a cycle (and its MIDI) on a busy machine (tests/conftest.py
    # jack_server_sync); ``sync=False``: JACK's default, where a late client's cycle is lost and the port repairs it.
    server_done = use_server(start_jack_server(period=64, sync=sync, realtime=rt_jack))
    hog = busy_core(busy)
    tmp = Path(tempfile.mkdtemp(prefix="liveperf-soak-"))
    seconds = minutes * 60
    rss: list[tuple[float, int]] = []
    stop = threading.Event()
    play = None
    listener: dict[str, int] = {}  # the frame listener's own counters, read before it closes
    try:
        play = LivePlay(tmp, SETLIST + (BAND if band else ""), "lpsoak", duration_s=seconds + 60)
        pid = play.proc.pid
        frames = JackMidiClient.open("lpsoak-frames", inputs=True, outputs=False)
        jack_connect(f"lpsoak{'-out' if play.backend == 'jack-rtmidi' else ''}:out", frames.in_name)
        heard_frames: list[tuple[int, int, bytes]] = []  # (JACK frame, stamp ns, bytes)
        heard_all = threading.Event()  # set once liveperf has exited: its last note-offs are in

        def drain_frames() -> None:  # (JACK frame, stamp on the listener's frame clock, bytes)
            while not heard_all.wait(0.05):
                heard_frames.extend(frames.read_frames())
            time.sleep(0.3)
            heard_frames.extend(frames.read_frames())

        drainer = threading.Thread(target=drain_frames, daemon=True)
        drainer.start()

        def sample_rss() -> None:
            t0 = time.monotonic()
            while not stop.is_set() and play.proc.poll() is None:
                kib = rss_kib(pid)
                if kib:
                    rss.append((time.monotonic() - t0, kib))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        play.wait_started()  # models load after the ports open: input before that would go unheard
        t0 = time.monotonic_ns()
        next_log = 60.0
        for off, msg in performer_events(seconds):
            while (left := t0 + off - time.monotonic_ns()) > 0:
                time.sleep(min(left / 1e9, 0.002))
            if play.proc.poll() is not None:
                break
            play.send(msg)
            if off / 1e9 >= next_log:
                log(f"  {off / 60e9:5.1f} min: {play.monitor.check().line()}, RSS {rss[-1][1] / 1024 if rss else 0:.1f} MiB")
                next_log += 60
        crashed = play.proc.poll() is not None
        stop.set()  # memory is measured while playing, not while the process writes its report and exits
        time.sleep(0.5)
        play.proc.send_signal(signal.SIGTERM)
        code, out, report = play.finish(timeout_s=30)
        stop.set()
        sampler.join(2)
        heard_all.set()
        drainer.join(2)
        listener = frames.counters()  # the frame listener's own cycles: did it miss any (then it lost their MIDI)?
        frames.close()
    finally:
        stop.set()
        if play is not None:
            play.kill()
        stop_busy(hog)
        server_done()
    summary = play.monitor.check()
    heard = [(ts, data) for _, ts, data in heard_frames]
    exact = check_stream(heard)
    witnesses = compare_witnesses(play.monitor.snapshot(), heard)
    if streams is not None:  # both listeners' streams, for a closer look at what each heard
        streams.write_text(json.dumps({"monitor": [(ts, d.hex()) for ts, d in play.monitor.snapshot()],
                                       "frames": [(f, ts, d.hex()) for f, ts, d in heard_frames]}))
    port = (report or {}).get("port") or {}
    grid = grid_and_reactions(report) if report else None
    after = [k for t, k in rss if t >= warmup_s] or [k for _, k in rss]
    n = max(1, len(after) // 10)
    first, last = (sum(after[:n]) / n, sum(after[-n:]) / n) if after else (float("nan"), float("nan"))
    growth = 100.0 * (last - first) / first
    return {
        "minutes": minutes, "tempo_bpm": TEMPO, "band": band, "busy_core": busy, "sync_server": sync,
        "realtime_server": rt_jack,
        "exit_code": code, "crashed": crashed,
        "wire": {"messages": summary.messages, "note_ons": summary.note_ons, "note_offs": summary.note_offs,
                 "stuck": summary.stuck, "unmatched_offs": summary.unmatched_offs,
                 "duplicate_ons": summary.duplicate_ons, "longest_note_ms": summary.longest_note_ns / 1e6,
                 "over_cap": sum(1 for n in summary.note_lengths_ns if n > CAP_NS + CAP_SLACK_MS * 1e6),
                 "cap_ms": CAP_NS / 1e6},
        "frames": {"note_ons": exact.note_ons, "note_offs": exact.note_offs, "stuck": exact.stuck,
                   "duplicate_ons": exact.duplicate_ons, "longest_note_ms": exact.longest_note_ns / 1e6,
                   "over_cap": sum(1 for n in exact.note_lengths_ns if n > CAP_NS + CAP_SLACK_MS * 1e6),
                   "own_cycles": listener.get("cycles"), "own_frame_jumps": listener.get("frame_jumps")},
        # The two listeners side by side: note messages only one of them heard (a listener late in a cycle of
        # JACK's asynchronous server loses that cycle's MIDI) and how many of each one's duplicates the other
        # explains (it heard the note-off between them that this one lost).
        "witnesses": {"only_monitor": witnesses.only_first, "only_frames": witnesses.only_second,
                      "monitor_duplicates_explained": witnesses.first_explained,
                      "frames_duplicates_explained": witnesses.second_explained,
                      "unexplained_duplicates": witnesses.unexplained},
        "backend": report and report["backend"],
        # the port's own counters (jack-native): cycles JACK skipped or the port ran late in, and the repairs
        "port": {k: port.get(k) for k in ("cycles", "frame_jumps", "resent_offs", "peer_drops",
                                          "missed_offs", "restruck", "hushed", "late", "late_dropped")},
        "repair_offs": sum(int(port.get(k, 0)) for k in ("resent_offs", "missed_offs", "restruck")),
        "send_minus_due_us": report and report["timing_us"],
        # the same, the notes due on the grid apart from the reactions (due when computed: a duet's correction, a
        # harmony), and which of them were dropped as late
        "grid_and_reactions": grid,
        "sent": report and report["sent"], "late_dropped": report and report["late_dropped"],
        "send_errors": report and report["send_errors"], "scheduling": report and report["scheduling"],
        "switches": report and len(report["songs"][0]["switches"]),
        "rss_mib": {"first": after[0] / 1024 if after else None, "last": after[-1] / 1024 if after else None,
                    "max": max(after) / 1024 if after else None, "growth_pct": float(growth),
                    "samples": len(after), "warmup_s": warmup_s},
        "output_tail": out[-1200:],
    }


def grid_and_reactions(report: dict) -> dict:
    """Send minus due (µs) and the messages dropped as late, for the notes due on the song's grid and for the
    reactions apart (``bench.timing_jack.on_grid``)."""
    song = report["songs"][0]
    due = np.asarray(report.get("due_ns", []), dtype=np.int64)
    err = np.asarray(report["errors_ns"], dtype=np.int64)
    grid = on_grid(due, song["start_ns"], song["step_ns"])
    late = on_grid(report.get("late_due_ns", []), song["start_ns"], song["step_ns"])
    out = {}
    for name, sel, dropped in (("grid", grid, int(late.sum())), ("reactions", ~grid, int((~late).sum()))):
        e = err[sel] / 1e3
        out[name] = {"sent": int(e.size), "late_dropped": dropped,
                     "p50_us": float(np.median(e)) if e.size else None,
                     "p99_us": float(np.percentile(e, 99)) if e.size else None,
                     "max_us": float(e.max()) if e.size else None}
    return out


def ok(r: dict) -> bool:
    w, f = r["wire"], r["frames"]
    return (not r["crashed"] and r["exit_code"] == 130 and w["stuck"] == [] == f["stuck"]
            and w["unmatched_offs"] <= r["repair_offs"] and r["witnesses"]["unexplained_duplicates"] == 0
            and f["over_cap"] == 0 and r["rss_mib"]["growth_pct"] <= 5.0)


def format_result(r: dict) -> str:
    w, g, m = r["wire"], r["send_minus_due_us"] or {}, r["rss_mib"]
    return "\n".join([
        f"JACK soak{' (three partners)' if r.get('band') else ''}: {r['minutes']:g} min at {r['tempo_bpm']} BPM on "
        f"{r['backend']}, {'synchronous' if r['sync_server'] else 'asynchronous'}"
        f"{' real-time' if r.get('realtime_server') else ''} server, one core busy: "
        f"{r['busy_core']}; exit code {r['exit_code']} (130 = SIGTERM at the end), crashed: {r['crashed']}; "
        f"{r['switches']} mode switches",
        f"wire: {w['messages']} messages, {w['note_ons']} note-ons, {w['note_offs']} note-offs, {len(w['stuck'])} stuck, "
        f"{w['unmatched_offs']} note-offs without note-on ({r['repair_offs']} repair note-offs sent), "
        f"{w['duplicate_ons']} duplicate note-ons, longest note {w['longest_note_ms']:.0f} ms, {w['over_cap']} longer "
        f"than the cap ({w['cap_ms']:.0f} ms + {CAP_SLACK_MS:g}; the monitor's Python stamps)",
        f"frame listener (stamps at JACK frames): {r['frames']['note_ons']} note-ons, {len(r['frames']['stuck'])} stuck, "
        f"{r['frames']['duplicate_ons']} duplicate note-ons, longest note {r['frames']['longest_note_ms']:.0f} ms, "
        f"{r['frames']['over_cap']} longer than the cap; its own client: {r['frames'].get('own_frame_jumps')} frame "
        f"jumps in {r['frames'].get('own_cycles')} cycles (cycles it was not run on time: their MIDI it may have lost)",
        "the two listeners compared: {only_monitor} note messages heard by the monitor only, {only_frames} by the "
        "frame listener only; duplicates explained by a note-off the other heard: monitor {monitor_duplicates_explained}"
        " of {md}, frame listener {frames_duplicates_explained} of {fd}; unexplained {unexplained_duplicates}".format(
            **r["witnesses"], md=w["duplicate_ons"], fd=r["frames"]["duplicate_ons"]),
        f"port: {', '.join(f'{k} {v}' for k, v in r['port'].items() if v is not None)}",
        f"liveperf: {r['sent']} sent, {r['late_dropped']} dropped as late, {r['send_errors']} send errors; "
        f"scheduling: {r['scheduling']}",
        f"send minus due (liveperf's report): p50 {g['p50']:.0f} µs, p99 {g['p99']:.0f} µs, max {g['max']:.0f} µs "
        f"(n={g['n']}; later than the tolerance is dropped, never sent)" if g else "send minus due: nothing sent",
        *([("send minus due, notes due on the grid: {grid[sent]} sent, {grid[late_dropped]} dropped as late, p50 "
            "{grid[p50_us]:.0f} µs, p99 {grid[p99_us]:.0f} µs, max {grid[max_us]:.0f} µs; reactions (due when computed): "
            "{reactions[sent]} sent, {reactions[late_dropped]} dropped as late, p50 {reactions[p50_us]:.0f} µs, "
            "p99 {reactions[p99_us]:.0f} µs").format(**r["grid_and_reactions"])]
          if r.get("grid_and_reactions") and r["grid_and_reactions"]["grid"]["sent"]
          and r["grid_and_reactions"]["reactions"]["sent"] else []),
        f"RSS after {m['warmup_s']:g} s warm-up: first {m['first']:.1f} MiB, last {m['last']:.1f} MiB, max "
        f"{m['max']:.1f} MiB, growth {m['growth_pct']:+.2f} % ({m['samples']} samples)",
        "RESULT: " + ("PASS" if ok(r) else "FAIL"),
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, default=30.0, help="RSS growth is measured after this (default 30)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--streams", type=Path, help="write both listeners' streams here (JSON: monitor [ns, hex], "
                    "frames [JACK frame, ns, hex])")
    ap.add_argument("--band", action="store_true", help="three partners: the song's own, a comp and a lead")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a second process")
    ap.add_argument("--async", dest="sync", action="store_false",
                    help="JACK's default asynchronous server (a late client loses its cycle's MIDI)")
    ap.add_argument("--rt-jack", action="store_true",
                    help="run the JACK server real-time (jackd -R -P 70, as on stage; needs rtprio or root): its "
                         "clients' process threads get SCHED_FIFO, so a busy core does not hold them up")
    args = ap.parse_args(argv)
    r = run(args.minutes, args.warmup_s, band=args.band, busy=args.busy, sync=args.sync,
            streams=args.streams, rt_jack=args.rt_jack)
    print(format_result(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2, default=str))
    return 0 if ok(r) else 1


if __name__ == "__main__":
    sys.exit(main())
