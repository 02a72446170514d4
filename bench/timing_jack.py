"""Grid timing through a real JACK server: `liveperf play` in its own process at 180 BPM with dense input.

    python -m bench.timing_jack [--mode M] [--minutes N] [--busy] [--rt-jack] [--backend jack|jack-rtmidi] [--period F]

A JACK dummy server (``--period``, default 64 frames at 48 kHz = 1.3 ms) is started for the run. The bench plays the performer
from its own JACK client into liveperf's input (a bar of 16ths, then two bars of rest with a mod-wheel CC every 16th,
repeated), and listens on liveperf's output from a third client. From liveperf's own report it takes, for every
message sent, *send time minus due time*; from the listener, *arrival minus due time* (due = the nearest step of the
song's grid, both on CLOCK_MONOTONIC); and from a second listener, *arrival frame minus due*: it keeps the JACK
frame each message arrived on (``liveperf.io.jack_native``), so the listener's own Python delay is not in it; with
``--backend jack`` (the default, jack-native) that frame is put on liveperf's own frame clock (its report gives the
JACK frame of its clock's origin), so the figure is exact whatever the dummy server's frames did against the wall clock. Resident memory of the liveperf process is sampled every second.
Optionally a second process keeps one core busy (``busy=True``).

Grid error is measured on the messages due on a step of the grid (``grid_*``): liveperf's report gives each
message's due time. The rest are reactions, due when the engine computed them (the duet's correction when the
performer's note of the step arrives, at the end of its listening window): for them send minus due is how long
they took to go out (a JACK period or so), not a grid error, and they are printed apart (``reaction_*``). The
frame listener's arrivals are split the same way: an arrival on the frame a grid message was sent on is that
grid message's, and its error is taken against the nearest step. (Before 2026-12-07 the bench pooled the two, so
the duet's corrections, 14-42 % of its messages, made its "grid" p99 a JACK period.)

``mode`` picks the song's mode: ``call_response`` (the main figure), ``duet`` (a bass voice every step beside the
performer) or ``phrase`` (GAN phrases, best of 8, one every 2 bars). All three play on the grid, so *due* is the
nearest grid step. ``harmonize`` is not measured here: it answers each note-on at once, off the grid, so "minus the
nearest step" would measure where the performer played, not liveperf; its figure is the reaction latency
(``bench.reaction_jack``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rtmidi

from bench.grid import on_grid
from bench.proc import busy_core, rss_kib, stop_busy
from liveperf.io.jack_native import JackMidiClient
from tests.jack_server import jack_connect, jack_ports, start_jack_server

TEMPO = 180
FRAME_MATCH_NS = 21_000  # one frame at 48 kHz: an arrival on the frame a message was sent on is that message
SETLIST = f"""
[show]
lookahead_ms = 8
late_tolerance_ms = 2
[[song]]
title = "Timing bench"
tempo_bpm = {TEMPO}
key = "E minor"
pitch_range = [52, 84]
silence_steps = 2
response_bars = 1
temperature = 0.9
seed = 1
"""


GRID_MODES = ("call_response", "duet", "phrase")
MODE_FIELDS = {  # replaces the song's mode-specific lines of SETLIST
    "call_response": "",
    "duet": 'mode = "duet"\nvoice = "bass"\npitch_range = [36, 64]\n',
    "phrase": 'mode = "phrase"\nphrase_model = "gan"\nphrase_every_bars = 2\ncandidates = 8\n',
}


def setlist_for(mode: str, lookahead_ms: float = 8.0) -> str:
    """The bench setlist with ``mode``'s fields (the song's range follows the voice) and ``[show] lookahead_ms``."""
    if mode not in GRID_MODES:
        raise ValueError(f"grid timing is measured for {', '.join(GRID_MODES)}; harmonize answers off the grid "
                         f"(see bench.reaction_jack)")
    text = SETLIST.replace('title = "Timing bench"', f'title = "Timing bench ({mode})"\n' + MODE_FIELDS[mode])
    if mode == "duet":
        text = text.replace("pitch_range = [52, 84]\n", "", 1)
    return text.replace("lookahead_ms = 8\n", f"lookahead_ms = {lookahead_ms:g}\n", 1)


def performer_events(seconds: float, step_ns: int) -> list[tuple[int, list[int]]]:
    """(offset ns, message): 3-bar cycles of 16 sixteenths then 32 steps of CC1 sweeps."""
    out, step, scale = [], 0, [64, 66, 67, 69, 71, 72, 74, 76]
    while step * step_ns < seconds * 1e9:
        for k in range(16):
            p = scale[(k * 3) % len(scale)]
            out.append(((step + k) * step_ns, [0x90, p, 70 + k]))
            out.append(((step + k) * step_ns + int(step_ns * 0.8), [0x80, p, 0]))
        for k in range(16, 48):
            out.append(((step + k) * step_ns, [0xB0, 1, (k * 5) % 128]))
        step += 48
    return out


def run(minutes: float, busy: bool = False, mode: str = "call_response", rt_jack: bool = False,
        backend: str = "jack", period: int = 64, lookahead_ms: float = 8.0) -> dict:
    backend = "jack-native" if backend == "jack" else backend  # the default on JACK, by its name in reports
    setlist = setlist_for(mode, lookahead_ms)
    server = start_jack_server(period=period, realtime=rt_jack)
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    os.environ["JACK_NO_START_SERVER"] = "1"
    hog = busy_core(busy)
    tmp = Path(tempfile.mkdtemp(prefix="liveperf-bench-"))
    (tmp / "set.toml").write_text(setlist)
    seconds = minutes * 60
    proc = subprocess.Popen([sys.executable, "-m", "liveperf.cli", "play", str(tmp / "set.toml"), "--backend", backend,
                             "--client-name", "lpb", "--record-dir", str(tmp / "rec"), "--duration", str(seconds + 2), "--report-json",
                             str(tmp / "report.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    arrivals: list[tuple[int, tuple]] = []
    frame_arrivals: list[tuple[int, int, bytes]] = []
    lp_in, lp_out = ("lpb:in", "lpb:out") if backend == "jack-native" else ("lpb-in:in", "lpb-out:out")
    rss: list[tuple[float, int]] = []
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while not {lp_in, lp_out} <= set(jack_ports()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("liveperf did not open its JACK ports:\n" + (proc.stdout.read() if proc.poll() is not None else ""))
            time.sleep(0.05)
        listener = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bench-listener")
        listener.open_virtual_port("in")
        performer = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-performer")
        performer.open_virtual_port("out")
        # A second listener stamps each arrival at its JACK frame (jack_native's compiled callback), not when a
        # Python thread picks it up: what a synth or recorder in the graph hears.
        framer = JackMidiClient.open("bench-frames", outputs=False)
        time.sleep(0.3)
        jack_connect(lp_out, "bench-listener:in")
        jack_connect(lp_out, framer.in_name)
        jack_connect("bench-performer:out", lp_in)

        def listen():
            while not stop.is_set():
                msg = listener.get_message()
                if msg is None:
                    time.sleep(0.0002)
                    continue
                arrivals.append((time.monotonic_ns(), tuple(msg[0])))

        def frames():
            while not stop.is_set():
                framer.wait(0.05)
                frame_arrivals.extend(framer.read_frames())

        def sample_rss():
            t0 = time.monotonic()
            while not stop.is_set() and proc.poll() is None:
                kib = rss_kib(proc.pid)
                if kib:
                    rss.append((time.monotonic() - t0, kib))
                stop.wait(1.0)

        threads = [threading.Thread(target=f, daemon=True) for f in (listen, frames, sample_rss)]
        for t in threads:
            t.start()
        step_ns = int(60e9 / (TEMPO * 4))
        t0 = time.monotonic_ns() + 200_000_000
        for off, msg in performer_events(seconds, step_ns):
            while True:
                left = t0 + off - time.monotonic_ns()
                if left <= 0:
                    break
                time.sleep(min(left / 1e9, 0.002))
            performer.send_message(msg)
        out, _ = proc.communicate(timeout=60)
        stop.set()
        for t in threads:
            t.join(2)
        listener.close_port()
        listener.delete()
        performer.close_port()
        performer.delete()
        tap_jumps = framer.counters()["frame_jumps"]
        framer.close()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        stop_busy(hog)
        server.stop()
    report = json.loads((tmp / "report.json").read_text())
    song = report["songs"][0]
    start_ns, song_step_ns = song["start_ns"], song["step_ns"]
    arr = []
    # The rtmidi listener's wall-clock pick-up only compares with due times on the wall clock: jack-native's due
    # times are on its frame clock (they part when the server slips), so there only the frame figure counts.
    for t, msg in arrivals if backend != "jack-native" else []:
        if msg[0] & 0xF0 in (0x80, 0x90):
            k = round((t - start_ns) / song_step_ns)
            arr.append((t - start_ns, t - (start_ns + int(k * song_step_ns))))
    send = np.asarray(report["errors_ns"], dtype=np.int64)
    # A message due on a step of the grid, or a reaction (due when the engine computed it: the duet's correction at
    # the end of its listening window, a harmony): for a reaction "send - due" is how long it took to go out, not a
    # grid error. liveperf's report gives each message's due time.
    due = np.asarray(report["due_ns"], dtype=np.int64)
    grid = on_grid(due, start_ns, song_step_ns)
    late_on_grid = int(on_grid(report["late_due_ns"], start_ns, song_step_ns).sum())
    # liveperf's own flag (the report's send line splits by it): a reaction was scheduled with a late tolerance.
    # Every reaction is off the grid; off the grid but not a reaction: a note-off at a note's own length, a cut.
    flags = np.asarray(report.get("reactions", []), dtype=bool)
    flag_check = ({"reactions": int(flags.sum()), "reactions_on_grid": int((flags & grid).sum()),
                   "off_grid_not_reactions": int((~flags & ~grid).sum())} if flags.size == grid.size else None)
    arr_frame, arr_frame_grid = [], []
    grid_sent = np.sort(due[grid] + send[grid])  # when the grid's messages went out, on the frame clock
    clock = report.get("port", {})
    sounding: set[tuple[int, int]] = set()
    for frame, t, msg in frame_arrivals:
        if len(msg) == 3 and msg[0] & 0xF0 in (0x80, 0x90):
            key, on = (msg[0] & 0x0F, msg[1]), msg[0] & 0xF0 == 0x90 and msg[2] > 0
            if not on and key not in sounding:
                continue  # the port's repeat of a note-off (jack_native_callback, "Repairs"): not a grid note
            (sounding.add if on else sounding.discard)(key)
            if "frame0" in clock:  # jack-native: the arrival's JACK frame on liveperf's own frame clock, exactly
                t = clock["base0_ns"] + ((frame - clock["frame0"]) & 0xFFFFFFFF) * 1_000_000_000 // clock["sample_rate"]
            k = round((t - start_ns) / song_step_ns)
            arr_frame.append(t - (start_ns + int(k * song_step_ns)))
            # a grid message's arrival (liveperf sent a grid message on this frame): its error against the grid
            i = np.searchsorted(grid_sent, t)
            if any(abs(int(grid_sent[j]) - t) <= FRAME_MATCH_NS for j in (i - 1, i) if 0 <= j < grid_sent.size):
                arr_frame_grid.append(arr_frame[-1])
    arrive = np.asarray([e for _, e in arr], dtype=np.int64)
    pct = lambda a: {"n": int(a.size), "p50_us": float(np.median(a) / 1e3) if a.size else None,  # noqa: E731
                     "p99_us": float(np.percentile(a, 99) / 1e3) if a.size else None,
                     "max_us": float(a.max() / 1e3) if a.size else None}
    rss_all = [k for _, k in rss]
    settle = [k for t, k in rss if t >= 10] or rss_all
    return {
        "minutes": minutes, "mode": mode, "tempo_bpm": TEMPO, "busy_core": busy, "lookahead_ms": lookahead_ms, "scheduling": report.get("scheduling"),
        "late_dropped": report["late_dropped"], "sent": report["sent"], "jack_period_frames": period,
        "backend": backend, "send_minus_due": pct(send), "arrival_minus_due": pct(arrive),
        "grid_send_minus_due": pct(send[grid]), "reaction_send_minus_due": pct(send[~grid]),
        "late_dropped_on_grid": late_on_grid, "report_reaction_flags": flag_check,
        # the grid's messages split by liveperf's own flag: scheduled ahead, and reactions due on a step (the duet's
        # answer to a performer note heard just before the step it answers on)
        "grid_ahead_send_minus_due": pct(send[grid & ~flags]) if flag_check else None,
        "grid_reaction_send_minus_due": pct(send[grid & flags]) if flag_check else None,
        "arrival_frame_minus_due": pct(np.asarray(arr_frame, dtype=np.int64)),
        "grid_arrival_frame_minus_due": pct(np.asarray(arr_frame_grid, dtype=np.int64)),
        # cycles the frame listener ran so late that it read a later cycle's frame (JACK's asynchronous mode after a
        # stall): each shifts what it heard in that cycle by whole periods, on the listener's side only
        "listener_frame_jumps": tap_jumps,
        "rss_mib": {"after_10s": settle[0] / 1024 if settle else None, "end": rss_all[-1] / 1024 if rss_all else None,
                    "growth_pct": (100 * (settle[-1] - settle[0]) / settle[0]) if len(settle) > 1 else None},
        "samples": {"send_ns": send.tolist(), "due_ns": due.tolist(), "reaction": flags.astype(int).tolist(),
                    "start_ns": start_ns, "step_ns": song_step_ns, "arrival": arr, "rss": rss},
        "liveperf_output_tail": out[-1500:],
    }


def print_result(tj: dict) -> None:
    for k in ("grid_send_minus_due", "grid_ahead_send_minus_due", "grid_reaction_send_minus_due",
              "grid_arrival_frame_minus_due", "reaction_send_minus_due", "send_minus_due", "arrival_minus_due",
              "arrival_frame_minus_due"):
        s = tj.get(k) or {"n": 0}
        if s["n"]:
            print(f"  {k:<29} p50 {s['p50_us']:8.1f} µs  p99 {s['p99_us']:8.1f} µs  max {s['max_us']:8.1f} µs"
                  f"  (n={s['n']})")
    print(f"  frame listener's cycles read late (their arrivals shift by whole periods): {tj['listener_frame_jumps']}")
    print(f"  scheduling: {tj['scheduling']}; dropped as late: {tj['late_dropped']} of {tj['sent'] + tj['late_dropped']}"
          f" ({tj['late_dropped_on_grid']} due on the grid, the rest reactions)")
    if tj.get("report_reaction_flags"):
        print(f"  the report's own reaction flags: {tj['report_reaction_flags']}")
    print(f"  resident memory: {tj['rss_mib']}")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=GRID_MODES, default="call_response")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a second process")
    ap.add_argument("--rt-jack", action="store_true",
                    help="run the JACK server real-time (jackd -R -P 70, as on stage): liveperf's sending thread "
                         "then gets SCHED_FIFO just below it (needs rtprio or root)")
    ap.add_argument("--backend", choices=("jack", "jack-native", "jack-rtmidi"), default="jack",
                    help="liveperf's MIDI backend: jack (= jack-native, the default: frame-exact, compiled JACK callback) "
                         "or jack-rtmidi (the python-rtmidi fallback)")
    ap.add_argument("--period", type=int, default=64, help="JACK period in frames at 48 kHz (default 64)")
    ap.add_argument("--lookahead-ms", type=float, default=8.0,
                    help="the setlist's [show] lookahead_ms: how early each step is computed (default 8)")
    ap.add_argument("--json", type=Path, help="write the result (samples included) here")
    args = ap.parse_args()
    print(f"grid timing through JACK ({args.backend}, {args.period}-frame period), mode {args.mode}, "
          f"{args.minutes:g} min at {TEMPO} BPM, lookahead {args.lookahead_ms:g} ms"
          + (" with one core busy" if args.busy else "") + (", real-time JACK server" if args.rt_jack else ""))
    result = run(args.minutes, args.busy, args.mode, args.rt_jack, args.backend, args.period, args.lookahead_ms)
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
