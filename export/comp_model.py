"""The comp DNN: the three voices under a melody (alto, tenor, bass of a Bach chorale), one step at a time.

At step t it sees the melody's token at t (the comp mode asks once the performer's note of that step is heard, or
is known not to come: ``liveperf.modes.comp``), the three voices' own tokens at t - 1 and the position in the bar,
and carries a GRU state; it predicts each voice's token at t (three heads on one state, so one call gives the whole
chord; the comp's voicing chooser, ``liveperf.modes.voicing``, picks the combination).

``CompGRU`` runs whole sequences (training); ``CompStep`` is one step with the same weights, which is what
``export_onnx`` writes and the runtime (``liveperf.models.comp_model.CompStepper``) calls:

- inputs: ``melody_token`` int64 [B] (the melody's token at t), ``voices_prev`` int64 [B, 3] (the voices' tokens at
  t - 1, in ``VOICE_ORDER``: bass, tenor, alto; ``HOLD`` before the first step), ``pos`` int64 [B]
  (``melody.position_codes`` of t), ``state`` float32 [L, B, H] (zeros at the start);
- outputs: ``logits`` float32 [B, 3, 130] (each voice's token at t, same order), ``state_out`` float32 [L, B, H].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.vae_model import export_module
from liveperf.music import melody

INPUT_NAMES = ["melody_token", "voices_prev", "pos", "state"]
OUTPUT_NAMES = ["logits", "state_out"]
VOICE_ORDER = ("bass", "tenor", "alto")  # low to high, the duet's voice ids 0, 1, 2
NUM_VOICES = len(VOICE_ORDER)


class CompGRU(nn.Module):
    """Summed embeddings (melody token, each voice's previous token, meter, bar position, beat position) -> GRU ->
    one linear head per voice."""

    def __init__(self, embed: int = 128, hidden: int = 256, layers: int = 1,
                 steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT):
        super().__init__()
        self.config = {"type": "GRU", "embed": embed, "hidden": hidden, "layers": layers,
                       "steps_per_beat": steps_per_beat, "representation_version": melody.REPRESENTATION_VERSION,
                       "voices": list(VOICE_ORDER)}
        self.hidden, self.layers, self.steps_per_beat = hidden, layers, steps_per_beat
        self.melody_emb = nn.Embedding(melody.NUM_CLASSES, embed)
        self.voice_embs = nn.ModuleList(nn.Embedding(melody.NUM_CLASSES, embed) for _ in VOICE_ORDER)
        self.meter_emb = nn.Embedding(melody.NUM_METER_IDS, embed)
        self.bar_emb = nn.Embedding(melody.MAX_BAR_STEPS, embed)
        self.pos_emb = nn.Embedding(steps_per_beat, embed)
        self.gru = nn.GRU(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, NUM_VOICES * melody.NUM_CLASSES)

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, melody_tok, voices_prev, pos, state=None):
        """``melody_tok``, ``pos`` int64 [B, T]; ``voices_prev`` int64 [B, T, 3]; returns logits [B, T, 3, 130] and
        the state [L, B, H]."""
        x = self.melody_emb(melody_tok)
        for v, emb in enumerate(self.voice_embs):
            x = x + emb(voices_prev[..., v])
        meter = torch.div(pos, melody.MAX_BAR_STEPS, rounding_mode="floor")
        bar_pos = pos - meter * melody.MAX_BAR_STEPS
        x = x + self.meter_emb(meter) + self.bar_emb(bar_pos) + self.pos_emb(torch.remainder(bar_pos,
                                                                                             self.steps_per_beat))
        out, state_out = self.gru(x, state)
        logits = self.head(out)
        return logits.reshape(logits.shape[0], logits.shape[1], NUM_VOICES, melody.NUM_CLASSES), state_out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class CompStep(nn.Module):
    """One step of a ``CompGRU`` (shares its weights)."""

    def __init__(self, model: CompGRU):
        super().__init__()
        self.model = model

    def forward(self, melody_token, voices_prev, pos, state):
        logits, state_out = self.model(melody_token.unsqueeze(1), voices_prev.unsqueeze(1), pos.unsqueeze(1), state)
        return logits[:, 0], state_out


def export_onnx(model: CompGRU, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    batch = 2
    zeros = torch.zeros(batch, dtype=torch.int64)
    example = (zeros, torch.zeros(batch, NUM_VOICES, dtype=torch.int64), zeros, model.zero_state(batch))
    axes = {"melody_token": {0: "batch"}, "voices_prev": {0: "batch"}, "pos": {0: "batch"},
            "state": {1: "batch"}, "logits": {0: "batch"}, "state_out": {1: "batch"}}
    return export_module(CompStep(model), example, path, INPUT_NAMES, OUTPUT_NAMES, axes, metadata)
