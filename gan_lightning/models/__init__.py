"""Plain nn.Module generators and discriminators, chosen by name through `MODELS`."""

from __future__ import annotations

from torch import nn

from gan_lightning.models import dcgan as _dcgan  # noqa: F401  (registers "dcgan", "dcgan_mnist")
from gan_lightning.models import mlp as _mlp  # noqa: F401  (registers "mlp")
from gan_lightning.models import resnet as _resnet  # noqa: F401  (registers "resnet")
from gan_lightning.models.base import Discriminator
from gan_lightning.models.dcgan import (
    DCGANDiscriminator,
    DCGANGenerator,
    MNISTDCGANDiscriminator,
    MNISTDCGANGenerator,
)
from gan_lightning.models.mlp import MLPDiscriminator, MLPGenerator
from gan_lightning.models.registry import MODELS, builder_options, default_image_size, model_options
from gan_lightning.models.resnet import ResNetDiscriminator, ResNetGenerator


def build_models(
    name: str, *, latent_dim: int, channels: int, image_size: int, **options: object
) -> tuple[nn.Module, Discriminator]:
    """Build the registered (generator, discriminator) pair `name`, passing it the options it declares."""
    own = {k: v for k, v in options.items() if k in builder_options(name)}
    return MODELS.get(name)(latent_dim=latent_dim, channels=channels, image_size=image_size, **own)


__all__ = [
    "MODELS",
    "builder_options",
    "default_image_size",
    "model_options",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Discriminator",
    "MLPDiscriminator",
    "MLPGenerator",
    "MNISTDCGANDiscriminator",
    "MNISTDCGANGenerator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "build_models",
]
