"""Harmonize reaction latency through a real JACK server, against a bare JACK loopback measured in the same run.

    python -m bench.reaction_jack [--minutes 2] [--period 64] [--busy] [--backend jack|jack-rtmidi] [--no-reflex]
                                  [--out DIR]

``--backend jack`` (the default, jack-native) runs liveperf on its compiled JACK client (``liveperf.io.jack_native``): the port answers
a note-on in its own cycle from the table harmonize draws ahead (``liveperf.modes.reflex``); ``--no-reflex`` turns that off
(the engine answers, a cycle or two later), to compare in the same conditions. Use ``--period 256`` there (this
VM's dummy server cannot keep real time at 64 frames; README).

A private JACK dummy server (48 kHz, ``--period`` frames: 64 = 1.33 ms) carries three paths, all played by ONE
performer thread in this process and heard by ONE listener thread in this process:

- **liveperf**: performer client ``rb-perf-lp`` -> ``liveperf play`` (its own process, a one-song setlist in
  ``mode = "harmonize"``, performer on channel 1, partner on the song's channel 2) -> listener client ``rb-hear-lp``;
- **loopback** (the baseline the bar is set against): performer client ``rb-perf-loop`` connected straight to
  listener client ``rb-hear-loop`` — JACK alone;
- **echo** (a second baseline, to tell JACK's cycle structure from liveperf's own work): performer client
  ``rb-perf-echo`` -> a bare echo process (``rb-echo-in`` / ``rb-echo-out``: python-rtmidi, polls its input every
  0.5 ms exactly like liveperf's ``MidiInPort`` and sends what it gets at once, nothing else) -> ``rb-hear-echo``.

The performer plays seeded, irregular notes: a liveperf note-on every 150-400 ms (pitches of C major, released at
45-55 % of the gap), and inside each gap one loopback note (at 15-40 %) and one echo note (at 60-85 %), so the three
paths are interleaved and see the same machine conditions. The first ``warmup_s`` seconds are not counted.

In JACK frames too: two compiled taps (``FrameTaps``) keep the JACK frame of every performer note-on into liveperf and
of every answer, so *answer frame − note-on frame* is what a synth downstream hears, free of any Python thread's
delay (a bare loopback passes a note on its own frame: 0).

Method (why it is fair to the three paths): the send moment is ``time.monotonic_ns()`` taken by the performer thread
right before ``send_message``; the arrival moment is ``time.monotonic_ns()`` taken by the listener thread when
``get_message`` returns the message. Both are on the same clock in the same process. The six rtmidi clients are
identical objects of one kind, and the listener thread polls its three inputs in turn in one loop, sleeping
``LISTEN_SLEEP_S`` when all three are empty: the measurement's own delay (up to one poll gap, reported as
``listen_bracket_us``: the time between the last empty poll of that port and the pick-up) has the same distribution
for every path, so it cancels in the differences. Reaction of liveperf = first partner note-on (channel 2) that
arrives after a performer note-on and before the next one, minus that note-on's send moment; a performer note with
no partner note-on in its gap is counted in ``no_harmony`` (harmonize plays nothing when no consonant note below is
in key and range — liveperf's own count is ``no_candidate`` in its report where present). Loopback and echo
arrivals are matched to their sends by their bytes (pitch, velocity) within 100 ms; one not heard is ``lost``.

From liveperf's ``--report-json`` the in-process part of each harmony is taken too: *send − due*, where due is the
moment the engine thread began handling the note-on (peek + sampling + hand-off to the scheduler thread + its wake
and send). It is matched to the wire by order (the listener hears liveperf's messages in the order they were sent)
and only when the counts agree.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rtmidi

from bench import let_children_import_bench
from bench.frame_taps import FrameTaps, frame_reaction
from bench.proc import busy_core, stop_busy
from liveperf.io.midi_ports import DEFAULT_POLL_INTERVAL_NS
from tests.jack_server import jack_connect, jack_ports, start_jack_server

PATHS = ("liveperf", "loopback", "echo")
PERFORMER_CH, PARTNER_CH = 0, 1  # status-byte channels: performer on 1, partner (the song's channel) on 2
SCALE = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79]  # C major, the performer's pitches
MATCH_WINDOW_NS = 100_000_000  # a bare-path note not heard within 100 ms counts as lost
LISTEN_SLEEP_S = 0.00005  # the listener's sleep when all its ports are empty (~0.1-0.15 ms with the overshoot)
SETLIST = """
[show]
lookahead_ms = 8
late_tolerance_ms = 2
[[song]]
title = "Reaction bench"
mode = "harmonize"
tempo_bpm = 120
key = "C major"
voice = "bass"
pitch_range = [36, 72]
channel = 2
temperature = 0.9
seed = 3
"""


def performer_events(seconds: float, seed: int = 0) -> list[tuple[int, str, tuple[int, int, int]]]:
    """(offset ns, path, message), sorted by time; see the module docstring for the pattern."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, str, tuple[int, int, int]]] = []
    t = 0
    while t < seconds * 1e9:
        gap = int(rng.uniform(150e6, 400e6))
        pitch, vel = int(rng.choice(SCALE)), int(rng.integers(60, 110))
        out.append((t, "liveperf", (0x90 | PERFORMER_CH, pitch, vel)))
        out.append((t + int(gap * rng.uniform(0.45, 0.55)), "liveperf", (0x80 | PERFORMER_CH, pitch, 0)))
        for path, lo, hi in (("loopback", 0.15, 0.40), ("echo", 0.60, 0.85)):
            at, p, v = t + int(gap * rng.uniform(lo, hi)), int(rng.choice(SCALE)), int(rng.integers(60, 110))
            out.append((at, path, (0x90 | PERFORMER_CH, p, v)))
            out.append((at + 20_000_000, path, (0x80 | PERFORMER_CH, p, 0)))
        t += gap
    return sorted(out, key=lambda e: e[0])


def echo_main(client: str, poll_ns: int) -> None:
    """The bare echo: what arrives on ``CLIENT-in:in`` goes out on ``CLIENT-out:out`` as soon as it is polled.
    Runs until stdin closes (the bench holds the pipe)."""
    midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{client}-in")
    midi_in.open_virtual_port("in")
    midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{client}-out")
    midi_out.open_virtual_port("out")
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    sleep_s = poll_ns / 1e9
    while not stop.is_set():
        item = midi_in.get_message()
        if item is None:
            time.sleep(sleep_s)
            continue
        midi_out.send_message(item[0])
    for m in (midi_in, midi_out):  # close the JACK clients now: a client left open at exit can make jackd die of
        m.close_port()             # SIGPIPE when it stops, leaving its entry in JACK's 8-slot server registry
        m.delete()


class Listener:
    """One thread polling every input in turn; ``arrivals[path]`` = [(picked-up ns, bracket ns, message)]."""

    def __init__(self, paths) -> None:
        self.ports = {}
        for path in paths:
            m = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"rb-hear-{_short(path)}", queue_size_limit=4096)
            m.open_virtual_port("in")
            self.ports[path] = m
        self.arrivals: dict[str, list] = {p: [] for p in paths}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        items = list(self.ports.items())
        empty_since = {p: time.monotonic_ns() for p, _ in items}
        while not self._stop.is_set():
            got = False
            for path, m in items:
                polled = time.monotonic_ns()
                msg = m.get_message()
                if msg is None:
                    empty_since[path] = polled
                    continue
                now = time.monotonic_ns()
                self.arrivals[path].append((now, now - empty_since[path], tuple(msg[0])))
                empty_since[path] = now
                got = True
            if not got:
                time.sleep(LISTEN_SLEEP_S)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for m in self.ports.values():
            m.close_port()
            m.delete()


def _short(path: str) -> str:
    return {"liveperf": "lp", "loopback": "loop", "echo": "echo"}[path]


def _wait_ports(names: set[str], timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not names <= set(jack_ports()):
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            out = proc.stdout.read() if proc is not None and proc.poll() is not None else ""
            raise RuntimeError(f"JACK ports {sorted(names - set(jack_ports()))} did not appear\n{out}")
        time.sleep(0.05)


def _stats(a_ns) -> dict:
    a = np.asarray(a_ns, dtype=np.float64) / 1e3
    if not a.size:
        return {"n": 0, "p50_us": None, "p99_us": None, "max_us": None, "mean_us": None}
    return {"n": int(a.size), "p50_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)),
            "max_us": float(a.max()), "mean_us": float(a.mean())}


def match(sends: dict, arrivals: dict, warmup_ns: int, t0: int) -> dict:
    """Reaction samples per path (ns) and counts; see the module docstring for the rules."""
    out: dict = {}
    # liveperf: the first partner note-on in each performer note's gap.
    ons = [(t, m) for t, m in sends["liveperf"] if m[0] & 0xF0 == 0x90]
    partner = [(t, b, m) for t, b, m in arrivals["liveperf"] if m[0] == 0x90 | PARTNER_CH and m[2] > 0]
    lat, brackets, no_harmony, counted, j = [], [], 0, 0, 0
    for k, (ts, m) in enumerate(ons):
        nxt = ons[k + 1][0] if k + 1 < len(ons) else 1 << 62
        while j < len(partner) and partner[j][0] < ts:
            j += 1
        hit = partner[j] if j < len(partner) and partner[j][0] < nxt else None
        if ts - t0 < warmup_ns:
            continue
        counted += 1
        if hit is None:
            no_harmony += 1
        else:
            lat.append(hit[0] - ts)
            brackets.append(hit[1])
    out["liveperf"] = {"ns": lat, "bracket_ns": brackets, "notes": counted, "no_harmony": no_harmony}
    for path in ("loopback", "echo"):
        sent = [(t, m) for t, m in sends[path] if m[0] & 0xF0 == 0x90]
        got = [(t, b, m) for t, b, m in arrivals[path] if m[0] & 0xF0 == 0x90]
        lat, brackets, lost, j = [], [], 0, 0
        for ts, m in sent:
            while j < len(got) and got[j][0] < ts:
                j += 1
            k = j  # the same bytes within MATCH_WINDOW_NS after the send (one bare note per gap: no ambiguity)
            while k < len(got) and got[k][0] < ts + MATCH_WINDOW_NS and got[k][2] != m:
                k += 1
            if k >= len(got) or got[k][0] >= ts + MATCH_WINDOW_NS:
                lost += 1
                continue
            if ts - t0 >= warmup_ns:
                lat.append(got[k][0] - ts)
                brackets.append(got[k][1])
            j = k + 1
        out[path] = {"ns": lat, "bracket_ns": brackets, "notes": sum(1 for t, _ in sent if t - t0 >= warmup_ns),
                     "lost": lost}
    return out


def in_process(report: dict, arrivals: list) -> dict | None:
    """send − due of every harmony note-on (liveperf's own figure), matched to the wire by order; None if the
    counts of sent and heard messages differ."""
    errors = report.get("errors_ns", [])
    if len(errors) != len(arrivals):
        print(f"  (liveperf reports {len(errors)} messages sent, the listener heard {len(arrivals)})")
        return None
    ons = [e for e, (_, _, m) in zip(errors, arrivals) if m[0] == 0x90 | PARTNER_CH and m[2] > 0]
    return _stats(ons)


def run(minutes: float = 2.0, period: int = 64, busy: bool = False, seed: int = 0, warmup_s: float = 3.0,
        probe: bool = False, backend: str = "jack", reflex: bool = True, rt_jack: bool = False) -> dict:
    """Play the three paths for ``minutes`` and return the figures (and the raw samples under ``samples``).
    ``probe``: run liveperf under ``bench.reaction_probe`` and add the per-stage split under ``stages_us``."""
    backend = "jack-native" if backend == "jack" else backend  # the default on JACK, by its name in reports
    let_children_import_bench()  # the echo client and the probe run as ``-m bench...``, from any directory
    server = start_jack_server(period=period, realtime=rt_jack)
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    os.environ["JACK_NO_START_SERVER"] = "1"
    hog = busy_core(busy)
    tmp = Path(tempfile.mkdtemp(prefix="liveperf-reaction-"))
    (tmp / "set.toml").write_text(SETLIST)
    seconds = minutes * 60 + warmup_s
    launcher = ["bench.reaction_probe", str(tmp / "probe.json"), "--"] if probe else ["liveperf.cli"]
    lp_in, lp_out = ("lpr:in", "lpr:out") if backend == "jack-native" else ("lpr-in:in", "lpr-out:out")
    proc = subprocess.Popen([sys.executable, "-m", *launcher, "play", str(tmp / "set.toml"), "--backend", backend,
                             *([] if reflex else ["--no-reflex"]), "--client-name", "lpr", "--record-dir", str(tmp / "rec"), "--duration", str(seconds + 60), "--report-json",
                             str(tmp / "report.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    echo = subprocess.Popen([sys.executable, "-m", "bench.reaction_jack", "--echo-client", "rb-echo"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    listener, taps, outs = None, None, []
    sends: dict[str, list] = {p: [] for p in PATHS}
    try:
        _wait_ports({lp_in, lp_out}, 90, proc)
        _wait_ports({"rb-echo-in:in", "rb-echo-out:out"}, 30)
        listener = Listener(PATHS)
        for path in PATHS:
            m = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"rb-perf-{_short(path)}")
            m.open_virtual_port("out")
            outs.append(m)
        perf = dict(zip(PATHS, outs))
        _wait_ports({f"rb-{side}-{_short(p)}:{port}" for p in PATHS for side, port in (("hear", "in"), ("perf", "out"))}, 10)
        for src, dst in (("rb-perf-lp:out", lp_in), (lp_out, "rb-hear-lp:in"),
                         ("rb-perf-loop:out", "rb-hear-loop:in"),
                         ("rb-perf-echo:out", "rb-echo-in:in"), ("rb-echo-out:out", "rb-hear-echo:in")):
            jack_connect(src, dst)
        taps = FrameTaps()
        jack_connect("rb-perf-lp:out", "rb-tap-perf:in")
        jack_connect(lp_out, "rb-tap-lp:in")
        listener.start()
        gc.collect()
        gc.freeze()  # no collection pauses in the performer or listener thread mid-run
        t0 = time.monotonic_ns() + 300_000_000
        for off, path, msg in performer_events(seconds, seed):
            while (left := t0 + off - time.monotonic_ns()) > 0:
                time.sleep(min(left / 1e9, 0.002))
            ts = time.monotonic_ns()
            perf[path].send_message(msg)
            sends[path].append((ts, msg))
        time.sleep(1.0)  # the last answers and note-offs
        proc.send_signal(signal.SIGTERM)  # liveperf silences its notes, writes its report and exits
        out, _ = proc.communicate(timeout=60)
    finally:
        if listener is not None:
            listener.close()
        if taps is not None:
            taps.close()
        for m in outs:
            m.close_port()
            m.delete()
        if echo.poll() is None:
            echo.stdin.close()
            try:
                echo.wait(5)
            except subprocess.TimeoutExpired:
                echo.kill()
        if proc.poll() is None:
            proc.kill()
        stop_busy(hog)
        server.stop()
        gc.unfreeze()
    report = json.loads((tmp / "report.json").read_text())
    song = report["songs"][0]
    m = match(sends, listener.arrivals, int(warmup_s * 1e9), t0)
    res = {"minutes": minutes, "warmup_s": warmup_s, "jack_period_frames": period, "jack_period_us": period / 48e3 * 1e6,
           "busy_core": busy, "realtime_server": rt_jack, "seed": seed, "scheduling": report.get("scheduling"), "backend": backend,
           "reflex": reflex and backend == "jack-native",
           "liveperf_poll_interval_us": DEFAULT_POLL_INTERVAL_NS / 1e3, "listen_sleep_us": LISTEN_SLEEP_S * 1e6}
    for path in PATHS:
        res[path] = {**_stats(m[path]["ns"]), "listen_bracket_us": _stats(m[path]["bracket_ns"]),
                     **{k: v for k, v in m[path].items() if k not in ("ns", "bracket_ns")}}
    lp, lb = res["liveperf"], res["loopback"]
    res["p99_minus_loopback_us"] = {p: res[p]["p99_us"] - lb["p99_us"] for p in ("liveperf", "echo")
                                    if res[p]["n"] and lb["n"]}
    res["p50_minus_loopback_us"] = {p: res[p]["p50_us"] - lb["p50_us"] for p in ("liveperf", "echo")
                                    if res[p]["n"] and lb["n"]}
    res["frames"] = frame_reaction(taps, warmup_s, PARTNER_CH)
    res["bar_p99_within_500us"] = bool(lp["n"] and lb["n"] and lp["p99_us"] - lb["p99_us"] <= 500)
    res["liveperf_report"] = {"performer_notes": song.get("performer_notes"), "harmonies": song.get("harmonies"),
                              "reflex_answers": song.get("reflex_answers", 0), "sent": report.get("sent"),
                              "late_dropped": report.get("late_dropped"), "port": report.get("port", {})}
    res["in_process_send_minus_engine_us"] = in_process(report, listener.arrivals["liveperf"])
    if probe:
        from bench import reaction_probe

        ons = [t for t, msg in sends["liveperf"] if msg[0] & 0xF0 == 0x90]
        heard = [t for t, _, msg in listener.arrivals["liveperf"] if msg[0] == 0x90 | PARTNER_CH and msg[2] > 0]
        pr = json.loads((tmp / "probe.json").read_text())
        if len(pr["note_on"]) != len(ons):
            ons = []  # some performer note-on did not reach the engine: the first stage cannot be matched
        st = reaction_probe.stages(pr, ons, heard)
        res["stages_us"] = {k: _stats(v) for k, v in st.items()}
    res["samples"] = {p: m[p]["ns"] for p in PATHS}
    res["liveperf_output_tail"] = out[-1500:]
    return res


def print_result(r: dict) -> None:
    print(f"reaction through JACK: {r['minutes']:g} min, period {r['jack_period_frames']} frames "
          f"({r['jack_period_us']:.0f} µs), liveperf backend {r['backend']}"
          + (" with the reflex" if r["reflex"] else "") + f", scheduler: {r['scheduling']}"
          + (", one core busy" if r["busy_core"] else "") + (", real-time JACK server" if r.get("realtime_server") else ""))
    names = {"liveperf": "harmonize reaction (liveperf)", "loopback": "bare JACK loopback (baseline)",
             "echo": "bare echo client, 0.5 ms poll"}
    for p in PATHS:
        s = r[p]
        if not s["n"]:
            print(f"  {names[p]:<32} no samples")
            continue
        extra = (f"no harmony {s['no_harmony']} of {s['notes']}" if p == "liveperf"
                 else f"lost {s['lost']}")
        print(f"  {names[p]:<32} p50 {s['p50_us']:7.0f} µs  p99 {s['p99_us']:7.0f} µs  max {s['max_us']:7.0f} µs"
              f"  (n={s['n']}; {extra}; listener bracket p50 {s['listen_bracket_us']['p50_us']:.0f} µs)")
    d = r["p99_minus_loopback_us"]
    if "liveperf" in d:
        print(f"  p99 − loopback p99: liveperf {d['liveperf']:.0f} µs, echo {d.get('echo', float('nan')):.0f} µs; "
              f"p50 − loopback p50: liveperf {r['p50_minus_loopback_us']['liveperf']:.0f} µs, "
              f"echo {r['p50_minus_loopback_us'].get('echo', float('nan')):.0f} µs")
        print(f"  issue 4 bar (harmonize p99 within 500 µs of the loopback p99): "
              f"{'met' if r['bar_p99_within_500us'] else 'MISSED'}")
    fr = r.get("frames")
    if fr and fr["n"]:
        print(f"  in JACK frames (what a synth downstream hears; a bare loopback is 0): harmony − its note-on "
              f"p50 {fr['p50_ms']:.2f} ms  p99 {fr['p99_ms']:.2f} ms  max {fr['max_ms']:.2f} ms, on the note-on's own "
              f"frame {fr['same_frame']} of {fr['n']} (no harmony {fr['no_harmony']}; taps' late cycles "
              f"{fr['tap_frame_jumps']})")
    for k, s in r.get("stages_us", {}).items():
        if s["n"]:
            print(f"  stage {k:<24} p50 {s['p50_us']:7.0f} µs  p99 {s['p99_us']:7.0f} µs  max {s['max_us']:7.0f} µs"
                  f"  mean {s['mean_us']:6.0f} µs  (n={s['n']})")
    ip = r["in_process_send_minus_engine_us"]
    if ip and ip["n"]:
        print(f"  in liveperf (engine takes the note-on -> port.send returns): p50 {ip['p50_us']:.0f} µs  "
              f"p99 {ip['p99_us']:.0f} µs  max {ip['max_us']:.0f} µs")
    else:
        print("  in liveperf: not matched (sent and heard message counts differ)")
    lr = r["liveperf_report"]
    print(f"  liveperf report: {lr['performer_notes']} performer note-ons, {lr['harmonies']} harmonies computed, "
          f"{lr['sent']} messages sent, {lr['late_dropped']} dropped as late (a harmony computed but dropped as late "
          f"is a performer note with no harmony on the wire)")
    if r["reflex"]:
        port = lr["port"]
        print(f"  reflex: {lr['reflex_answers']} of {lr['harmonies']} harmonies sent by the port in the note-on's "
              f"cycle, {port.get('reflex_released', 0)} ended on their cause's release frame, "
              f"{port.get('reflex_declined', 0)} note-ons left to the engine (the partner still sounded)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0, help="measured length (default 2; after 3 s warm-up)")
    ap.add_argument("--period", type=int, default=64, help="JACK period in frames at 48 kHz (default 64)")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a second process")
    ap.add_argument("--seed", type=int, default=0, help="the performer's seed")
    ap.add_argument("--probe", action="store_true", help="time each stage inside liveperf (bench.reaction_probe)")
    ap.add_argument("--backend", choices=("jack", "jack-native", "jack-rtmidi"), default="jack", help="liveperf's MIDI backend")
    ap.add_argument("--no-reflex", action="store_true", help="jack-native: the engine answers, not the port")
    ap.add_argument("--rt-jack", action="store_true",
                    help="run the JACK server real-time (jackd -R -P 70, as on stage; needs rtprio or root)")
    ap.add_argument("--out", type=Path, help="write reaction.json and reaction_cdf.png into this folder")
    ap.add_argument("--echo-client", help=argparse.SUPPRESS)  # internal: run as the bare echo process
    args = ap.parse_args()
    if args.echo_client:
        echo_main(args.echo_client, DEFAULT_POLL_INTERVAL_NS)
        return
    r = run(args.minutes, args.period, args.busy, args.seed, probe=args.probe, backend=args.backend,
            reflex=not args.no_reflex, rt_jack=args.rt_jack)
    print_result(r)
    if args.out:
        from bench import plots

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "reaction.json").write_text(json.dumps(r, indent=2))
        plots.reaction_cdf(r, args.out / "reaction_cdf.png")
        print(f"wrote {args.out}/reaction.json, reaction_cdf.png")


if __name__ == "__main__":
    main()
