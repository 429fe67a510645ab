"""A small normalisation-free residual G and D in the spirit of R3GAN (Huang et al. 2024), for 28, 32 and 64 px.

No BatchNorm anywhere: each residual branch ends in a convolution initialised to (almost) zero, fix-up style, so
every block starts as its shortcut and the network as a shallow one, which is what lets it train without
normalisation. Resolution changes are low-pass filtered (smooth up/down-sampling, as in StyleGAN2/R3GAN) instead
of transposed or strided convolutions, which alias and leave checkerboard artefacts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models.base import Discriminator
from gan_lightning.models.registry import MODELS, WIDTHS, describe

Tensor = torch.Tensor
BASES = {28: 7, 32: 4, 64: 4}  # image size -> side of the lowest-resolution map


def upsample(x: Tensor) -> Tensor:
    """Smooth 2x upsampling (B, C, H, W) -> (B, C, 2H, 2W): nearest, then a [1, 2, 1] blur with replicated edges."""
    # Bilinear 2x with align_corners=False is exactly that filter (per axis 0.25/0.75 taps), in one fast op.
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def downsample(x: Tensor) -> Tensor:
    """Smooth 2x downsampling (B, C, H, W) -> (B, C, H/2, W/2): [1, 2, 1] blur with replicated edges, 2x2 mean."""
    # Blur-then-average is one [1, 3, 3, 1] / 8 filter per axis at stride 2: a single depthwise conv.
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=x.dtype)
    k = (k[:, None] * k[None, :] / 64).expand(x.shape[1], 1, 4, 4)  # (C, 1, 4, 4)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, stride=2, groups=x.shape[1])


class ResidualBlock(nn.Module):
    """x + conv(lrelu(conv(lrelu(x)))), with a 1x1 shortcut when the width changes; its shortcut at init."""

    def __init__(self, c_in: int, c_out: int, num_blocks: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        # Fix-up / R3GAN rule for L = num_blocks branches of m = 2 convs: conv1 gets He init for the leaky ReLU times
        # L^(-1/(2m-2)) = L^(-1/2), so the summed branches' variance does not grow with depth, and conv2 gets 1e-6 of
        # its He scale: zero for all practical purposes (each block starts as its shortcut; Adam's first step is
        # ~1e-4 per weight), but not exactly 0, since spectral norm divides by the largest singular value (0/0 = NaN).
        for conv, scale in ((self.conv1, num_blocks**-0.5), (self.conv2, 1e-6)):
            nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
            conv.weight.data.mul_(scale)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, H, W)."""
        h = self.conv1(F.leaky_relu(x, 0.2))  # (B, c_out, H, W)
        h = self.conv2(F.leaky_relu(h, 0.2))  # (B, c_out, H, W)
        return self.shortcut(x) + h  # (B, c_out, H, W)


def _widths(image_size: int, width: int) -> tuple[int, list[int]]:
    """(base side, channel widths from the lowest resolution up): twice `width` at the base, `width` above."""
    if image_size not in BASES:
        raise ConfigError(f"resnet supports image sizes 28, 32 and 64; got image_size={image_size}")
    base = BASES[image_size]
    levels = (image_size // base).bit_length()  # resolutions from base to image_size: 3 at 28, 4 at 32, 5 at 64
    return base, [2 * width] + [width] * (levels - 1)


def _blocks(widths: list[int]) -> nn.ModuleList:
    """One residual block per resolution; block i goes from widths[i] to widths[i + 1] (the last keeps its width)."""
    pairs = zip(widths, [*widths[1:], widths[-1]], strict=True)
    return nn.ModuleList(ResidualBlock(a, b, len(widths)) for a, b in pairs)


class ResNetGenerator(nn.Module):
    """Linear to a (2w, base, base) map, then per resolution a residual block and a smooth 2x upsample; tanh."""

    def __init__(self, latent_dim: int = 96, channels: int = 1, image_size: int = 28, width: int = 64) -> None:
        super().__init__()
        self.latent_dim, self.image_shape = latent_dim, (channels, image_size, image_size)
        self.base, widths = _widths(image_size, width)
        self.stem = nn.Linear(latent_dim, widths[0] * self.base**2)
        self.blocks = _blocks(widths)
        self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """Map noise (B, latent_dim) to images (B, C, S, S) in [-1, 1]."""
        x = self.stem(z).view(z.shape[0], -1, self.base, self.base)  # (B, 2w, base, base)
        for i, block in enumerate(self.blocks):
            x = block(x)  # (B, w, s, s)
            if i < len(self.blocks) - 1:
                x = upsample(x)  # (B, w, 2s, 2s)
        return torch.tanh(self.to_image(F.leaky_relu(x, 0.2)))  # (B, C, S, S)


class ResNetBody(nn.Module):
    """The discriminator body: a conv from the image, then residual blocks each followed by a smooth 2x downsample."""

    def __init__(self, channels: int, image_size: int, width: int) -> None:
        super().__init__()
        self.base, widths = _widths(image_size, width)
        widths = widths[::-1]  # from the image down to the base
        self.from_image = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.blocks = _blocks(widths)
        self.feature_dim = widths[-1] * self.base**2

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, S, S) -> features (B, 2w * base * base)."""
        h = self.from_image(x)  # (B, w, S, S)
        for i, block in enumerate(self.blocks):
            h = block(h)  # (B, w_i, s, s)
            if i < len(self.blocks) - 1:
                h = downsample(h)  # (B, w_i, s/2, s/2)
        # Flattening the base map, not pooling it, keeps where things are, as DCGAN's last layer does.
        return F.leaky_relu(h, 0.2).flatten(1)  # (B, feature_dim)


class ResNetDiscriminator(Discriminator):
    """`ResNetBody` features, then a linear head to one logit."""

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 64) -> None:
        super().__init__()
        self.body = ResNetBody(channels, image_size, width)
        self.feature_dim = self.body.feature_dim
        self.head = nn.Linear(self.feature_dim, 1)  # (B, 1)


@MODELS.register("resnet")
@describe(options=WIDTHS, image_sizes=tuple(BASES))
def resnet(
    *, latent_dim: int, channels: int, image_size: int, ngf: int = 64, ndf: int = 64, **_: object
) -> tuple[nn.Module, Discriminator]:
    """Normalisation-free residual pair; at ngf = ndf = 64, 1x28x28, latent 96: G 875,585 and D 605,569 parameters."""
    if ngf < 1 or ndf < 1:
        raise ConfigError(f"resnet needs ngf >= 1 and ndf >= 1 (got ngf={ngf}, ndf={ndf})")
    return ResNetGenerator(latent_dim, channels, image_size, ngf), ResNetDiscriminator(channels, image_size, ndf)
