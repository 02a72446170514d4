"""Per-model latency: every shipped ONNX model through onnxruntime (CPU, 1 thread; CUDA when present), and every
shipped model also in torch eager (the baseline: same architecture from the export extra, hyper-parameters read
from the ONNX file's metadata, ``torch.set_num_threads(1)``, random weights — the cost of these graphs does not
depend on the weight values — and the same unit of work and batch size 1 as the ONNX row).

Times one call per "unit of work": a step for step models, a whole 2-bar phrase for phrase models. Inputs are
built from each model's metadata (names) and graph (shapes); values are realistic in range but random (timing of
these graphs does not depend on the values). Returns per-model p50/p99/max in µs and the raw samples.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort

from liveperf.music import melody
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


def _torch_units():
    """{model name: (call, description)} in torch eager for every shipped model; None without the export extra."""
    try:
        import torch

        from export.duet_model import DuetGRU, DuetStep
        from export.gan_model import PhraseCritic, PhraseGenerator
        from export.melody_model import MelodyGRU, MelodyStep
        from export.vae_model import PhraseDecoder, PhraseEncoder
    except ImportError:
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)

    def cfg(name: str) -> dict:
        return load_model(shipped_models_dir() / f"{name}.onnx").info.training["model"]

    mel = cfg("melody_dnn")
    mel_net = MelodyGRU(embed=mel["embed"], hidden=mel["hidden"], layers=mel["layers"]).eval()
    duet = cfg("duet_dnn")
    duet_net = DuetGRU(embed=duet["embed"], hidden=duet["hidden"], layers=duet["layers"],
                       steps_per_beat=duet["steps_per_beat"]).eval()
    vae = cfg("melody_vae_decoder")
    gan = cfg("melody_gan_generator")
    no_type = lambda c: {k: v for k, v in c.items() if k != "type"}  # noqa: E731
    enc, dec = PhraseEncoder(**no_type(vae["encoder"])).eval(), PhraseDecoder(**no_type(vae["decoder"])).eval()
    gen, critic = PhraseGenerator(**no_type(gan["generator"])).eval(), PhraseCritic(**no_type(gan["critic"])).eval()
    one = torch.zeros(1, dtype=torch.int64)
    units = {
        "melody_dnn": (MelodyStep(mel_net).eval(), (one, one, mel_net.zero_state(1))),
        "duet_dnn": (DuetStep(duet_net).eval(), (one, one, one, one, duet_net.zero_state(1))),
        "melody_vae_encoder": (enc, (torch.randint(0, melody.NUM_CLASSES, (1, enc.steps)),)),
        "melody_vae_decoder": (dec, (torch.randn(1, dec.latent),)),
        "melody_gan_generator": (gen, (torch.randn(1, gen.latent),)),
        "melody_gan_critic": (critic, (torch.softmax(torch.randn(1, critic.steps, melody.NUM_CLASSES), -1),)),
    }

    def caller(module, args):
        def call():
            with torch.inference_mode():
                module(*args)
        return call

    return {name: caller(m, a) for name, (m, a) in units.items()}


def torch_latency(n: int, warmup: int) -> dict | None:
    """Every shipped model in torch eager, 1 thread (see the module docstring); keys ``NAME [torch eager, 1
    thread]``. None without the export extra."""
    units = _torch_units()
    if units is None:
        return None
    results, samples = {}, {}
    for name, call in units.items():
        key = f"{name} [torch eager, 1 thread]"
        ns = time_calls(call, n, warmup)
        results[key] = summary_us(ns)
        samples[key] = ns
    return {"summary": results, "samples": samples}


def torch_melody_latency(n: int, warmup: int) -> dict | None:
    """The melody DNN alone in torch eager (kept for callers of the first suite)."""
    units = _torch_units()
    if units is None:
        return None
    ns = time_calls(units["melody_dnn"], n, warmup)
    key = "melody_dnn [torch eager, 1 thread]"
    return {"summary": {key: summary_us(ns)}, "samples": {key: ns}}


def ratios(summary: dict) -> dict:
    """{model: {"p50": torch/ort, "p99": torch/ort}} for every model with both an onnxruntime CPU and a torch row:
    how many times faster onnxruntime is at the median and at p99 (> 1 = onnxruntime faster)."""
    out = {}
    for key, s in summary.items():
        if key.endswith("[torch eager, 1 thread]"):
            name = key.split(" [")[0]
            ort_row = summary.get(f"{name} [onnxruntime CPUExecutionProvider]")
            if ort_row:
                out[name] = {"p50": s["p50"] / ort_row["p50"], "p99": s["p99"] / ort_row["p99"]}
    return out


def phrase_latency(n: int, warmup: int) -> dict:
    """Whole-phrase units of work as a mode would run them: VAE decode + sampling of one 2-bar phrase, and GAN
    best-of-8 (generate 8, score with the critic, keep the best)."""
    from liveperf.models.phrase_models import GanModel, VaeModel
    from liveperf.music.sampler import new_rng_state
    from liveperf.music.scales import parse_key, token_mask

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
