"""Model metadata carried inside each ONNX file (``metadata_props``): what the runtime needs to trust a model.

Keys (all values are strings; JSON where structured):
- ``liveperf.representation`` / ``liveperf.representation_version``: must be ``liveperf.melody`` and a version in
  ``melody.READABLE_VERSIONS`` (the version decides the ``pos`` input: ``melody.position_codes``);
- ``liveperf.family``: what kind of model (``dnn_step`` for the stateful next-note model, ``comp_step`` for the
  comp's three voices);
- ``liveperf.name``: short model name (e.g. ``melody_dnn``);
- ``liveperf.steps_per_beat``: the grid the model was trained on;
- ``liveperf.vocabulary``: JSON list, must equal ``liveperf.music.melody.VOCABULARY``;
- ``liveperf.io``: JSON ``{"inputs": [...], "outputs": [...]}`` (names, in order);
- ``liveperf.state_shape``: JSON ``[layers, hidden]`` for step models;
- ``liveperf.training_data``, ``liveperf.split``, ``liveperf.metrics``, ``liveperf.training``: JSON, informational;
- ``liveperf.performer_lag_steps`` (duet models, optional, default 0): the model's performer input at step t is the
  performer's token at t - lag. 1 = trained the way the live duet plays (causal); 0 = it hears the performer's
  note of the same step (harmonize, which answers a note already played).

``build_metadata`` is used by ``export/``; ``parse_metadata`` by the runtime loader, which refuses anything it does
not understand with a message naming the file and the key. Pure functions; no threads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from liveperf.music import melody

PREFIX = "liveperf."
KNOWN_FAMILIES = ("dnn_step", "vae_encoder", "vae_decoder", "gan_generator", "gan_critic", "duet_step",
                  "duet_anticipation", "comp_step")


class ModelMetadataError(ValueError):
    """A model file whose metadata the runtime cannot trust; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    steps_per_beat: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    state_shape: tuple[int, ...] = ()
    training_data: Any = None
    split: Any = None
    metrics: Any = None
    training: Any = None
    extra: dict = field(default_factory=dict)
    performer_lag_steps: int = 0
    representation_version: int = 1  # decides the ``pos`` input (``melody.position_codes``)


def build_metadata(
    *,
    name: str,
    family: str,
    steps_per_beat: int,
    inputs: list[str],
    outputs: list[str],
    state_shape: list[int] | None = None,
    training_data: Any = None,
    split: Any = None,
    metrics: Any = None,
    training: Any = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The ``metadata_props`` dict for an exported model (string values only, as ONNX requires). ``extra``: more
    keys a model family defines (e.g. the duet's ``performer_lag_steps``)."""
    if family not in KNOWN_FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {KNOWN_FAMILIES}")
    props = {
        "representation": melody.REPRESENTATION,
        "representation_version": str(melody.REPRESENTATION_VERSION),
        "family": family,
        "name": name,
        "steps_per_beat": str(int(steps_per_beat)),
        "vocabulary": json.dumps(list(melody.VOCABULARY)),
        "io": json.dumps({"inputs": list(inputs), "outputs": list(outputs)}),
        "state_shape": json.dumps(list(state_shape or [])),
        "training_data": json.dumps(training_data),
        "split": json.dumps(split),
        "metrics": json.dumps(metrics),
        "training": json.dumps(training),
        **{k: str(v) for k, v in (extra or {}).items()},
    }
    return {PREFIX + k: v for k, v in props.items()}


def json_field(props: Mapping[str, str], key: str, source: str) -> Any:
    """The JSON value of metadata key ``liveperf.<key>``; ``ModelMetadataError`` naming ``source`` when it is missing
    or not JSON (model families with keys of their own read them with this too)."""
    raw = props.get(PREFIX + key)
    if raw is None:
        raise ModelMetadataError(f"{source}: metadata key '{PREFIX}{key}' is missing")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelMetadataError(f"{source}: metadata key '{PREFIX}{key}' is not valid JSON ({exc})") from None


def _require(props: Mapping[str, str], key: str, source: str) -> str:
    value = props.get(PREFIX + key)
    if value is None:
        raise ModelMetadataError(
            f"{source}: metadata key '{PREFIX}{key}' is missing — not a liveperf model, or exported by an older tool"
        )
    return value


def parse_metadata(props: Mapping[str, str], source: str) -> ModelInfo:
    """Validate ``metadata_props`` and return a ``ModelInfo``; raise ``ModelMetadataError`` naming ``source``."""
    rep = _require(props, "representation", source)
    if rep != melody.REPRESENTATION:
        raise ModelMetadataError(f"{source}: representation {rep!r}, this runtime reads {melody.REPRESENTATION!r}")
    ver = _require(props, "representation_version", source)
    if ver not in {str(v) for v in melody.READABLE_VERSIONS}:
        raise ModelMetadataError(
            f"{source}: representation version {ver}, this runtime reads versions "
            f"{', '.join(str(v) for v in melody.READABLE_VERSIONS)}"
        )
    family = _require(props, "family", source)
    if family not in KNOWN_FAMILIES:
        raise ModelMetadataError(f"{source}: model family {family!r} unknown; this runtime knows {KNOWN_FAMILIES}")
    vocab = json_field(props, "vocabulary", source)
    if vocab != list(melody.VOCABULARY):
        raise ModelMetadataError(
            f"{source}: vocabulary differs from {melody.REPRESENTATION} v{melody.REPRESENTATION_VERSION} "
            f"({len(vocab) if isinstance(vocab, list) else '?'} entries, expected {melody.NUM_CLASSES})"
        )
    spb_raw = _require(props, "steps_per_beat", source)
    try:
        spb = int(spb_raw)
    except ValueError:
        raise ModelMetadataError(f"{source}: steps_per_beat {spb_raw!r} is not an integer") from None
    if not 1 <= spb <= 24:
        raise ModelMetadataError(f"{source}: steps_per_beat {spb} outside 1..24")
    io = json_field(props, "io", source)
    if not isinstance(io, dict) or not isinstance(io.get("inputs"), list) or not isinstance(io.get("outputs"), list):
        raise ModelMetadataError(f"{source}: metadata 'io' must be {{\"inputs\": [...], \"outputs\": [...]}}")
    if not all(isinstance(x, str) and x for x in io["inputs"] + io["outputs"]):
        raise ModelMetadataError(f"{source}: metadata 'io' inputs and outputs must be names (strings)")
    state_shape = json_field(props, "state_shape", source) if PREFIX + "state_shape" in props else []
    if not isinstance(state_shape, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65536 for x in state_shape):
        raise ModelMetadataError(f"{source}: state_shape {state_shape!r} must be a list of sizes from 1 to 65536")
    lag_raw = props.get(PREFIX + "performer_lag_steps", "0")
    if lag_raw not in ("0", "1"):
        raise ModelMetadataError(f"{source}: performer_lag_steps {lag_raw!r} must be 0 or 1")
    return ModelInfo(
        name=_require(props, "name", source),
        family=family,
        steps_per_beat=spb,
        inputs=tuple(io["inputs"]),
        outputs=tuple(io["outputs"]),
        state_shape=tuple(int(x) for x in state_shape),
        training_data=json_field(props, "training_data", source) if PREFIX + "training_data" in props else None,
        split=json_field(props, "split", source) if PREFIX + "split" in props else None,
        metrics=json_field(props, "metrics", source) if PREFIX + "metrics" in props else None,
        training=json_field(props, "training", source) if PREFIX + "training" in props else None,
        extra={k: v for k, v in props.items() if not k.startswith(PREFIX)},
        performer_lag_steps=int(lag_raw),
        representation_version=int(ver),
    )
