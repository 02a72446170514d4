"""The 2-bar phrase GAN (WGAN-GP): a generator z -> per-step logits and a critic over one-hot phrases.

- ``PhraseGenerator``: ``z`` float32 [B, Z] -> ``logits`` float32 [B, 32, 130]; the same non-autoregressive
  MLP + convolution body as the VAE decoder (``export.vae_model.PhraseDecoder``). During training the critic sees
  ``softmax(logits)`` (a relaxed one-hot); at run time a phrase is the argmax (or a per-step sample) of the logits.
- ``PhraseCritic``: ``phrase_onehot`` float32 [B, 32, 130] -> ``score`` float32 [B] (higher = more like the
  training phrases). A per-step linear layer (130 -> 64) -> the 32 steps flattened -> 2-layer MLP. No
  normalisation layers, so the gradient penalty applies per example; no convolutions, because the penalty's
  double backward through a 130-channel convolution cost ~0.85 s per critic step on this CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.vae_model import PhraseDecoder, export_module
from liveperf import melody

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
