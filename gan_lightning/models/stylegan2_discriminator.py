"""StyleGAN2's discriminator (NVlabs' stylegan2-ada-pytorch `training/networks.py` `Discriminator`) in the package's
`Discriminator` form: `body` = the blocks and the epilogue up to its FC layer, `head` = the epilogue's `out` layer.

Block architectures: 'resnet' (two 3x3 convs beside a 1x1 downsampling shortcut, summed at gain sqrt(1/2)), 'orig'
(the two convs alone) and 'skip' (the image itself, FIR-downsampled, read again by a FromRGB at every resolution).
Attribute names are the reference's (`b32.conv0`, `b4.mbstd`, `b4.fc`), with `body.` in front and `b4.out` as
`head`. The reference's conditional D (a label mapping network projected on `out`) is not built here: see
`stylegan2.py`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_lightning.models.base import Discriminator
from gan_lightning.models.stylegan2_layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
    channels_at,
    downsample2d,
    setup_filter,
)

Tensor = torch.Tensor
ARCHITECTURES = ("resnet", "orig", "skip")
HALF_GAIN = math.sqrt(0.5)  # a residual sum of two unit-variance paths stays at unit variance


class DiscriminatorBlock(nn.Module):
    """One resolution r -> r/2: (FromRGB), a 3x3 conv, a 3x3 conv with 2x FIR downsampling (and the shortcut)."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        architecture: str = "resnet",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.architecture = in_channels, architecture
        self.register_buffer("resample_filter", setup_filter(), persistent=False)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor | None, img: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Features (B, tmp, r, r) (None in the first block) and the image (B, C, r, r) ('skip' and the first block)
        -> features (B, out, r/2, r/2) and the image downsampled ('skip'; None otherwise)."""
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img)  # (B, tmp, r, r)
            x = y if x is None else x + y  # (B, tmp, r, r)
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None  # (B, C, r/2, r/2)
        if self.architecture == "resnet":
            y = self.skip(x, gain=HALF_GAIN)  # (B, out, r/2, r/2)
            x = self.conv1(self.conv0(x), gain=HALF_GAIN)  # (B, out, r/2, r/2)
            return y + x, img
        return self.conv1(self.conv0(x)), img  # (B, out, r/2, r/2)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end of D up to its last hidden layer: (FromRGB), minibatch std, a 3x3 conv, an FC layer."""

    def __init__(
        self,
        in_channels: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        conv_clamp: float | None = None,
        resolution: int = 4,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation="lrelu")
        self.mbstd = MinibatchStdLayer(mbstd_group, mbstd_channels) if mbstd_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")

    def forward(self, x: Tensor, img: Tensor | None) -> Tensor:
        """Features (B, C4, 4, 4) (and the 4x4 image for 'skip') -> (B, C4)."""
        if self.architecture == "skip":
            x = x + self.fromrgb(img)  # (B, C4, 4, 4)
        if self.mbstd is not None:
            x = self.mbstd(x)  # (B, C4 + mbstd_channels, 4, 4)
        x = self.conv(x)  # (B, C4, 4, 4)
        return self.fc(x.flatten(1))  # (B, C4)


class StyleGAN2Body(nn.Module):
    """Images (B, C, S, S) -> features (B, C4): a block per resolution from S down to 8, then the epilogue."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.block_resolutions = [2**i for i in range(int(math.log2(img_resolution)), 2, -1)]
        for res in self.block_resolutions:
            tmp = channels_at(res, channel_base, channel_max)
            c_in = tmp if res < img_resolution else 0
            block = DiscriminatorBlock(c_in, tmp, channels_at(res // 2, channel_base, channel_max), img_channels,
                                       architecture, conv_clamp)  # fmt: skip
            setattr(self, f"b{res}", block)
        self.feature_dim = channels_at(4, channel_base, channel_max)
        self.b4 = DiscriminatorEpilogue(self.feature_dim, img_channels, architecture, mbstd_group, mbstd_channels,
                                        conv_clamp)  # fmt: skip

    def forward(self, img: Tensor) -> Tensor:
        """Images (B, C, S, S) -> features (B, C4)."""
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)  # (B, C_{res/2}, res/2, res/2)
        return self.b4(x, img)  # (B, C4)


class StyleGAN2Discriminator(Discriminator):
    """StyleGAN2's unconditional D: `StyleGAN2Body` features, then the epilogue's equalised-lr `out` layer."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.body = StyleGAN2Body(img_resolution, img_channels, architecture, channel_base, channel_max,
                                  mbstd_group, mbstd_channels, conv_clamp)  # fmt: skip
        self.feature_dim = self.body.feature_dim
        self.head = FullyConnectedLayer(self.feature_dim, 1)  # (B, 1)
