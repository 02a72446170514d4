"""The duet DNN (BachDuet-style): predicts the partner voice's token at step t from the performer's token at t, the
partner's own token at t - 1, which voice it plays and the position in the beat, carrying a GRU state.

``DuetGRU`` runs whole sequences (training); ``DuetStep`` is one step with the same weights, which is what
``export_onnx`` writes and the runtime (``liveperf.models.phrase_models.DuetStepper``) calls:

- inputs: ``performer_token`` int64 [B] (performer token at t - lag: lag 0 for harmonize's model, 1 for the live
  duet's), ``partner_prev`` int64 [B] (partner token at t - 1; ``HOLD`` before the first step), ``voice`` int64 [B]
  (0 bass, 1 tenor, 2 alto), ``pos`` int64 [B] (``melody.position_codes`` of t: representation v1 = t % steps per
  beat, v2 = meter and position in the bar), ``state`` float32 [L, B, H] (zeros at the start);
- outputs: ``logits`` float32 [B, 130] (the partner's token at t), ``state_out`` float32 [L, B, H].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.vae_model import export_module
from liveperf.music import melody

INPUT_NAMES = ["performer_token", "partner_prev", "voice", "pos", "state"]
OUTPUT_NAMES = ["logits", "state_out"]
NUM_VOICES = 3


class DuetGRU(nn.Module):
    """Summed embeddings (performer token, partner's previous token, voice, position in beat) -> GRU -> linear."""

    def __init__(self, embed: int = 96, hidden: int = 256, layers: int = 1,
                 steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT, version: int = melody.REPRESENTATION_VERSION):
        super().__init__()
        self.config = {"type": "GRU", "embed": embed, "hidden": hidden, "layers": layers,
                       "steps_per_beat": steps_per_beat, "representation_version": version}
        self.version = version
        self.hidden, self.layers, self.steps_per_beat = hidden, layers, steps_per_beat
        self.performer_emb = nn.Embedding(melody.NUM_CLASSES, embed)
        self.partner_emb = nn.Embedding(melody.NUM_CLASSES, embed)
        self.voice_emb = nn.Embedding(NUM_VOICES, embed)
        self.pos_emb = nn.Embedding(steps_per_beat, embed)
        if version >= 2:
            self.meter_emb = nn.Embedding(melody.NUM_METER_IDS, embed)
            self.bar_emb = nn.Embedding(melody.MAX_BAR_STEPS, embed)
        self.gru = nn.GRU(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, melody.NUM_CLASSES)

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, performer, partner_prev, voice, pos, state=None):
        """All int64 [B, T] (``voice`` [B, T] too); returns logits [B, T, 130], state [L, B, H]."""
        x = self.performer_emb(performer) + self.partner_emb(partner_prev) + self.voice_emb(voice)
        if self.version >= 2:
            meter = torch.div(pos, melody.MAX_BAR_STEPS, rounding_mode="floor")
            bar_pos = pos - meter * melody.MAX_BAR_STEPS
            x = x + self.meter_emb(meter) + self.bar_emb(bar_pos) + self.pos_emb(torch.remainder(bar_pos,
                                                                                                 self.steps_per_beat))
        else:
            x = x + self.pos_emb(pos)
        out, state_out = self.gru(x, state)
        return self.head(out), state_out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class DuetStep(nn.Module):
    """One step of a ``DuetGRU`` (shares its weights)."""

    def __init__(self, model: DuetGRU):
        super().__init__()
        self.model = model

    def forward(self, performer_token, partner_prev, voice, pos, state):
        logits, state_out = self.model(performer_token.unsqueeze(1), partner_prev.unsqueeze(1), voice.unsqueeze(1),
                                       pos.unsqueeze(1), state)
        return logits[:, 0, :], state_out


def export_onnx(model: DuetGRU, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    batch = 2
    zeros = torch.zeros(batch, dtype=torch.int64)
    example = (zeros, zeros, zeros, zeros, model.zero_state(batch))
    axes = {name: {0: "batch"} for name in INPUT_NAMES[:4]}
    axes.update({"state": {1: "batch"}, "logits": {0: "batch"}, "state_out": {1: "batch"}})
    return export_module(DuetStep(model), example, path, INPUT_NAMES, OUTPUT_NAMES, axes, metadata)
