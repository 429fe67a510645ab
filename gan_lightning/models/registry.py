"""The model registry: name -> builder returning a (generator, discriminator) pair."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from gan_lightning.models.base import Discriminator
from gan_lightning.registry import Registry


class ModelBuilder(Protocol):
    """Builds a (generator, discriminator) pair; options a builder does not use (ngf, ndf) are ignored."""

    def __call__(
        self, *, latent_dim: int, channels: int, image_size: int, **options: object
    ) -> tuple[nn.Module, Discriminator]: ...


MODELS: Registry[ModelBuilder] = Registry("model")
