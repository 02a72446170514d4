"""Stateful next-note stepper over an ONNX ``dnn_step`` model: feed one token, get logits for the next step.

Contract of the graph (checked on load), by the model's representation version:
- v1: inputs ``token`` int64 [B], ``pos`` int64 [B] (the fed token's step within its beat), ``state``;
- v2: inputs ``token``, ``pos`` (``melody.position_codes``: meter and position in the bar), ``lookback`` int64
  [B, 2] (the tokens fed one and two bars before the predicted step, ``HOLD`` before the reset), ``state``;
outputs ``logits`` float32 [B, 130] (for the following step) and ``state_out`` float32 [L, B, H].

Callers feed the song step of each token (bar lines where ``step % steps_per_bar == 0``); the stepper turns it into
the model's inputs, and keeps the history the lookback needs (the tokens fed since the last reset, which must be
one per consecutive step). The stepper owns its state and preallocated input arrays; it is used by one thread (the
engine thread). A failed or non-finite step raises ``StepError`` and leaves the previous state in place.
``fork(n)`` gives ``n`` copies of the current state as one batched stepper (``BatchStepper``): answer planning.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from liveperf.music import melody
from liveperf.music.melody import NUM_CLASSES
from liveperf.models.onnx_model import LoadedModel, ModelLoadError

STEP_INPUTS = ("token", "pos", "state")  # representation v1
STEP_INPUTS_V2 = ("token", "pos", "lookback", "state")
STEP_OUTPUTS = ("logits", "state_out")


class StepError(RuntimeError):
    """A model step failed or produced non-finite logits."""


class StepModel(Protocol):
    steps_per_beat: int

    def reset(self) -> None:
        """Back to the start-of-tune state."""

    def feed(self, token: int, step: int) -> np.ndarray:
        """Feed the token at song ``step``; return float32 logits (130,) for step + 1."""


class OnnxStepper:
    def __init__(self, model: LoadedModel, meter: tuple[int, int] = (4, 4)) -> None:
        info = model.info
        version = info.representation_version
        expected = STEP_INPUTS_V2 if version >= 2 else STEP_INPUTS
        if info.family != "dnn_step" or info.inputs != expected or info.outputs != STEP_OUTPUTS:
            raise ModelLoadError(
                f"{model.path}: not a step model (family {info.family}, representation v{version}, inputs "
                f"{info.inputs}); expected dnn_step with inputs {expected} and outputs {STEP_OUTPUTS}"
            )
        if len(info.state_shape) != 2:
            raise ModelLoadError(f"{model.path}: state_shape {info.state_shape} must be [layers, hidden]")
        self.model = model
        self.version = version
        self.meter = tuple(meter)
        self.steps_per_beat = info.steps_per_beat
        self.steps_per_bar = melody.steps_per_bar(self.meter, self.steps_per_beat)
        self._position = melody.position_coder(self.meter, self.steps_per_beat, version)
        self._session = model.session
        layers, hidden = info.state_shape
        self._zero = np.zeros((layers, 1, hidden), dtype=np.float32)
        self._state = self._zero.copy()
        self._token = np.zeros(1, dtype=np.int64)
        self._pos = np.zeros(1, dtype=np.int64)
        self._back = np.zeros((1, 2), dtype=np.int64)
        self._feeds = {"token": self._token, "pos": self._pos, "state": self._state}
        if version >= 2:
            self._feeds["lookback"] = self._back
        self._ring = np.zeros(2 * self.steps_per_bar, dtype=np.int64)  # tokens fed since reset, by count
        self._fed = 0

    def reset(self) -> None:
        self._state = self._zero.copy()
        self._fed = 0

    def position(self, step: int) -> int:
        return self._position(step)

    def lookback(self, fed: int, ring: np.ndarray) -> tuple[int, int]:
        """Tokens one and two bars before the step after the ``fed``-th token (HOLD before the reset)."""
        bar, size = self.steps_per_bar, ring.shape[-1]
        one, two = fed + 1 - bar, fed + 1 - 2 * bar
        return (int(ring[one % size]) if one >= 0 else melody.HOLD, int(ring[two % size]) if two >= 0 else melody.HOLD)

    def stage(self, token: int, step: int) -> tuple[int, tuple[int, int], int]:
        """Take ``token`` (fed at song ``step``) into the lookback history before the model runs; returns the
        model's ``pos`` input, its ``lookback`` input and what ``unstage`` needs to take the token back out (a failed
        step). ``commit`` counts it once the step succeeded. ``feed`` does all three; a fused graph that runs this
        model's step itself (``liveperf.models.fused_duet``) calls them directly."""
        n = self._fed
        prev = int(self._ring[n % self._ring.size])
        back = (melody.HOLD, melody.HOLD)
        if self.version >= 2:
            self._ring[n % self._ring.size] = token
            back = self.lookback(n, self._ring)
        return self.position(step), back, prev

    def unstage(self, prev: int) -> None:
        self._ring[self._fed % self._ring.size] = prev

    def commit(self) -> None:
        self._fed += 1

    def feed(self, token: int, step: int) -> np.ndarray:
        self._token[0] = token
        self._pos[0], back, prev = self.stage(token, step)
        if self.version >= 2:
            self._back[0] = back
        self._feeds["state"] = self._state
        try:
            logits, state = self._session.run(None, self._feeds)
        except Exception as exc:  # onnxruntime's own exception types are private
            self.unstage(prev)
            raise StepError(f"{self.model.path.name}: step failed ({type(exc).__name__}: {exc})") from exc
        out = logits[0]
        if out.shape != (NUM_CLASSES,) or not np.isfinite(out).all():
            self.unstage(prev)
            raise StepError(f"{self.model.path.name}: non-finite or mis-shaped logits {out.shape}")
        self._state = state
        self.commit()
        return out

    def fork(self, n: int) -> "BatchStepper":
        """``n`` copies of this stepper as it is now (state and history), stepped together."""
        return BatchStepper(self, n)


class BatchStepper:
    """``n`` rows that start as copies of an ``OnnxStepper`` and are fed one token per row per step (one batched
    model call). Engine thread only; used to plan answers (``liveperf.modes.answer_plan``)."""

    def __init__(self, parent: OnnxStepper, n: int) -> None:
        self.parent = parent
        self.n = n
        layers, _, hidden = parent._state.shape
        self._state = np.ascontiguousarray(np.broadcast_to(parent._state, (layers, n, hidden)))
        self._ring = np.repeat(parent._ring[None, :], n, axis=0)
        self._fed = parent._fed
        self._feeds = {"token": np.zeros(n, np.int64), "pos": np.zeros(n, np.int64), "state": self._state}
        if parent.version >= 2:
            self._feeds["lookback"] = np.zeros((n, 2), np.int64)

    def feed(self, tokens: np.ndarray, step: int) -> np.ndarray:
        """Feed ``tokens`` (int [n]) at song ``step``; returns float32 logits [n, 130] for step + 1."""
        p = self.parent
        self._feeds["token"][:] = tokens
        self._feeds["pos"][:] = p.position(step)
        if p.version >= 2:
            size = self._ring.shape[1]
            self._ring[:, self._fed % size] = tokens
            bar = p.steps_per_bar
            for col, back in enumerate((bar, 2 * bar)):
                src = self._fed + 1 - back
                self._feeds["lookback"][:, col] = self._ring[:, src % size] if src >= 0 else melody.HOLD
        self._feeds["state"] = self._state
        try:
            logits, state = p._session.run(None, self._feeds)
        except Exception as exc:  # onnxruntime's own exception types are private
            raise StepError(f"{p.model.path.name}: batched step failed ({type(exc).__name__}: {exc})") from exc
        if logits.shape != (self.n, NUM_CLASSES) or not np.isfinite(logits).all():
            raise StepError(f"{p.model.path.name}: non-finite or mis-shaped logits {logits.shape}")
        self._state = state
        self._fed += 1
        return logits
