"""The DNN next-note melody model: a GRU over (token, position-in-beat), trained on sequences, run one step at a time.

``MelodyGRU`` is the sequence module used for training (teacher forcing over whole chunks). ``MelodyStep`` wraps
the same weights for one step, which is what the runtime calls and what ``export_onnx`` writes:

- inputs: ``token`` int64 [B] (the token at step t), ``pos`` int64 [B] (t % steps_per_beat),
  ``state`` float32 [L, B, H] (zeros before a tune's first token);
- outputs: ``logits`` float32 [B, 130] (unnormalised scores for the token at t + 1),
  ``state_out`` float32 [L, B, H] (feed back as ``state`` at t + 1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from liveperf import melody

INPUT_NAMES = ["token", "pos", "state"]
OUTPUT_NAMES = ["logits", "state_out"]
OPSET = 17


class MelodyGRU(nn.Module):
    """Token + position-in-beat embeddings (summed) -> GRU (``layers`` x ``hidden``) -> linear to 130 classes."""

    def __init__(self, embed: int = 96, hidden: int = 256, layers: int = 2, dropout: float = 0.0,
                 steps_per_beat: int = melody.DEFAULT_STEPS_PER_BEAT):
        super().__init__()
        self.config = {"embed": embed, "hidden": hidden, "layers": layers, "dropout": dropout,
                       "steps_per_beat": steps_per_beat}
        self.hidden, self.layers, self.steps_per_beat = hidden, layers, steps_per_beat
        self.token_emb = nn.Embedding(melody.NUM_CLASSES, embed)
        self.pos_emb = nn.Embedding(steps_per_beat, embed)
        self.gru = nn.GRU(embed, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, melody.NUM_CLASSES)

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, state: torch.Tensor | None = None):
        """``tokens``, ``pos``: int64 [B, T]; ``state``: [L, B, H] or None (zeros). Returns logits [B, T, 130], state."""
        x = self.drop(self.token_emb(tokens) + self.pos_emb(pos))
        out, state_out = self.gru(x, state)
        return self.head(self.drop(out)), state_out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class MelodyStep(nn.Module):
    """One step of a ``MelodyGRU`` (shares its weights): (token [B], pos [B], state) -> (logits [B, 130], state)."""

    def __init__(self, model: MelodyGRU):
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, pos: torch.Tensor, state: torch.Tensor):
        logits, state_out = self.model(token.unsqueeze(1), pos.unsqueeze(1), state)
        return logits[:, 0, :], state_out


def export_onnx(model: MelodyGRU, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the single-step model to ``path`` (batch dimension dynamic), with ``metadata`` in metadata_props."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = MelodyStep(model).eval()
    batch = 2
    example = (torch.zeros(batch, dtype=torch.int64), torch.zeros(batch, dtype=torch.int64),
               model.zero_state(batch))
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that a GRU exported at batch 2 may not run at other batch sizes; that holds
        # only when the initial state is not an input. Here it is (checked at batch 1 and 3 in the tests).
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # dynamo=False on purpose: the TorchScript exporter writes one ONNX GRU op and is deprecated, not removed.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            step, example, str(path), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, opset_version=OPSET,
            dynamic_axes={"token": {0: "batch"}, "pos": {0: "batch"}, "state": {1: "batch"},
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
