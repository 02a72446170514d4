"""Per-model latency: every shipped ONNX model through onnxruntime (CPU, 1 thread; CUDA when present), and the
melody DNN also in torch eager (the baseline, same architecture and thread count, from the export extra).

Times one call per "unit of work": a step for step models, a whole 2-bar phrase for phrase models. Inputs are
built from each model's metadata (names) and graph (shapes); values are realistic in range but random (timing of
these graphs does not depend on the values). Returns per-model p50/p99/max in µs and the raw samples.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort

from liveperf import melody
from liveperf.models.onnx_model import load_model, shipped_model_names, shipped_models_dir


def _feeds(session, rng: np.random.Generator) -> dict:
    feeds = {}
    for i in session.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in i.shape]
        if "int64" in i.type:
            hi = 3 if i.name == "voice" else (4 if i.name == "pos" else melody.NUM_CLASSES)
            feeds[i.name] = rng.integers(0, hi, size=shape).astype(np.int64)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def time_calls(fn, n: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out[k] = time.perf_counter_ns() - t0
    return out


def summary_us(ns: np.ndarray) -> dict:
    a = ns / 1e3
    return {"n": int(a.size), "p50": float(np.median(a)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def onnx_latency(n: int, warmup: int) -> dict:
    """{model name: {provider: summary}} for every shipped model; CUDA only where onnxruntime offers it."""
    rng = np.random.default_rng(0)
    results, samples = {}, {}
    providers = ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])
    for name in shipped_model_names():
        for prov in providers:
            model = load_model(shipped_models_dir() / f"{name}.onnx", prov)
            feeds = _feeds(model.session, rng)
            ns = time_calls(lambda: model.session.run(None, feeds), n, warmup)
            key = f"{name} [onnxruntime {model.provider}]"
            results[key] = {"family": model.info.family, **summary_us(ns)}
            samples[key] = ns
    return {"summary": results, "samples": samples}


def torch_melody_latency(n: int, warmup: int) -> dict | None:
    """The melody DNN in torch eager, 1 thread, same architecture as the shipped file (random weights: the cost of
    a GRU step does not depend on the weights). None without the export extra."""
    try:
        import torch

        from export.melody_model import MelodyGRU, MelodyStep
    except ImportError:
        return None
    cfg = load_model(shipped_models_dir() / "melody_dnn.onnx").info.training["model"]
    torch.set_num_threads(1)
    net = MelodyGRU(embed=cfg["embed"], hidden=cfg["hidden"], layers=cfg["layers"]).eval()
    step = MelodyStep(net).eval()
    tok, pos, state = torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64), net.zero_state(1)

    def call():
        with torch.inference_mode():
            step(tok, pos, state)

    ns = time_calls(call, n, warmup)
    return {"summary": {"melody_dnn [torch eager, 1 thread]": summary_us(ns)},
            "samples": {"melody_dnn [torch eager, 1 thread]": ns}}


def phrase_latency(n: int, warmup: int) -> dict:
    """Whole-phrase units of work as a mode would run them: VAE decode + sampling of one 2-bar phrase, and GAN
    best-of-8 (generate 8, score with the critic, keep the best)."""
    from liveperf.models.phrase_models import GanModel, VaeModel
    from liveperf.sampler import new_rng_state
    from liveperf.scales import parse_key, token_mask

    allowed = token_mask(parse_key("D dorian"), 55, 84)
    vae, gan = VaeModel.load(), GanModel.load()
    rng = new_rng_state(3)
    z = np.random.default_rng(0).standard_normal((1, vae.latent_dim)).astype(np.float32)
    results, samples = {}, {}
    for key, fn in (("VAE decode + sampling, one 2-bar phrase", lambda: vae.decode(z, allowed, 0.9, 0, 0.95, rng)),
                    ("GAN best of 8 (generate + critic)", lambda: gan.best_of(8, rng, 0.0, allowed))):
        ns = time_calls(fn, n, warmup)
        results[key] = summary_us(ns)
        samples[key] = ns
    return {"summary": results, "samples": samples}
