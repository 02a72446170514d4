"""The 2-bar phrase GAN (WGAN-GP): a generator z -> per-step logits and a critic over one-hot phrases.

- ``PhraseGenerator``: ``z`` float32 [B, Z] -> ``logits`` float32 [B, 32, 130]; the same non-autoregressive
  MLP + convolution body as the VAE decoder (``export.vae_model.PhraseDecoder``). During training the critic sees
  ``relax(logits)`` (below); at run time a phrase is the argmax (or a per-step sample) of the logits.
- ``relax``: what the critic sees of a generated phrase during training. ``softmax`` (the first GAN's recipe) lets
  the critic tell real from fake by softness alone; ``st`` (straight-through: the forward is the one-hot argmax,
  the phrase the runtime plays, gradients flow through the softmax) and ``gumbel`` (straight-through Gumbel-softmax
  sample) show it hard one-hot phrases.
- ``phrase_features``: differentiable per-batch interval and scale statistics of (relaxed) one-hot phrases -- the
  share of leaps larger than a fifth and the in-scale rate, computed as ``export.phrase_data.phrase_stats`` does
  for hard phrases -- for the generator's statistics-matching term.
- ``PhraseCritic``: ``phrase_onehot`` float32 [B, 32, 130] -> ``score`` float32 [B] (higher = more like the
  training phrases). A per-step linear layer (130 -> 64) -> the 32 steps flattened -> 2-layer MLP. No
  normalisation layers, so the gradient penalty applies per example; no convolutions, because the penalty's
  double backward through a 130-channel convolution cost ~0.85 s per critic step on this CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from export.vae_model import PhraseDecoder, export_module
from liveperf.music import melody

GENERATOR_INPUTS, GENERATOR_OUTPUTS = ["z"], ["logits"]
CRITIC_INPUTS, CRITIC_OUTPUTS = ["phrase_onehot"], ["score"]


class PhraseGenerator(PhraseDecoder):
    """z -> logits [B, 32, 130] (see ``PhraseDecoder``)."""


class PhraseCritic(nn.Module):
    def __init__(self, steps: int = 32, features: int = 64, hidden: int = 256):
        super().__init__()
        self.config = {"type": "per-step linear + MLP critic", "steps": steps, "features": features,
                       "hidden": hidden}
        self.steps = steps
        self.act = nn.LeakyReLU(0.2)
        self.inp = nn.Linear(melody.NUM_CLASSES, features)
        self.mlp = nn.Sequential(nn.Linear(steps * features, hidden), self.act, nn.Linear(hidden, hidden), self.act,
                                 nn.Linear(hidden, 1))

    def forward(self, phrase_onehot: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(phrase_onehot))  # [B, T, F]
        return self.mlp(h.flatten(1)).squeeze(-1)


RELAXATIONS = ("softmax", "st", "gumbel")


def relax(logits: torch.Tensor, how: str) -> torch.Tensor:
    """Generator logits [B, T, 130] -> the phrase the critic sees (see the module docstring)."""
    if how == "softmax":
        return torch.softmax(logits, dim=-1)
    if how == "gumbel":
        return F.gumbel_softmax(logits, tau=1.0, hard=True, dim=-1)
    soft = torch.softmax(logits, dim=-1)
    hard = F.one_hot(soft.argmax(-1), melody.NUM_CLASSES).to(soft.dtype)
    return hard + soft - soft.detach()


def _feature_constants(leap_semitones: int):
    from export.phrase_data import SCALES  # numpy only; imported here to keep the module's import light
    p = np.arange(melody.NUM_PITCHES)
    leap = torch.from_numpy((np.abs(p[:, None] - p[None, :]) > leap_semitones).astype(np.float32))
    fold = torch.from_numpy((p[:, None] % 12 == np.arange(12)[None, :]).astype(np.float32))  # [128, 12]
    scales = torch.from_numpy(SCALES.astype(np.float32))  # [24, 12]
    return leap, fold, scales


_LEAP, _FOLD, _SCALES = _feature_constants(7)
_SAME = torch.eye(melody.NUM_PITCHES)


def phrase_features(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Batch statistics of phrases x [B, T, 130] (one-hot or relaxed): ``leap_rate`` (expected share of intervals
    between consecutive onsets with |interval| > 7, pooled over the batch), ``repeat_rate`` (the same for a
    repeated pitch), ``onset_rate`` (onsets per step) and ``in_scale_rate`` (mean over phrases of the best
    major/minor scale's share of onsets). Exact for one-hot x; differentiable in x."""
    q = x[..., melody.PITCH_OFFSET:]  # [B, T, 128] onset probabilities per pitch
    onset = q.sum(-1)  # [B, T]
    steps = x.shape[1]
    # w[t, s] = P(no onset strictly between t and s) for s > t
    log_gap = torch.log(1.0 - onset + 1e-4)
    c = torch.cumsum(log_gap, dim=1)  # c[t] = sum_{u <= t}
    c_prev = torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], dim=1)  # sum_{u < s}
    upper = torch.triu(torch.ones(steps, steps, dtype=x.dtype), diagonal=1)
    w = torch.exp((c_prev[:, None, :] - c[:, :, None]).clamp(max=0.0)) * upper  # [B, T, T]
    leap_pairs = torch.bmm(q @ _LEAP, q.transpose(1, 2))  # [B, T, T]
    pairs = onset[:, :, None] * onset[:, None, :]
    intervals = (w * pairs).sum().clamp(min=1e-6)
    leap_rate = (w * leap_pairs).sum() / intervals
    repeat_rate = (w * torch.bmm(q @ _SAME, q.transpose(1, 2))).sum() / intervals
    hist = q.sum(1) @ _FOLD  # [B, 12]
    fit = hist @ _SCALES.T  # [B, 24]
    in_scale = fit.max(-1).values / hist.sum(-1).clamp(min=1e-6)
    has = (hist.sum(-1) > 0.5).to(x.dtype)
    in_scale_rate = (in_scale * has).sum() / has.sum().clamp(min=1.0)
    return {"leap_rate": leap_rate, "repeat_rate": repeat_rate, "onset_rate": onset.mean(),
            "in_scale_rate": in_scale_rate}


def gradient_penalty(critic: PhraseCritic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean (||grad_x critic(x)|| - 1)^2 at random points between real and fake phrases."""
    eps = torch.rand(real.shape[0], 1, 1)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def export_generator(gen: PhraseGenerator, path: str | Path, metadata=None) -> Path:
    example = (torch.zeros(2, gen.latent),)
    return export_module(gen, example, path, GENERATOR_INPUTS, GENERATOR_OUTPUTS,
                         {"z": {0: "batch"}, "logits": {0: "batch"}}, metadata)


def export_critic(critic: PhraseCritic, path: str | Path, metadata=None) -> Path:
    example = (torch.zeros(2, critic.steps, melody.NUM_CLASSES),)
    return export_module(critic, example, path, CRITIC_INPUTS, CRITIC_OUTPUTS,
                         {"phrase_onehot": {0: "batch"}, "score": {0: "batch"}}, metadata)
