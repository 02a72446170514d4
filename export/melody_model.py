"""The DNN next-note melody model: a GRU over (token, position, lookback), trained on sequences, run one step at a
time.

``MelodyGRU`` is the sequence module used for training (teacher forcing over whole chunks). ``MelodyStep`` wraps
the same weights for one step, which is what the runtime calls and what ``export_onnx`` writes (representation v2):

- inputs: ``token`` int64 [B] (the token at step t), ``pos`` int64 [B] (``melody.position_codes`` of t: meter and
  position in the bar), ``lookback`` int64 [B, 2] (the tokens one and two bars before t + 1, ``HOLD`` before the
  model's reset: Magenta's Lookback RNN, so repeating a bar is one step away), ``state`` float32 [L, B, H];
- outputs: ``logits`` float32 [B, 130] (unnormalised scores for the token at t + 1),
  ``state_out`` float32 [L, B, H] (feed back as ``state`` at t + 1).

The model splits ``pos`` into meter id, bar position and beat position inside the graph and sums one embedding per
input. (Representation v1 models had inputs ``token``, ``pos`` = t % steps_per_beat and ``state`` only.)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from liveperf.music import melody

INPUT_NAMES = ["token", "pos", "lookback", "state"]
OUTPUT_NAMES = ["logits", "state_out"]
OPSET = 17


class MelodyGRU(nn.Module):
    """Summed embeddings (token, meter, bar position, beat position, token 1 bar back, token 2 bars back) -> GRU
    (``layers`` x ``hidden``) -> linear to 130 classes."""

    def __init__(self, embed: int = 96, hidden: int = 256, layers: int = 2, dropout: float = 0.0,
                 steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT):
        super().__init__()
        self.config = {"embed": embed, "hidden": hidden, "layers": layers, "dropout": dropout,
                       "steps_per_beat": steps_per_beat, "inputs": "token, meter + bar position, lookback 1 and 2 bars"}
        self.hidden, self.layers, self.steps_per_beat = hidden, layers, steps_per_beat
        self.token_emb = nn.Embedding(melody.NUM_CLASSES, embed)
        self.meter_emb = nn.Embedding(melody.NUM_METER_IDS, embed)
        self.bar_emb = nn.Embedding(melody.MAX_BAR_STEPS, embed)
        self.pos_emb = nn.Embedding(steps_per_beat, embed)
        self.back1_emb = nn.Embedding(melody.NUM_CLASSES, embed)
        self.back2_emb = nn.Embedding(melody.NUM_CLASSES, embed)
        self.gru = nn.GRU(embed, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, melody.NUM_CLASSES)

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, lookback: torch.Tensor,
                state: torch.Tensor | None = None):
        """``tokens``, ``pos``: int64 [B, T]; ``lookback`` int64 [B, T, 2]; ``state``: [L, B, H] or None (zeros).
        Returns logits [B, T, 130], state."""
        meter = torch.div(pos, melody.MAX_BAR_STEPS, rounding_mode="floor")
        bar_pos = pos - meter * melody.MAX_BAR_STEPS
        beat_pos = torch.remainder(bar_pos, self.steps_per_beat)
        x = (self.token_emb(tokens) + self.meter_emb(meter) + self.bar_emb(bar_pos) + self.pos_emb(beat_pos)
             + self.back1_emb(lookback[..., 0]) + self.back2_emb(lookback[..., 1]))
        x = self.drop(x)
        out, state_out = self.gru(x, state)
        return self.head(self.drop(out)), state_out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class MelodyStep(nn.Module):
    """One step of a ``MelodyGRU`` (shares its weights): (token [B], pos [B], lookback [B, 2], state) -> (logits
    [B, 130], state)."""

    def __init__(self, model: MelodyGRU):
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, pos: torch.Tensor, lookback: torch.Tensor, state: torch.Tensor):
        logits, state_out = self.model(token.unsqueeze(1), pos.unsqueeze(1), lookback.unsqueeze(1), state)
        return logits[:, 0, :], state_out


def export_onnx(model: MelodyGRU, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the single-step model to ``path`` (batch dimension dynamic), with ``metadata`` in metadata_props."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = MelodyStep(model).eval()
    batch = 2
    example = (torch.zeros(batch, dtype=torch.int64), torch.zeros(batch, dtype=torch.int64),
               torch.zeros(batch, 2, dtype=torch.int64), model.zero_state(batch))
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that a GRU exported at batch 2 may not run at other batch sizes; that holds
        # only when the initial state is not an input. Here it is (checked at batch 1 and 3 in the tests).
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # dynamo=False on purpose: the TorchScript exporter writes one ONNX GRU op and is deprecated, not removed.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            step, example, str(path), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, opset_version=OPSET,
            dynamic_axes={"token": {0: "batch"}, "pos": {0: "batch"}, "lookback": {0: "batch"}, "state": {1: "batch"},
                          "logits": {0: "batch"}, "state_out": {1: "batch"}},
            dynamo=False,
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in sorted((metadata or {}).items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path
