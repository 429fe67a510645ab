"""The cs231n fully connected GAN: an MLP generator and an MLP discriminator."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_lightning.models.base import Discriminator
from gan_lightning.models.registry import MODELS, describe


class MLPGenerator(nn.Module):
    """Linear(latent, 1024), ReLU, Linear(1024, 1024), ReLU, Linear(1024, C*H*W), Tanh."""

    def __init__(self, latent_dim: int = 96, image_shape: tuple[int, int, int] = (1, 28, 28), hidden: int = 1024):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, math.prod(self.image_shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map noise (B, latent_dim) to images (B, C, H, W) in [-1, 1]."""
        x = self.net(z)  # (B, C*H*W)
        return x.view(z.shape[0], *self.image_shape)  # (B, C, H, W)


class MLPDiscriminator(Discriminator):
    """Flatten, Linear(C*H*W, 256), LeakyReLU(0.01), Linear(256, 256), LeakyReLU(0.01), Linear(256, 1)."""

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),  # (B, C*H*W)
            nn.Linear(math.prod(image_shape), hidden),
            nn.LeakyReLU(0.01),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.01),
        )  # (B, 256)
        self.head = nn.Linear(hidden, 1)  # (B, 1)
        self.feature_dim = hidden


@MODELS.register("mlp")
@describe()
def mlp(*, latent_dim: int, channels: int, image_size: int, **_: object) -> tuple[nn.Module, Discriminator]:
    """cs231n MLP pair; at 1x28x28 and latent 96, G has 1,952,528 and D 267,009 parameters."""
    shape = (channels, image_size, image_size)
    return MLPGenerator(latent_dim, shape), MLPDiscriminator(shape)
