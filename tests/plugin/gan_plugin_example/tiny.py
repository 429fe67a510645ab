"""A tiny fully connected pair, for quick runs: G one hidden layer, D one hidden layer."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_lightning.core.options import Option
from gan_lightning.models import MODELS, Discriminator
from gan_lightning.models.registry import describe


class TinyGenerator(nn.Module):
    """Linear(latent, hidden), ReLU, Linear(hidden, C*H*W), Tanh."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], hidden: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(image_shape)),
                                 nn.Tanh())  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Noise (B, latent_dim) -> images (B, C, H, W) in [-1, 1]."""
        return self.net(z).view(len(z), *self.image_shape)


class TinyDiscriminator(Discriminator):
    """Flatten, Linear(C*H*W, hidden), LeakyReLU(0.2); a linear head to one logit."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), hidden), nn.LeakyReLU(0.2))
        self.head = nn.Linear(hidden, 1)
        self.feature_dim = hidden


@MODELS.register("tiny")
@describe(options=[Option("tiny_hidden", 32, "tiny model: hidden width of G and D", positive=True, resume="refuse")])
def tiny(*, latent_dim: int, channels: int, image_size: int, tiny_hidden: int = 32, **_: object):
    """The tiny pair for images of `channels` x `image_size` x `image_size`."""
    shape = (channels, image_size, image_size)
    return TinyGenerator(latent_dim, shape, tiny_hidden), TinyDiscriminator(shape, tiny_hidden)
