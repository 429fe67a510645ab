"""Plain nn.Module generators and discriminators, chosen by name through `MODELS`: each file of this package
registers its pairs itself (imported below), as a plugin's file does."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.registry import import_submodules
from gan_lightning.models.base import Discriminator
from gan_lightning.models.dcgan import (
    DCGANDiscriminator,
    DCGANGenerator,
    MNISTDCGANDiscriminator,
    MNISTDCGANGenerator,
)
from gan_lightning.models.mlp import MLPDiscriminator, MLPGenerator
from gan_lightning.models.registry import MODELS, WIDTHS, builder_options, default_image_size, model_options
from gan_lightning.models.resnet import ResNetDiscriminator, ResNetGenerator


def build_models(
    name: str,
    *,
    latent_dim: int,
    channels: int,
    image_size: int,
    num_classes: int = 0,
    mixing_latent: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    **options: object,
) -> tuple[nn.Module, Discriminator]:
    """Build the registered (generator, discriminator) pair `name`, passing it the options it declares.

    `num_classes` says how many of the `latent_dim` input columns are one-hot labels (the last ones; 0 when
    unconditional); a builder that conditions G otherwise than through its input takes it by name. A model option
    that another builder declares and this one does not, set to other than its default, is refused in one line
    (the widths excepted: every builder has received them, used or not, since before builders declared options).
    `mixing_latent(z, rng)`, how the run draws a second latent like `z` (its prior, its InfoGAN codes), goes to a
    builder whose G draws one (style mixing) and takes it by name.
    """
    builder, own = MODELS.get(name), builder_options(name)
    for option in model_options():
        takers = [m for m in MODELS.names() if option.name in builder_options(m)]
        if takers and option.name not in own and option not in WIDTHS:
            if options.get(option.name, option.default) != option.default:
                raise ConfigError(f"{option.flag} {options[option.name]} does not apply to --model {name} (only "
                                  f"{', '.join(takers)} take it); drop it")  # fmt: skip
    given = {k: v for k, v in options.items() if k in own}
    if "num_classes" in inspect.signature(builder).parameters:
        given["num_classes"] = num_classes
    if mixing_latent is not None and "mixing_latent" in inspect.signature(builder).parameters:
        given["mixing_latent"] = mixing_latent
    return builder(latent_dim=latent_dim, channels=channels, image_size=image_size, **given)


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

import_submodules(__name__)  # every model file registers itself
