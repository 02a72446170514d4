"""Stateful next-note stepper over an ONNX ``dnn_step`` model: feed one token, get logits for the next step.

Contract of the graph (checked on load): inputs ``token`` int64 [B], ``pos`` int64 [B] (the fed token's step within
its beat), ``state`` float32 [L, B, H]; outputs ``logits`` float32 [B, 130] (for the following step) and
``state_out`` float32 [L, B, H]. The stepper owns its state and preallocated input arrays; it is used by one thread
(the engine thread). A failed or non-finite step raises ``StepError`` and leaves the previous state in place.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from liveperf.melody import NUM_CLASSES
from liveperf.models.onnx_model import LoadedModel, ModelLoadError

STEP_INPUTS = ("token", "pos", "state")
STEP_OUTPUTS = ("logits", "state_out")


class StepError(RuntimeError):
    """A model step failed or produced non-finite logits."""


class StepModel(Protocol):
    steps_per_beat: int

    def reset(self) -> None:
        """Back to the start-of-tune state."""

    def feed(self, token: int, pos: int) -> np.ndarray:
        """Feed the token at one step (``pos`` = its step within the beat); return float32 logits (130,) for the next."""


class OnnxStepper:
    def __init__(self, model: LoadedModel) -> None:
        info = model.info
        if info.family != "dnn_step" or info.inputs != STEP_INPUTS or info.outputs != STEP_OUTPUTS:
            raise ModelLoadError(
                f"{model.path}: not a step model (family {info.family}, inputs {info.inputs}); expected dnn_step "
                f"with inputs {STEP_INPUTS} and outputs {STEP_OUTPUTS}"
            )
        if len(info.state_shape) != 2:
            raise ModelLoadError(f"{model.path}: state_shape {info.state_shape} must be [layers, hidden]")
        self.model = model
        self.steps_per_beat = info.steps_per_beat
        self._session = model.session
        layers, hidden = info.state_shape
        self._zero = np.zeros((layers, 1, hidden), dtype=np.float32)
        self._state = self._zero.copy()
        self._token = np.zeros(1, dtype=np.int64)
        self._pos = np.zeros(1, dtype=np.int64)
        self._feeds = {"token": self._token, "pos": self._pos, "state": self._state}

    def reset(self) -> None:
        self._state = self._zero.copy()

    def feed(self, token: int, pos: int) -> np.ndarray:
        self._token[0] = token
        self._pos[0] = pos % self.steps_per_beat
        self._feeds["state"] = self._state
        try:
            logits, state = self._session.run(None, self._feeds)
        except Exception as exc:  # onnxruntime's own exception types are private
            raise StepError(f"{self.model.path.name}: step failed ({type(exc).__name__}: {exc})") from exc
        out = logits[0]
        if out.shape != (NUM_CLASSES,) or not np.isfinite(out).all():
            raise StepError(f"{self.model.path.name}: non-finite or mis-shaped logits {out.shape}")
        self._state = state
        return out
