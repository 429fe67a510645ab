"""R3GAN's generator and discriminator (Huang et al. 2024, "The GAN is dead; long live the GAN! A Modern GAN
Baseline"), as brownvc/R3GAN builds them (`R3GAN/Networks.py`), registered as `--model r3gan`.

A normalisation-free residual ConvNet: per resolution stage, residual blocks of a 1x1 expansion, a grouped 3x3 and
a 1x1 compression with biased leaky ReLUs between them (`r3gan_layers.ResidualBlock`, fix-up initialised); 2x
interpolative resampling between stages; G starts from a learned 4x4 basis scaled by a linear map of its input,
D ends in a depthwise 4x4 basis. Its CIFAR-10 configuration (train.py, preset CIFAR10) is 4 stages of width 768
(one width for all), 2 blocks each, expansion 2, cardinality 96 (16 channels per group), noise 64 and, when
conditional, a class embedding of 64 in G and of 768 in D. Here the width is `ngf` / `ndf` and the cardinality
follows from `r3gan_group_channels`, so narrow test networks keep the block's form.

Where this differs from the reference, on purpose:
- G ends in tanh, as every generator of the package (images in [-1, 1]); the reference's G is linear at its output
  (its aggregation 1x1 conv). `R3GANGenerator.unbounded` is the reference's output. (A straight-through clamp would not
  do: it never pulls an out-of-range background back, so the background can drift without bound.)
- A residual branch's last layer starts at 1e-6 of its MSR scale, not at exactly 0 (see `r3gan_layers.BRANCH_SCALE`).
- The reference runs G's last three and D's first three stages in bfloat16; here every stage is in the module's
  dtype, and the package's `--precision` decides.
- `channels` may be 1: the reference's G aggregates to and D extracts from 3 channels only.
- Conditional D. The reference's D maps its basis features h (B, 768) through a Linear to an embedding e (B, 768),
  and its logit is <e, E y> with E a Linear of the one-hot y (no bias, init N(0, 1/(768 * num_classes))), without
  an unconditional term. Here D's `body` ends at h, the `head` is a Linear (B, 768) -> (B, 1) without bias (the
  reference's unconditional D, for which it is that Linear), and the package's projection head adds
  <embed(y), h> with an nn.Embedding initialised N(0, 0.02^2). Both logits are linear in h per class, so they
  represent the same functions; they differ in parameterisation (the reference's per-class vector is W^T E y, a
  768 x 768 product, ours head + embed(y)), in init, and in parameter count (ours 20,691,456 at the CIFAR-10
  configuration, the reference's 21,280,512). The unconditional D is the reference's.
- Conditional G is the reference's: the one-hot labels (the last `num_classes` columns of the input) go through a
  bias-free Linear to `r3gan_embedding` features, concatenated after the noise.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option
from gan_lightning.models.base import Discriminator
from gan_lightning.models.cbn import split_input
from gan_lightning.models.r3gan_layers import (
    DiscriminativeBasis,
    Downsample,
    GenerativeBasis,
    ResidualBlock,
    Upsample,
    conv,
    msr_init,
)
from gan_lightning.models.registry import MODELS, WIDTHS, describe

Tensor = torch.Tensor
IMAGE_SIZES = (8, 16, 32, 64, 128, 256)  # a 4x4 basis doubled per stage: 32 px is the CIFAR-10 config's 4 stages

# fmt: off
OPTIONS = (
    *WIDTHS,
    Option("r3gan_blocks", 2, "residual blocks per resolution stage of r3gan's G and D (R3GAN's CIFAR-10: 2)",
           type=int, positive=True, resume="refuse"),
    Option("r3gan_expansion", 2, "how much wider than the stage r3gan's residual blocks are inside (1x1 expand, "
           "grouped 3x3, 1x1 compress; R3GAN's CIFAR-10: 2)", type=int, positive=True, resume="refuse"),
    Option("r3gan_group_channels", 16, "channels per group of r3gan's grouped 3x3 convolutions; the cardinality "
           "is the block's inner width over this (R3GAN's CIFAR-10: 1536 / 96 = 16); a narrower block is one group",
           type=int, positive=True, resume="refuse"),
    Option("r3gan_embedding", 64, "width of the class embedding a conditional r3gan G concatenates to its noise "
           "(R3GAN's ConditionEmbeddingDimension, its noise dimension 64 on CIFAR-10)", type=int, positive=True,
           resume="refuse"),
)
# fmt: on


def stage_count(image_size: int) -> int:
    """Resolution stages from the 4x4 basis to `image_size` (4 at 32 px); ConfigError for a size r3gan cannot build."""
    if image_size not in IMAGE_SIZES:
        raise ConfigError(f"r3gan builds powers of two from 8 to 256 px ({', '.join(map(str, IMAGE_SIZES))}); got "
                          f"image_size={image_size} (28 px data is padded to 32 by default)")  # fmt: skip
    return int(math.log2(image_size)) - 1


def cardinality(width: int, expansion: int, group_channels: int) -> int:
    """Groups of a block's 3x3 conv: its inner width over `group_channels` (one group when the block is narrower)."""
    inner = width * expansion
    per_group = min(group_channels, inner)
    if inner % per_group:
        raise ConfigError(f"r3gan's block width {inner} (expansion {expansion} x width {width}) is not a "
                          f"multiple of --r3gan-group-channels {group_channels}; pick a width or group size that "
                          "divides it")  # fmt: skip
    return inner // per_group


def stages(width: int, count: int, blocks: int, expansion: int, groups: int) -> nn.ModuleList:
    """`count` stages of `blocks` residual blocks each, fix-up scaled for all count x blocks of them."""
    depth = count * blocks  # the reference's VarianceScalingParameter, sum(BlocksPerStage)
    return nn.ModuleList(
        nn.Sequential(*(ResidualBlock(width, groups, expansion, depth) for _ in range(blocks))) for _ in range(count)
    )


class R3GANGenerator(nn.Module):
    """Generative basis (4x4), then per stage: residual blocks, a 2x upsample before every stage but the first;
    a 1x1 aggregation to the image channels and tanh."""

    def __init__(self, latent_dim: int, channels: int = 3, image_size: int = 32, width: int = 768, blocks: int = 2,
                 expansion: int = 2, group_channels: int = 16, num_classes: int = 0,
                 embedding: int = 64) -> None:  # fmt: skip
        super().__init__()
        self.num_classes = num_classes
        noise = latent_dim - num_classes
        if noise < 1:
            raise ConfigError(f"r3gan's G needs noise besides its {num_classes} label columns; raise --latent-dim")
        self.embed = msr_init(nn.Linear(num_classes, embedding, bias=False)) if num_classes else None
        self.basis = GenerativeBasis(noise + (embedding if num_classes else 0), width)
        self.stages = stages(width, stage_count(image_size), blocks, expansion,
                             cardinality(width, expansion, group_channels))  # fmt: skip
        self.upsample = Upsample()
        self.to_image = conv(width, channels, 1)

    def unbounded(self, inputs: Tensor) -> Tensor:
        """The reference's output (unclamped) for inputs (B, latent_dim): (B, C, S, S)."""
        z, onehot = split_input(inputs, self.num_classes)  # (B, noise), (B, K) or None
        if self.embed is not None:
            z = torch.cat([z, self.embed(onehot)], dim=1)  # (B, noise + embedding)
        x = self.basis(z)  # (B, w, 4, 4)
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.upsample(x))  # (B, w, 4 * 2^i, 4 * 2^i)
        return self.to_image(x)  # (B, C, S, S)

    def forward(self, inputs: Tensor) -> Tensor:
        """Map inputs (B, latent_dim), the last `num_classes` columns one-hot labels, to images (B, C, S, S)."""
        return torch.tanh(self.unbounded(inputs))  # (B, C, S, S) in [-1, 1]


class R3GANBody(nn.Module):
    """1x1 extraction from the image, then per stage: residual blocks, a 2x downsample after every stage but the
    last; the discriminative basis turns the 4x4 map into one feature per channel."""

    def __init__(self, channels: int, image_size: int, width: int, blocks: int, expansion: int,
                 group_channels: int) -> None:  # fmt: skip
        super().__init__()
        self.from_image = conv(channels, width, 1)
        self.stages = stages(width, stage_count(image_size), blocks, expansion,
                             cardinality(width, expansion, group_channels))  # fmt: skip
        self.downsample = Downsample()
        self.basis = DiscriminativeBasis(width)

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, S, S) -> features (B, width)."""
        h = self.from_image(x)  # (B, w, S, S)
        for i, stage in enumerate(self.stages):
            h = stage(h)  # (B, w, s, s)
            if i < len(self.stages) - 1:
                h = self.downsample(h)  # (B, w, s/2, s/2)
        return self.basis(h)  # (B, w)


class R3GANDiscriminator(Discriminator):
    """`R3GANBody` features, then the reference's unconditional output layer: a bias-free Linear to one logit."""

    def __init__(self, channels: int = 3, image_size: int = 32, width: int = 768, blocks: int = 2,
                 expansion: int = 2, group_channels: int = 16) -> None:  # fmt: skip
        super().__init__()
        self.body = R3GANBody(channels, image_size, width, blocks, expansion, group_channels)
        self.feature_dim = width
        self.head = msr_init(nn.Linear(width, 1, bias=False))  # (B, 1)


@MODELS.register("r3gan")
@describe(options=OPTIONS, image_sizes=IMAGE_SIZES)
def r3gan(*, latent_dim: int, channels: int, image_size: int, ngf: int = 64, ndf: int = 64, r3gan_blocks: int = 2,
          r3gan_expansion: int = 2, r3gan_group_channels: int = 16, r3gan_embedding: int = 64, num_classes: int = 0,
          **_: object) -> tuple[nn.Module, Discriminator]:  # fmt: skip
    """R3GAN's pair; at ngf = ndf = 768, 3x32x32 and the other defaults (R3GAN's CIFAR-10 config) G has 20,732,160
    parameters with latent 64 (20,781,952 with latent 74 of which 10 are labels) and D 20,683,776."""
    for flag, value in (("ngf", ngf), ("ndf", ndf)):
        if value < 1:
            raise ConfigError(f"r3gan needs --{flag} >= 1, got {value}")
    g = R3GANGenerator(latent_dim, channels, image_size, ngf, r3gan_blocks, r3gan_expansion, r3gan_group_channels,
                       num_classes, r3gan_embedding)  # fmt: skip
    d = R3GANDiscriminator(channels, image_size, ndf, r3gan_blocks, r3gan_expansion, r3gan_group_channels)
    return g, d
