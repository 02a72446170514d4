"""MIDI clock out through JACK, counted by an outside client: can a drum machine follow liveperf?

    python -m bench.clock_out_jack --minutes 5 --busy          # the issue's run: 5 minutes, one core kept busy
    python -m bench.clock_out_jack --minutes 0.2               # what tests/timing/test_clock_out_jack.py runs

A private synchronous JACK dummy server (48 kHz, 256 frames; synchronous so the counting client never misses a
cycle of its own, see tests/conftest.py ``jack_server_sync``) is started. liveperf plays a two-song setlist with
``send_clock = true`` as its own process (harmonize, no notes: only the clock matters here); every ``--change-s``
seconds the performer sends a Song Select for the other song (116 and 137 BPM), which liveperf plays
from the next bar line; at the end liveperf gets SIGTERM. The wire monitor (tests/wire_monitor.py, its own JACK
client) records every message, and a compiled listener (tests/frame_listener.py) stamps each with its JACK frame.

Figures: Start / Stop / tick counts on the wire, against what liveperf's report says the songs' length calls for
(24 ticks per quarter note of every song played, ``clock_out.ticks_expected``), and the tick spacing per song in
JACK frames (median and extremes, ms): what a drum machine on the same JACK graph hears. ``--busy`` keeps one core busy (``python -c "while True: pass"``) during the run. Exit 1 if
a tick is missing or extra, or there is more than one Start or Stop.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.proc import busy_core, stop_busy  # noqa: E402
from frame_listener import FrameListener  # noqa: E402
from jack_server import jack_connect, start_jack_server, use_server  # noqa: E402
from wire_monitor import LivePlay  # noqa: E402

TEMPOS = (116, 137)
SETLIST = f"""
[show]
lookahead_ms = 8
send_clock = true
stage_view = false
[show.osc]
enabled = false
[[song]]
title = "A"
tempo_bpm = {TEMPOS[0]}
key = "E minor"
mode = "harmonize"
[[song]]
title = "B"
tempo_bpm = {TEMPOS[1]}
key = "G major"
mode = "harmonize"
"""


def run(minutes: float, change_s: float = 20.0, busy: bool = False, backend: str = "jack", log=print) -> dict:
    backend = "jack-native" if backend == "jack" else backend  # the default on JACK, by its name in reports
    server_done = use_server(start_jack_server(period=256, sync=True))
    tmp = Path(tempfile.mkdtemp(prefix="liveperf-clockout-"))
    seconds = minutes * 60
    burner = busy_core(busy)
    play = listener = None
    changes = 0
    try:
        play = LivePlay(tmp, SETLIST, "lpclk", duration_s=seconds + 60, backend=backend)
        listener = FrameListener()
        jack_connect("lpclk:out" if backend == "jack-native" else "lpclk-out:out", "test-clock:in")
        t0 = time.monotonic()
        song = 0
        while (left := seconds - (time.monotonic() - t0)) > 0:
            time.sleep(min(change_s, left))
            if time.monotonic() - t0 < seconds and play.proc.poll() is None:
                song = 1 - song
                play.send((0xF3, song))  # Song Select: song ``song`` (0-based) at the next bar line
                changes += 1
        crashed = play.proc.poll() is not None
        play.proc.send_signal(signal.SIGTERM)
        code, out, report = play.finish(timeout_s=30)
    finally:
        stop_busy(burner)
        if listener is not None:
            listener.close()
        if play is not None:
            play.kill()
        server_done()
    events = play.monitor.snapshot()
    system = [(t, d[0]) for t, d in events if d and d[0] >= 0xF0]
    ticks = np.array([t for t, b in system if b == 0xF8], dtype=np.int64)
    frames = np.array([f for f, d in (listener.events["clock"] if listener else []) if d == b"\xf8"], np.int64)
    gaps_ms = np.diff(frames) * 1e3 / listener.sample_rate if frames.size > 1 else np.zeros(0)
    spacing = {}
    nominal = np.array([60e3 / bpm / 24 for bpm in TEMPOS])
    nearest = np.argmin(np.abs(gaps_ms[:, None] - nominal[None, :]), axis=1) if gaps_ms.size else np.zeros(0, int)
    for i, bpm in enumerate(TEMPOS):  # each gap counts for the song whose tick length it is nearest
        mine = gaps_ms[nearest == i]
        if mine.size:
            spacing[bpm] = {"nominal_ms": round(float(nominal[i]), 3), "median_ms": float(np.median(mine)),
                            "min_ms": float(mine.min()), "max_ms": float(mine.max()), "n": int(mine.size)}
    clock_out = (report or {}).get("clock_out") or {}
    return {
        "minutes": minutes, "busy_core": busy, "backend": backend, "exit_code": code, "crashed": crashed,
        "song_changes_asked": changes, "songs_played": len((report or {}).get("songs", [])),
        "wire": {"starts": sum(b == 0xFA for _, b in system), "stops": sum(b == 0xFC for _, b in system),
                 "ticks": int(ticks.size), "after_stop": sum(1 for t, b in system if b == 0xF8 and any(
                     b2 == 0xFC and t2 < t for t2, b2 in system))},
        "liveperf": clock_out, "tick_spacing": spacing, "frame_listener_ticks": int(frames.size),
        "frame_listener_jumps": listener.jumps if listener else None, "late_dropped": report and report["late_dropped"],
        "output_tail": out[-800:],
    }


def ok(r: dict) -> bool:
    w, c = r["wire"], r["liveperf"]
    return (not r["crashed"] and r["exit_code"] == 130 and w["starts"] == 1 and w["stops"] == 1
            and w["after_stop"] == 0 and bool(c) and w["ticks"] == c["ticks_expected"] == c["ticks_sent"])


def format_result(r: dict) -> str:
    w, c = r["wire"], r["liveperf"]
    lines = [
        f"MIDI clock out through JACK ({r['backend']}): {r['minutes']:g} min, one core busy: {r['busy_core']}; exit "
        f"code {r['exit_code']} (130 = SIGTERM at the end); {r['songs_played']} songs played "
        f"({r['song_changes_asked']} Song Selects)",
        f"outside client heard: {w['starts']} Start, {w['stops']} Stop, {w['ticks']} ticks ({w['after_stop']} after "
        f"Stop)",
        f"liveperf: {c.get('ticks_sent')} ticks sent, {c.get('ticks_expected')} for the songs' length (24 per "
        f"quarter), {c.get('starts')} Start, {c.get('stops')} Stop",
    ]
    lines.append(f"tick spacing in JACK frames ({r['frame_listener_ticks']} ticks heard by the frame listener, "
                 f"{r['frame_listener_jumps']} cycles it missed):")
    for bpm, s in r["tick_spacing"].items():
        lines.append(f"  {bpm} BPM: tick every {s['median_ms']:.3f} ms (median; nominal {s['nominal_ms']:.3f}), "
                     f"min {s['min_ms']:.3f}, max {s['max_ms']:.3f} ms over {s['n']} gaps")
    lines.append("RESULT: " + ("PASS" if ok(r) else "FAIL"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--change-s", type=float, default=20.0, help="a song change this often (seconds)")
    ap.add_argument("--busy", action="store_true", help="keep one core busy during the run")
    ap.add_argument("--backend", default="jack", choices=("jack", "jack-native", "jack-rtmidi"))
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    r = run(args.minutes, args.change_s, args.busy, args.backend)
    print(format_result(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2, default=str))
    return 0 if ok(r) else 1


if __name__ == "__main__":
    sys.exit(main())
