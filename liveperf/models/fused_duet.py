"""The anticipating duet's per-step model work in one onnxruntime call: a ``duet_anticipation`` graph.

``export/fuse_duet.py`` builds it from a same-step duet model and its predictor of the performer (the shipped pair:
``duet_dnn`` + ``soprano_dnn`` -> ``duet_anticipation``), computing exactly what the two models compute (module
docstring there). One call, for the performer's token at step t - 1:
- the predictor's step on it -> log-probabilities of the performer's token at t (``pred_logp``) and the likeliest
  ``candidates`` tokens (``cand``, likeliest first, ties to the lower token);
- the duet model's step on it and the partner's token at t - 2 -> the duet state after t - 1;
- from that state, the duet model's answer at t to each candidate and to ``HOLD`` (``rows``, log-softmax,
  [candidates + 1, 130]), the partner's token at t - 1 given.

Inputs are row indices into the graph's stacked input-gate tables (offsets in ``liveperf.fused_tables``), the two
states and the duet state's recurrent gates (``duet_gates``: carried from the last call, whose peek made them;
zeros with the zero state). ``FusedDuetStep`` owns the three and the preallocated inputs; engine thread only. A
failed or non-finite call raises ``StepError`` and keeps the previous states.

A song uses the fused graph only for the exact pair it was built from (``liveperf.fused_from``: SHA-256 of both
files, checked at load, ``find_fused``); any other pair plays the two-model path, which computes the same.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort

from liveperf.music import melody
from liveperf.models.metadata import ModelMetadataError, json_field
from liveperf.models.onnx_model import LoadedModel, ModelLoadError, load_model, shipped_models_dir
from liveperf.models.step_model import StepError

FAMILY = "duet_anticipation"
INPUTS = ("pred_rows", "duet_rows", "peek_rows", "pred_state", "duet_state", "duet_gates")
OUTPUTS = ("rows", "cand", "pred_logp", "pred_state_out", "duet_state_out", "duet_gates_out")
SHIPPED = "duet_anticipation"


@functools.lru_cache(maxsize=32)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    st = Path(path).stat()
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


def _meta(model: LoadedModel, key: str):
    try:
        return json_field(model.session.get_modelmeta().custom_metadata_map, key, str(model.path))
    except ModelMetadataError as exc:
        raise ModelLoadError(str(exc)) from None


class FusedDuetStep:
    def __init__(self, model: LoadedModel) -> None:
        info = model.info
        if info.family != FAMILY or info.inputs != INPUTS or info.outputs != OUTPUTS:
            raise ModelLoadError(f"{model.path}: not a {FAMILY} model (family {info.family}, inputs {info.inputs})")
        self.model = model
        self.fused_from = _meta(model, "fused_from")
        self.candidates = int(_meta(model, "candidates"))
        tables = _meta(model, "fused_tables")
        try:
            p, d = tables["predictor"], tables["duet"]
            self._p_back1, self._p_back2, self._p_pos = int(p["back1"]), int(p["back2"]), int(p["pos"])
            self._d_partner, self._d_voice, self._d_pos = int(d["partner"]), int(d["voice"]), int(d["pos"])
            (_, p_hidden), (_, d_hidden) = _meta(model, "predictor_state_shape"), info.state_shape
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{model.path}: fused metadata incomplete ({exc})") from None
        self._session = model.session
        self._tokens = np.full(self.candidates + 1, melody.HOLD, dtype=np.int64)  # the rows' tokens: cand, HOLD
        # onnxruntime reads and writes bound buffers (IOBinding: measured ~18 µs a call less than ``run``, which
        # converts every input and allocates every output). The states live in two sets, A and B: one call reads
        # one set and writes the other, the next the other way round (no copies; a failed call leaves the set it
        # read untouched).
        self._rows_in = {"pred_rows": np.zeros(4, np.int64), "duet_rows": np.zeros(4, np.int64),
                         "peek_rows": np.zeros(3, np.int64)}
        self._sets = [(np.zeros((1, p_hidden), np.float32), np.zeros((1, d_hidden), np.float32),
                       np.zeros((1, 3 * d_hidden), np.float32)) for _ in range(2)]
        self._rows = np.zeros((self.candidates + 1, melody.NUM_CLASSES), np.float32)
        self._pred_logp = np.zeros((1, melody.NUM_CLASSES), np.float32)
        self._bindings = [self._bind(self._sets[k], self._sets[1 - k]) for k in (0, 1)]
        self.reset()

    def _bind(self, read: tuple, write: tuple):
        binding = self._session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy  # shares the array's memory (CPU)
        for name, array in list(self._rows_in.items()) + list(zip(("pred_state", "duet_state", "duet_gates"), read)):
            binding.bind_ortvalue_input(name, value(array))
        outputs = {"rows": self._rows, "cand": self._tokens[:-1].reshape(1, self.candidates),
                   "pred_logp": self._pred_logp, **dict(zip(("pred_state_out", "duet_state_out", "duet_gates_out"),
                                                            write))}
        for name, array in outputs.items():
            binding.bind_ortvalue_output(name, value(array))
        return binding

    def matches(self, duet_path: Path, predictor_path: Path) -> bool:
        """Was this graph built from exactly these two files?"""
        return self.fused_from == {"duet": file_sha256(duet_path), "predictor": file_sha256(predictor_path)}

    def reset(self) -> None:
        for buffers in self._sets:
            for b in buffers:
                b.fill(0.0)
        self._cur = 0  # the set the next call reads

    @property
    def duet_state(self) -> np.ndarray:
        """The duet model's state after the last call ([1, H]; this object's buffer: copy it to keep it)."""
        return self._sets[self._cur][1]

    def step(self, performer: int, pred_pos: int, back: tuple[int, int], partner_before: int, voice: int,
             duet_pos_prev: int, partner_prev: int, duet_pos: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed the performer's token at t - 1 (``pred_pos``, ``back``: the predictor's position and lookback inputs
        for it; ``duet_pos_prev``: the duet model's position input at t - 1, ``duet_pos`` at t); returns (rows
        [candidates + 1, 130] float32 log-probabilities, their performer tokens [candidates + 1] int64 (the
        candidates, then ``HOLD``), the predictor's log-probabilities [130] float32): this object's buffers,
        rewritten by the next call. ``duet_state`` is then the duet model's state after t - 1."""
        f = self._rows_in
        rows_p, rows_d, rows_k = f["pred_rows"], f["duet_rows"], f["peek_rows"]
        rows_p[0], rows_p[1], rows_p[2], rows_p[3] = performer, self._p_back1 + back[0], self._p_back2 + back[1], \
            self._p_pos + pred_pos
        rows_d[0], rows_d[1], rows_d[2], rows_d[3] = performer, self._d_partner + partner_before, \
            self._d_voice + voice, self._d_pos + duet_pos_prev
        rows_k[0], rows_k[1], rows_k[2] = self._d_partner + partner_prev, self._d_voice + voice, self._d_pos + duet_pos
        try:
            self._session.run_with_iobinding(self._bindings[self._cur])
        except Exception as exc:  # onnxruntime's own exception types are private
            raise StepError(f"{self.model.path.name}: fused step failed ({type(exc).__name__}: {exc})") from exc
        # Both new states feed these two outputs in this call: a non-finite state shows in their sums.
        if not math.isfinite(float(self._rows.sum()) + float(self._pred_logp.sum())):
            raise StepError(f"{self.model.path.name}: non-finite output")
        self._cur = 1 - self._cur
        return self._rows, self._tokens, self._pred_logp[0]


def find_fused(duet: LoadedModel, predictor: LoadedModel, cache: dict | None = None,
               provider: str = "cpu") -> LoadedModel | None:
    """The shipped fused graph when it was built from exactly ``duet`` and ``predictor``, else None (the two-model
    path plays). A fused file that does not load is the same as none: it only ever saves time."""
    path = shipped_models_dir() / f"{SHIPPED}.onnx"
    if duet.info.performer_lag_steps != 0 or not path.is_file():
        return None
    cache = {} if cache is None else cache
    try:
        if path not in cache:
            cache[path] = load_model(path, provider)
        if not FusedDuetStep(cache[path]).matches(duet.path, predictor.path):
            return None
    except (ModelLoadError, OSError):
        return None
    return cache[path]
