"""The comp's three voices one step at a time over a ``comp_step`` model (``export.comp_model``); no torch.

``CompStepper.feed(melody_token, voices_prev, step)``: the melody's token at song step t, the voices' tokens at
t - 1 (bass, tenor, alto; ``HOLD`` at the first step) -> float32 logits [3, 130] for each voice's token at t. The
stepper owns the GRU state [L, 1, H]; ``state`` / ``set_state`` let the comp feed a step again when the melody
token it assumed turns out wrong (a note that came after the step was decided). A failed or non-finite step raises
``StepError`` and keeps the previous state. Loading validates family and I/O names (``ModelLoadError`` naming the
file). Engine thread only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from liveperf.music import melody
from liveperf.models.onnx_model import LoadedModel
from liveperf.models.phrase_models import _checked_stepper, _load
from liveperf.models.step_model import StepError

COMP_STEP = ("comp_step", ("melody_token", "voices_prev", "pos", "state"), ("logits", "state_out"))
NUM_VOICES = 3  # bass, tenor, alto: low to high


class CompStepper:
    def __init__(self, model: LoadedModel, meter: tuple[int, int] = (4, 4)):
        _checked_stepper(model, COMP_STEP)
        self.model = model
        self.steps_per_beat = model.info.steps_per_beat
        self.meter = tuple(meter)
        self._position = melody.position_coder(self.meter, self.steps_per_beat, model.info.representation_version)
        self._session = model.session
        self._voices = np.zeros((1, NUM_VOICES), dtype=np.int64)
        self._melody = np.zeros(1, dtype=np.int64)
        self._pos = np.zeros(1, dtype=np.int64)
        self.reset()

    @classmethod
    def load(cls, name_or_path: str | Path = "comp_dnn", provider: str = "cpu") -> "CompStepper":
        return cls(_load(name_or_path, COMP_STEP, provider))

    def reset(self) -> None:
        layers, hidden = self.model.info.state_shape
        self._state = np.zeros((layers, 1, hidden), dtype=np.float32)

    @property
    def state(self) -> np.ndarray:
        return self._state

    def set_state(self, state: np.ndarray) -> None:
        self._state = state

    def feed(self, melody_token: int, voices_prev, step: int) -> np.ndarray:
        self._melody[0] = melody_token
        self._voices[0] = voices_prev
        self._pos[0] = self._position(step)
        feeds = {"melody_token": self._melody, "voices_prev": self._voices, "pos": self._pos, "state": self._state}
        try:
            logits, state = self._session.run(None, feeds)
        except Exception as exc:  # onnxruntime's own exception types are private
            raise StepError(f"{self.model.path.name}: step failed ({type(exc).__name__}: {exc})") from exc
        if logits.shape != (1, NUM_VOICES, melody.NUM_CLASSES) or not np.isfinite(logits).all():
            raise StepError(f"{self.model.path.name}: non-finite or mis-shaped logits {logits.shape}")
        self._state = state
        return logits[0]
