"""The benchmark suite: one command, JSON + PNG plots + a printed table.

    python -m bench.run [--minutes 5] [--busy] [--out DIR]   # needs the export and bench extras

Run it as ``python -m bench.run`` in the repo root (or with the repo root on PYTHONPATH), or from any directory as
``python /path/to/liveperf/bench/run.py``. It writes results.json and the PNG plots into ``--out``, by default
``liveperf-bench/<date-time>/`` in the current directory; scratch files of the runs go to temporary folders.

Sections (all measured in the same run, so ratios are fair on a noisy machine):
1. model latency: every shipped ONNX model on onnxruntime CPU (1 thread; CUDA too where a GPU is offered), and every
   shipped model in torch eager (baseline: same architecture, 1 thread, random weights), with torch/ORT ratios;
2. step latency of the engine's unit of work (DNN step + sampling) and the sampler alone, numba vs numpy reference;
3. the machine's own timing floor (a bare timer thread, same scheduling request: the baseline), then grid timing
   error through a real JACK server at 180 BPM with dense input (send − due, arrival − due), with resident memory;
   3c. harmonize reaction latency against a bare JACK loopback (and a bare echo client) in the same run;
   3d. grid timing per mode (``--modes``; harmonize answers off the grid, so its figure is 3c);
4. start-up: import + numba compile with cold and warm cache; `liveperf check setlists/demo.toml` (warm).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a file (python /path/to/bench/run.py): import bench and tests from its tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine_floor, model_latency, plots, reaction_jack, startup, step_latency, timing_jack  # noqa: E402

ALL_MODES = ("call_response", "duet", "harmonize", "phrase")


def _row(name: str, s: dict) -> str:
    return f"  {name:<48} p50 {s['p50']:9.1f} µs  p99 {s['p99']:9.1f} µs  max {s['max']:9.1f} µs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the JACK timing run (default 5)")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a second process during the JACK run")
    ap.add_argument("--reaction-minutes", type=float, default=2.0, help="length of the reaction run (default 2)")
    ap.add_argument("--modes", default=",".join(ALL_MODES),
                    help="modes for the per-mode grid timing, comma-separated ('' = none; default all four)")
    ap.add_argument("--mode-minutes", type=float, default=1.0, help="length of each per-mode run (default 1)")
    ap.add_argument("--calls", type=int, default=3000, help="timed calls per model (default 3000)")
    ap.add_argument("--out", type=Path, default=Path("liveperf-bench") / time.strftime("%Y-%m-%d-%H%M%S"),
                    help="folder for results.json and the plots (default: liveperf-bench/<date-time>/ in the current "
                         "directory)")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.node()} {platform.machine()}",
                 "cpus": __import__("os").cpu_count(), "python": platform.python_version()}

    print("1. model latency (one call: a step, or a whole 2-bar phrase)")
    onnx = model_latency.onnx_latency(args.calls, 300)
    torch_r = model_latency.torch_latency(args.calls, 300)
    phrase = model_latency.phrase_latency(max(300, args.calls // 3), 30)
    res["models"] = {**onnx["summary"], **(torch_r["summary"] if torch_r else {}), **phrase["summary"]}
    for k, s in res["models"].items():
        print(_row(k, s))
    res["torch_over_onnxruntime"] = model_latency.ratios(res["models"])
    for k, r in res["torch_over_onnxruntime"].items():
        print(f"  {k:<48} torch eager / onnxruntime: {r['p50']:.1f}x at p50, {r['p99']:.1f}x at p99")
    samples = {**onnx["samples"], **(torch_r["samples"] if torch_r else {}), **phrase["samples"]}

    print("2. engine step (DNN step + sampling) and the sampler alone")
    st = step_latency.run("melody_dnn", 5000, 500)
    res["step"] = {k: v for k, v in st.items() if k != "samples"}
    for k in ("step_plus_sampling_us", "sampler_numba_us", "sampler_numba_in_engine_loop_us", "sampler_reference_us"):
        print(_row(k, st[k]))
    plots.latency_cdfs(samples, st["samples"], args.out / "latency_cdf.png")

    print("3a. the machine's floor: a bare timer thread, 10 ms deadlines, 60 s (baseline for 3b)")
    res["machine_floor"] = machine_floor.run(60)
    f = res["machine_floor"]
    print(f"  bare timer ({f['scheduling']}): p50 {f['p50_us']:.0f} µs  p99 {f['p99_us']:.0f} µs  max {f['max_us']:.0f} µs"
          f"  late > 2 ms: {f['late_over_2ms']} of {f['n']}; hypervisor steal {f['steal_pct_of_one_cpu']}% of a CPU")
    print(f"3b. grid timing through JACK, {args.minutes:g} min at 180 BPM" + (" with one core busy" if args.busy else ""))
    tj = timing_jack.run(args.minutes, busy=args.busy)
    plots.timing(tj, args.out / "timing.png")
    res["timing"] = {k: v for k, v in tj.items() if k != "samples"}
    timing_jack.print_result(tj)

    print(f"3c. harmonize reaction against a bare JACK loopback, {args.reaction_minutes:g} min"
          + (" with one core busy" if args.busy else ""))
    rj = reaction_jack.run(args.reaction_minutes, busy=args.busy)
    reaction_jack.print_result(rj)
    plots.reaction_cdf(rj, args.out / "reaction_cdf.png")
    res["reaction"] = {k: v for k, v in rj.items() if k != "samples"}

    modes = [m for m in args.modes.split(",") if m]
    if modes:
        print(f"3d. grid timing per mode, {args.mode_minutes:g} min each at {timing_jack.TEMPO} BPM")
        per_mode = {}
        for mode in modes:
            if mode == "harmonize":
                print("  harmonize: answers each note-on at once, off the grid: its figure is the reaction (3c)")
                continue
            print(f"  [{mode}]")
            per_mode[mode] = timing_jack.run(args.mode_minutes, busy=args.busy, mode=mode)
            timing_jack.print_result(per_mode[mode])
        if per_mode:
            plots.mode_timing(per_mode, args.out / "timing_modes.png")
        res["timing_modes"] = {m: {k: v for k, v in r.items() if k != "samples"} for m, r in per_mode.items()}

    print("4. start-up")
    res["startup"] = startup.run()
    for k, v in res["startup"].items():
        print(f"  {k:<28} {v:6.2f} s")

    (args.out / "results.json").write_text(json.dumps(res, indent=2, default=lambda o: np.asarray(o).tolist()))
    print(f"\nwrote {args.out}/results.json, latency_cdf.png, timing.png, reaction_cdf.png"
          + (", timing_modes.png" if modes else ""))


if __name__ == "__main__":
    main()
