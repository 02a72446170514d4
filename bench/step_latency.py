"""Step latency: model step + sampling for one token, in-process (DESIGN.md's "step latency").

Measures, in one run so the ratios are fair on a noisy machine:
- the shipped DNN step through onnxruntime (CPU provider, 1 thread) alone;
- the numba sampler alone and the plain numpy/Python reference alone (the baseline), on the same recorded logits;
- the numba sampler inside the engine loop, right after each model step (cold caches: a higher p99);
- step + sampling together, fed its own samples as in an answer.
Prints median / p99 / max in µs and writes JSON (``--json``).

    python -m bench.step_latency [--steps 5000] [--json bench/results/step_latency.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from liveperf.music import melody
from liveperf.models.onnx_model import load_model, resolve_model_path
from liveperf.models.step_model import OnnxStepper
from liveperf.music.sampler import new_rng_state, sample
from liveperf.music.sampler_reference import sample_reference
from liveperf.music.scales import parse_key, token_mask


def stats_us(ns: list[int]) -> dict:
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return {"n": int(a.size), "p50": float(np.median(a)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def run(model_name: str, steps: int, warmup: int) -> dict:
    model = load_model(resolve_model_path(model_name))
    stepper = OnnxStepper(model)
    allowed = token_mask(parse_key("D dorian"), 55, 84)
    rng = new_rng_state(1)
    # Inputs: the model's own answer, as in a show.
    token, logits_seen = melody.on(62), []
    step_ns, sample_ns, ref_ns, both_ns = [], [], [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter_ns()
        logits = stepper.feed(token, i)
        t1 = time.perf_counter_ns()
        token = int(sample(logits, allowed, 0.9, 0, 0.95, rng, melody.HOLD))
        t2 = time.perf_counter_ns()
        if i >= warmup:
            step_ns.append(t1 - t0)
            sample_ns.append(t2 - t1)
            both_ns.append(t2 - t0)
            if len(logits_seen) < 2000:
                logits_seen.append(logits.copy())
        if i % 64 == 63:
            stepper.reset()
    # The samplers alone, on the same recorded logits, numba and the reference in turn: a fair ratio.
    iso_ns = []
    iso_rng = new_rng_state(1)
    for k in range(20_000):
        logits = logits_seen[k % len(logits_seen)]
        t0 = time.perf_counter_ns()
        sample(logits, allowed, 0.9, 0, 0.95, iso_rng, melody.HOLD)
        iso_ns.append(time.perf_counter_ns() - t0)
    ref_rng = new_rng_state(1)
    for logits in logits_seen:
        t0 = time.perf_counter_ns()
        sample_reference(logits, allowed, 0.9, 0, 0.95, ref_rng, melody.HOLD)
        ref_ns.append(time.perf_counter_ns() - t0)
    result = {
        "model": model.path.name,
        "provider": model.provider,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": time.strftime("%Y-%m-%d"),
        "step_only_us": stats_us(step_ns),
        "sampler_numba_us": stats_us(iso_ns),
        "sampler_numba_in_engine_loop_us": stats_us(sample_ns),
        "sampler_reference_us": stats_us(ref_ns),
        "step_plus_sampling_us": stats_us(both_ns),
    }
    result["sampler_speedup_p50"] = result["sampler_reference_us"]["p50"] / result["sampler_numba_us"]["p50"]
    result["samples"] = {"sampler numba": np.asarray(iso_ns), "sampler numba (in engine loop)": np.asarray(sample_ns), "sampler numpy reference": np.asarray(ref_ns),
                         "DNN step + sampling": np.asarray(both_ns)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="melody_dnn")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    r = run(args.model, args.steps, args.warmup)
    r.pop("samples")
    print(f"{r['model']} on {r['provider']}, {args.steps} steps after {args.warmup} warm-up")
    for key in ("step_only_us", "sampler_numba_us", "sampler_numba_in_engine_loop_us", "sampler_reference_us",
                "step_plus_sampling_us"):
        s = r[key]
        print(f"  {key:<24} p50 {s['p50']:8.1f} µs   p99 {s['p99']:8.1f} µs   max {s['max']:8.1f} µs   (n={s['n']})")
    print(f"  numba sampler vs reference: {r['sampler_speedup_p50']:.0f}x faster at p50")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
