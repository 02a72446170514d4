"""Load a liveperf ONNX model with onnxruntime: validated metadata, tuned session, a chosen execution provider.

Session settings follow what was measured on 2-core machines (DESIGN.md): 1 intra-op and 1 inter-op thread,
sequential execution, all graph optimisations. The provider is chosen at run time: CPU by default (batch-1 steps of
this size are faster on the CPU); ``cuda`` only where onnxruntime-gpu is installed and the session really gets it.
Loading happens at start-up or in ``liveperf check``, never on the engine's hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import onnxruntime as ort

from liveperf.models.metadata import ModelInfo, ModelMetadataError, parse_metadata

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class ModelLoadError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedModel:
    path: Path
    session: ort.InferenceSession
    info: ModelInfo
    provider: str  # the provider the session really runs on
    provider_note: str  # one line: what was chosen and why


def shipped_models_dir() -> Path:
    return Path(str(resources.files("liveperf") / "data" / "models"))


def resolve_model_path(name_or_path: str, base_dir: Path | None = None) -> Path:
    """A shipped model name (``melody_dnn``) or a path (absolute, or relative to ``base_dir``)."""
    p = Path(name_or_path)
    if p.suffix == ".onnx":
        return p if p.is_absolute() or base_dir is None else base_dir / p
    return shipped_models_dir() / f"{name_or_path}.onnx"


def shipped_model_names() -> list[str]:
    d = shipped_models_dir()
    return sorted(p.stem for p in d.glob("*.onnx")) if d.is_dir() else []


def session_options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: the runtime prints its own one-line provider note
    return opts


def choose_providers(preference: str = "cpu") -> tuple[list[str], str]:
    """Providers to ask for, and a one-line note of the choice. ``preference``: cpu | cuda | auto."""
    if preference not in ("cpu", "cuda", "auto"):
        raise ValueError(f"provider {preference!r}: choose cpu, cuda or auto")
    available = ort.get_available_providers()
    if preference == "cpu":
        return ["CPUExecutionProvider"], "CPU provider (default for per-step models: faster than a GPU at batch 1)"
    if PROVIDERS["cuda"] in available:
        return [PROVIDERS["cuda"], "CPUExecutionProvider"], "CUDA provider requested and offered by onnxruntime"
    why = "onnxruntime-gpu is not installed (see README, GPU)" if preference == "cuda" else "no GPU provider"
    return ["CPUExecutionProvider"], f"CPU provider: {why}"


def load_model(path: str | Path, provider: str = "cpu") -> LoadedModel:
    """Open and validate ``path``; raise ``ModelLoadError`` naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc})") from None
    providers, note = choose_providers(provider)
    try:
        session = ort.InferenceSession(data, sess_options=session_options(), providers=providers)
    except Exception as exc:  # onnxruntime raises several private exception types for a bad file
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: not a loadable ONNX model ({first})") from None
    try:
        meta = session.get_modelmeta().custom_metadata_map
        got_in = tuple(i.name for i in session.get_inputs())
        got_out = tuple(o.name for o in session.get_outputs())
    except UnicodeDecodeError as exc:  # a damaged file onnxruntime opens, whose strings are not UTF-8
        raise ModelLoadError(f"{path}: not a loadable ONNX model (its metadata or names are not UTF-8: {exc})") from None
    try:
        info = parse_metadata(meta, str(path))
    except ModelMetadataError as exc:
        raise ModelLoadError(str(exc)) from None
    if got_in != info.inputs or got_out != info.outputs:
        raise ModelLoadError(
            f"{path}: graph inputs/outputs {got_in} -> {got_out} differ from its metadata {info.inputs} -> {info.outputs}"
        )
    actual = session.get_providers()[0]
    if provider != "cpu" and actual != providers[0]:
        note = f"CPU provider: {providers[0]} was requested but the session fell back to {actual}"
    return LoadedModel(path, session, info, actual, note)

