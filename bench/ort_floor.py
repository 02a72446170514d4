"""What an onnxruntime call costs by itself on this machine, paced as a show paces its steps: the floor under any
engine step that calls a model.

    python -m bench.ort_floor [--steps 240] [--period-ms 83.3]

After each sleep of a step's length (83 ms at 180 BPM: caches cool between steps, as on stage), it times, in
turn: a numpy no-op (what merely running again costs), one call of a one-node ONNX graph (an Add of 4 floats:
onnxruntime's own cost per call, with the show's session options), and one bare call of each shipped step model
the three-partner band runs per step (melody, comp, duet: zeros in, no engine around them), on their own and in a
row. ``bench.band_step --pace`` prints these beside the band's per-step figures (same process, same minutes).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from liveperf.models.onnx_model import load_model, resolve_model_path, session_options

BAND_MODELS = ("melody_dnn", "comp_dnn", "duet_dnn")  # the lead's, the comp's and the bass duet's step models


def _one_node_session() -> ort.InferenceSession:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "one_node", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def _zeros_feeds(session: ort.InferenceSession) -> dict:
    """Zeros of every input's type and shape (symbolic dimensions: 1)."""
    feeds = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, dtype=np.int64 if "int64" in i.type else np.float32)
    return feeds


def measure(steps: int, period_s: float) -> dict[str, dict]:
    """p50 / p99 / max µs of each call after a sleep of ``period_s``; ``steps`` samples each."""
    one = _one_node_session()
    models = {name: load_model(resolve_model_path(name)).session for name in BAND_MODELS}
    calls = {"numpy no-op": (lambda a=np.zeros(4): a.sum()),
             "one-node ONNX graph": (lambda s=one, f={"x": np.zeros((1, 4), np.float32)}: s.run(None, f))}
    for name, s in models.items():
        calls[f"{name} alone"] = (lambda s=s, f=_zeros_feeds(s): s.run(None, f))
    ordered = [(s, _zeros_feeds(s)) for s in models.values()]
    calls["the three in a row"] = lambda: [s.run(None, f) for s, f in ordered]
    for fn in calls.values():  # load and warm once
        fn()
    times = {name: [] for name in calls}
    for _ in range(steps):
        for name, fn in calls.items():
            time.sleep(period_s)
            t0 = time.perf_counter_ns()
            fn()
            times[name].append(time.perf_counter_ns() - t0)
    return {name: {"p50": float(np.percentile(v, 50) / 1e3), "p99": float(np.percentile(v, 99) / 1e3),
                   "max": float(np.max(v) / 1e3), "n": len(v)} for name, v in times.items()}


def print_floor(floor: dict[str, dict], period_s: float) -> None:
    print(f"onnxruntime alone, each call after {period_s * 1e3:.0f} ms asleep (the floor under a step with models):")
    for name, s in floor.items():
        print(f"  {name:<22} p50 {s['p50']:7.1f} µs  p99 {s['p99']:7.1f} µs  max {s['max']:7.1f} µs  (n={s['n']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--period-ms", type=float, default=60_000 / 180 / 4)
    args = ap.parse_args(argv)
    print_floor(measure(args.steps, args.period_ms / 1e3), args.period_ms / 1e3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
