"""A small normalisation-free residual G and D in the spirit of R3GAN (Huang et al. 2024), for 28, 32 and 64 px.

No BatchNorm anywhere: each residual branch ends in a convolution initialised to zero (fix-up style), so every
block starts as the identity and the network as a shallow one, which is what lets it train without
normalisation. Resolution changes go through a [1, 2, 1] binomial blur (smooth up/down-sampling), as in
StyleGAN2/R3GAN, instead of transposed or strided convolutions that alias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.models.base import Discriminator
from gan_lightning.models.registry import MODELS

Tensor = torch.Tensor
BASES = {28: 7, 32: 4, 64: 4}  # image size -> side of the lowest-resolution map


def _blur(x: Tensor) -> Tensor:
    """[1, 2, 1] x [1, 2, 1] / 16 low-pass filter per channel, same size."""
    k = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)  # (C, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])


def upsample(x: Tensor) -> Tensor:
    """Nearest 2x upsampling, then blur: (B, C, H, W) -> (B, C, 2H, 2W) without checkerboard artefacts."""
    return _blur(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def downsample(x: Tensor) -> Tensor:
    """Blur, then 2x average pooling: (B, C, H, W) -> (B, C, H/2, W/2) without aliasing."""
    return F.avg_pool2d(_blur(x), 2)


class ResidualBlock(nn.Module):
    """x + conv(lrelu(conv(lrelu(x)))), with a 1x1 shortcut when the width changes; the identity at init."""

    def __init__(self, c_in: int, c_out: int, num_blocks: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        # Fix-up: He init for the leaky ReLU scaled by num_blocks^(-1/2) on the first conv, zero on the last, so the
        # residual sum's variance does not grow with depth and each block starts as its shortcut.
        nn.init.kaiming_normal_(self.conv1.weight, a=0.2, nonlinearity="leaky_relu")
        self.conv1.weight.data.mul_(num_blocks**-0.5)
        nn.init.zeros_(self.conv1.bias)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, H, W)."""
        h = self.conv1(F.leaky_relu(x, 0.2))  # (B, c_out, H, W)
        h = self.conv2(F.leaky_relu(h, 0.2))  # (B, c_out, H, W)
        return self.shortcut(x) + h


def _widths(image_size: int, width: int) -> tuple[int, list[int]]:
    """(base side, channel widths from the lowest resolution up): twice `width` at the base, `width` above."""
    if image_size not in BASES:
        raise ConfigError(f"resnet supports image sizes 28, 32 and 64; got image_size={image_size}")
    base = BASES[image_size]
    levels = (image_size // base).bit_length()  # resolutions from base to image_size: 3 at 28, 4 at 32, 5 at 64
    return base, [2 * width] + [width] * (levels - 1)


class ResNetGenerator(nn.Module):
    """Linear to a (2w, base, base) map, then per resolution a residual block and a smooth 2x upsample; tanh."""

    def __init__(self, latent_dim: int = 96, channels: int = 1, image_size: int = 28, width: int = 64) -> None:
        super().__init__()
        self.base, widths = _widths(image_size, width)
        self.stem = nn.Linear(latent_dim, widths[0] * self.base**2)
        self.blocks = nn.ModuleList(
            ResidualBlock(a, b, len(widths)) for a, b in zip(widths, [*widths[1:], widths[-1]], strict=True)
        )
        self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """Map noise (B, latent_dim) to images (B, C, S, S) in [-1, 1]."""
        x = self.stem(z).view(z.shape[0], -1, self.base, self.base)  # (B, 2w, base, base)
        for i, block in enumerate(self.blocks):
            x = block(x)  # (B, w_i, s, s)
            if i < len(self.blocks) - 1:
                x = upsample(x)  # (B, w_i, 2s, 2s)
        return torch.tanh(self.to_image(F.leaky_relu(x, 0.2)))  # (B, C, S, S)


class ResNetBody(nn.Module):
    """The discriminator body: a conv from the image, residual blocks each followed by a smooth 2x downsample."""

    def __init__(self, channels: int, image_size: int, width: int) -> None:
        super().__init__()
        self.base, widths = _widths(image_size, width)
        widths = widths[::-1]  # from the image down to the base
        self.from_image = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            ResidualBlock(a, b, len(widths)) for a, b in zip(widths, [*widths[1:], widths[-1]], strict=True)
        )
        self.feature_dim = widths[-1] * self.base**2

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, S, S) -> features (B, 2w * base * base)."""
        h = self.from_image(x)  # (B, w, S, S)
        for i, block in enumerate(self.blocks):
            h = block(h)  # (B, w_i, s, s)
            if i < len(self.blocks) - 1:
                h = downsample(h)  # (B, w_i, s/2, s/2)
        return F.leaky_relu(h, 0.2).flatten(1)  # (B, feature_dim)


class ResNetDiscriminator(Discriminator):
    """`ResNetBody` features, then a linear head to one logit."""

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 64) -> None:
        super().__init__()
        self.body = ResNetBody(channels, image_size, width)
        self.feature_dim = self.body.feature_dim
        self.head = nn.Linear(self.feature_dim, 1)  # (B, 1)


@MODELS.register("resnet")
def resnet(
    *, latent_dim: int, channels: int, image_size: int, ngf: int = 64, ndf: int = 64, **_: object
) -> tuple[nn.Module, Discriminator]:
    """Normalisation-free residual pair; `ngf` / `ndf` are the widths above the base resolution."""
    if ngf < 1 or ndf < 1:
        raise ConfigError(f"resnet needs ngf >= 1 and ndf >= 1 (got ngf={ngf}, ndf={ndf})")
    return ResNetGenerator(latent_dim, channels, image_size, ngf), ResNetDiscriminator(channels, image_size, ndf)
