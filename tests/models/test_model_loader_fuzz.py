"""The model loader under fuzzed files: a shipped model's metadata with any key given any value, and its bytes cut
short or flipped, either loads or raises ``ModelLoadError`` / ``ModelMetadataError`` naming the file — never any
other exception (which would end ``liveperf play`` with a traceback instead of a message)."""

from __future__ import annotations

import json

import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from liveperf.models.metadata import ModelMetadataError, parse_metadata
from liveperf.models.onnx_model import ModelLoadError, load_model, shipped_models_dir
from liveperf.models.phrase_models import DuetStepper
from liveperf.models.step_model import OnnxStepper

SHIPPED = shipped_models_dir() / "melody_dnn.onnx"
pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model")

JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=6),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                    max_size=3), max_leaves=8)
VALUES = st.one_of(st.text(max_size=20), JSONISH.map(lambda v: json.dumps(v, allow_nan=True)),
                   st.sampled_from(["[-1, 256]", "[0]", "[1.5, 2]", '{"a": 1}', '"x"', "[1e400]", "NaN", "[]",
                                    '{"inputs": [1, 2], "outputs": []}', '{"inputs": "ab", "outputs": []}']))


def _props() -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(SHIPPED), load_external_data=False).metadata_props}


PROPS = _props() if SHIPPED.exists() else {}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PROPS) or ["x"]), VALUES)
def test_any_metadata_value_parses_or_is_a_metadata_error(key, value):
    props = dict(PROPS, **{key: value})
    try:
        info = parse_metadata(props, "fuzzed.onnx")
    except ModelMetadataError as exc:
        assert "fuzzed.onnx" in str(exc)
        return
    assert all(isinstance(x, int) and x > 0 for x in info.state_shape), info.state_shape
    assert all(isinstance(x, str) for x in info.inputs + info.outputs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_cut_or_flipped_model_files_load_or_are_refused_by_name(tmp_path, data):
    raw = bytearray(SHIPPED.read_bytes())
    if data.draw(st.booleans(), label="cut"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            i = data.draw(st.integers(0, len(raw) - 1), label="at")
            raw[i] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_path / "fuzzed.onnx"
    path.write_bytes(bytes(raw))
    try:
        model = load_model(path)
    except ModelLoadError as exc:
        assert "fuzzed.onnx" in str(exc)
        return
    for contract in (OnnxStepper, DuetStepper):  # what SongModels.load checks next
        try:
            contract(model)
        except ModelLoadError:
            pass


def test_a_metadata_value_that_is_not_utf8_is_refused_by_name(tmp_path):
    """Found by the fuzz test above: one flipped byte inside a metadata string made onnxruntime's metadata map raise
    UnicodeDecodeError, a traceback instead of the loader's message."""
    raw = bytearray(SHIPPED.read_bytes())
    key, value = next((k, v) for k, v in PROPS.items() if len(v.encode()) > 2)
    at = raw.find(value.encode(), raw.find(key.encode()))
    assert at > 0
    raw[at] = 0xFB  # a lone UTF-8 continuation lead: not a valid start byte; the protobuf lengths are unchanged
    path = tmp_path / "damaged.onnx"
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError, match="damaged.onnx"):
        load_model(path)
