"""The CIFAR-10 networks of SN-GAN (Miyato et al. 2018): the "standard CNN" and the ResNet, at 32x32.

Both follow the authors' Chainer code, layer for layer: the standard CNN is chainer-gan-lib's `DCGANGenerator` and
`SNDCGANDiscriminator` (`common/net.py`), the ResNet is sngan_projection's `ResNetGenerator` (`gen_models/
resnet_32.py`) and `SNResNetDiscriminator32` (`dis_models/snresnet_32.py`), with the same initialisations. The
discriminators are built spectrally normalised, as published: without it, the ResNet's sum over positions gives
logits of -25 at initialisation (-100 at width 8), where the minimax loss has no gradient. `--spectral-norm` adds it to
the heads (a conditional D's projection, as sngan_projection's SNEmbedID), and the `sngan_cifar10_*` presets set it.
A conditional G gets its one-hot labels with the noise (the latent space's input), D's projection head the labels
(`--conditional`); with `--g-conditioning cbn` G conditions its BatchNorms instead (`models/cbn.py`), which for the
ResNet is Miyato & Koyama 2018's conditional generator (sngan_projection's `Block` with `n_classes`: every BatchNorm
inside the blocks class-conditional, the last one before the output plain).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models.base import Discriminator
from gan_lightning.models.cbn import (
    G_CONDITIONING,
    batch_norm,
    call_layer,
    cbn_classes,
    condition_batchnorms,
    run_layers,
    split_input,
)
from gan_lightning.models.heads import spectral_norm_all
from gan_lightning.models.registry import MODELS, WIDTHS, describe

Tensor = torch.Tensor
SIZE, BASE = 32, 4  # CIFAR-10's side, and the side of the generators' first map


def _check(name: str, image_size: int, ngf: int, ndf: int) -> None:
    if image_size != SIZE:
        raise ConfigError(f"{name} is the CIFAR-10 network, 32x32 only (got image_size={image_size}); pass "
                          "--image-size 32 or another --model")  # fmt: skip
    if ngf < 1 or ndf < 1:
        raise ConfigError(f"{name} needs ngf >= 1 and ndf >= 1 (got ngf={ngf}, ndf={ndf})")


# ----------------------------------------------------------------------------------------------------------
# the standard CNN (paper Table 3; chainer-gan-lib DCGANGenerator / SNDCGANDiscriminator with ch = 512)
# ----------------------------------------------------------------------------------------------------------


def normal_init(module: nn.Module) -> None:
    """chainer-gan-lib's init of the standard CNN: conv/linear weights N(0, 0.02), biases 0 (BatchNorm: 1 and 0)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class SNGANCNNGenerator(nn.Module):
    """Dense to 4x4x(8 ngf) with BatchNorm and ReLU, three 4x4 stride-2 deconvs halving the width (BatchNorm, ReLU),
    then a 3x3 conv to the image and tanh.

    `cbn_classes` > 0: all four BatchNorms class-conditional (`models/cbn.py`); the last `cbn_classes` of the
    `latent_dim` inputs are then the one-hot labels, and the dense layer takes the noise alone.
    """

    def __init__(self, latent_dim: int = 128, channels: int = 3, ngf: int = 64, cbn_classes: int = 0) -> None:
        super().__init__()
        self.latent_dim, self.image_shape, self.width = latent_dim, (channels, SIZE, SIZE), 8 * ngf
        self.cbn_classes = cbn_classes
        c = self.width
        # BatchNorm over each of the dense layer's 4*4*c units (a BatchNorm1d before the reshape), as the authors'
        # code has it; the paper's table does not list this BatchNorm and ReLU, but a dense layer straight into a
        # deconvolution would be a single linear map.
        self.dense = nn.Sequential(
            nn.Linear(latent_dim - cbn_classes, BASE * BASE * c), nn.BatchNorm1d(BASE * BASE * c), nn.ReLU()
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 4, 2, 1),  # (B, c/2, 8, 8)
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            nn.ConvTranspose2d(c // 2, c // 4, 4, 2, 1),  # (B, c/4, 16, 16)
            nn.BatchNorm2d(c // 4),
            nn.ReLU(),
            nn.ConvTranspose2d(c // 4, c // 8, 4, 2, 1),  # (B, c/8, 32, 32)
            nn.BatchNorm2d(c // 8),
            nn.ReLU(),
            nn.Conv2d(c // 8, channels, 3, 1, 1),  # (B, C, 32, 32)
            nn.Tanh(),
        )
        self.apply(normal_init)
        if cbn_classes:
            condition_batchnorms(self.dense, cbn_classes)
            condition_batchnorms(self.deconv, cbn_classes)

    def forward(self, z: Tensor) -> Tensor:
        """Map noise (B, latent_dim), one-hot labels last under cBN, to images (B, C, 32, 32) in [-1, 1]."""
        z, onehot = split_input(z.reshape(z.shape[0], -1), self.cbn_classes)  # (B, latent_dim - K), (B, K) or None
        x = run_layers(self.dense, z, onehot).view(z.shape[0], self.width, BASE, BASE)  # (B, 8 ngf, 4, 4)
        return run_layers(self.deconv, x, onehot)  # (B, C, 32, 32)


class SNGANCNNDiscriminator(Discriminator):
    """Seven convs, 3x3 stride 1 alternating with 4x4 stride 2, widths ndf, 2, 2, 4, 4, 8, 8 ndf, LeakyReLU 0.1
    after each; the flattened 4x4 map to one logit."""

    def __init__(self, channels: int = 3, ndf: int = 64) -> None:
        super().__init__()
        widths = [ndf, 2 * ndf, 2 * ndf, 4 * ndf, 4 * ndf, 8 * ndf, 8 * ndf]
        layers: list[nn.Module] = []
        c_in, side = channels, SIZE
        for i, c_out in enumerate(widths):
            # odd layers halve the side with a 4x4 stride-2 conv (the authors' widths double there)
            k, s = (4, 2) if i % 2 else (3, 1)
            layers += [nn.Conv2d(c_in, c_out, k, s, 1), nn.LeakyReLU(0.1)]  # (B, c_out, side/s, side/s)
            c_in, side = c_out, side // s
        layers.append(nn.Flatten())  # (B, 8 ndf * 4 * 4)
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in * side * side
        self.head = nn.Linear(self.feature_dim, 1)  # (B, 1)
        self.apply(normal_init)


@MODELS.register("sngan_cnn")
@describe(options=(*WIDTHS, G_CONDITIONING), image_sizes=(SIZE,))
def sngan_cnn(
    *,
    latent_dim: int,
    channels: int,
    image_size: int,
    ngf: int = 64,
    ndf: int = 64,
    g_conditioning: str = "input",
    num_classes: int = 0,
    **_: object,
) -> tuple[nn.Module, Discriminator]:
    """SN-GAN's standard CNN, D spectrally normalised; at ngf = ndf = 64 (G width 512), latent 128, 3x32x32: G has
    3,828,739 and D 5,860,865 parameters."""
    _check("sngan_cnn", image_size, ngf, ndf)
    g = SNGANCNNGenerator(latent_dim, channels, ngf, cbn_classes(g_conditioning, num_classes))
    return g, spectral_norm_all(SNGANCNNDiscriminator(channels, ndf))


# ----------------------------------------------------------------------------------------------------------
# the ResNet (paper Table 4; sngan_projection resnet_32 / snresnet_32 with ch = 256 for G and 128 for D)
# ----------------------------------------------------------------------------------------------------------


def _glorot(conv: nn.Module, gain: float) -> nn.Module:
    """sngan_projection's init: Glorot-uniform weights (gain sqrt 2 inside the residual branches, 1 elsewhere), 0
    biases."""
    nn.init.xavier_uniform_(conv.weight, gain=gain)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _branch_conv(c_in: int, c_out: int) -> nn.Conv2d:
    return _glorot(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2))


class UpBlock(nn.Module):
    """G's block: BN, ReLU, 2x nearest upsample, conv 3x3, BN, ReLU, conv 3x3; shortcut: upsample, conv 1x1.
    `cbn_classes` > 0: both BNs class-conditional, given the one-hot labels (B, K) with the input."""

    def __init__(self, c_in: int, c_out: int, cbn_classes: int = 0) -> None:
        super().__init__()
        self.bn1, self.conv1 = batch_norm(c_in, cbn_classes), _branch_conv(c_in, c_out)
        self.bn2, self.conv2 = batch_norm(c_out, cbn_classes), _branch_conv(c_out, c_out)
        self.shortcut = _glorot(nn.Conv2d(c_in, c_out, 1), 1.0)

    def forward(self, x: Tensor, onehot: Tensor | None = None) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, 2H, 2W)."""
        h = F.relu(call_layer(self.bn1, x, onehot))  # (B, c_in, H, W)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")  # (B, c_in, 2H, 2W)
        h = self.conv2(F.relu(call_layer(self.bn2, self.conv1(h), onehot)))  # (B, c_out, 2H, 2W)
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """D's block: [ReLU], conv 3x3, ReLU, conv 3x3, [2x2 average pool]; the shortcut a conv 1x1 (then the pool) when
    the block downsamples or changes width, else the identity. `first`: the input is the image, so no ReLU before
    the first conv and the shortcut pools before its conv (sngan_projection's OptimizedBlock)."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = _branch_conv(c_in, c_out), _branch_conv(c_out, c_out)
        self.shortcut = _glorot(nn.Conv2d(c_in, c_out, 1), 1.0) if down or c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, H/2, W/2) when `down`, else (B, c_out, H, W)."""
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))  # (B, c_out, H, W)
        if self.down:
            h = F.avg_pool2d(h, 2)  # (B, c_out, H/2, W/2)
        if self.shortcut is None:
            return h + x
        if self.first:  # pooling first costs 4x fewer multiply-adds in the 1x1 conv; the two orders are equal
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class SNGANResNetGenerator(nn.Module):
    """Dense to 4x4x(4 ngf), three up-blocks of 4 ngf channels to 32x32, BN, ReLU, conv 3x3 and tanh.

    `cbn_classes` > 0: the blocks' BatchNorms class-conditional and the last one plain, as sngan_projection's
    conditional generator; the last `cbn_classes` of the `latent_dim` inputs are then the one-hot labels.
    """

    def __init__(self, latent_dim: int = 128, channels: int = 3, ngf: int = 64, cbn_classes: int = 0) -> None:
        super().__init__()
        self.latent_dim, self.image_shape, self.width = latent_dim, (channels, SIZE, SIZE), 4 * ngf
        self.cbn_classes = cbn_classes
        c = self.width
        self.dense = _glorot(nn.Linear(latent_dim - cbn_classes, BASE * BASE * c), 1.0)
        self.blocks = nn.Sequential(*(UpBlock(c, c, cbn_classes) for _ in range(3)))
        self.bn = nn.BatchNorm2d(c)
        self.to_image = _glorot(nn.Conv2d(c, channels, 3, padding=1), 1.0)

    def forward(self, z: Tensor) -> Tensor:
        """Map noise (B, latent_dim), one-hot labels last under cBN, to images (B, C, 32, 32) in [-1, 1]."""
        z, onehot = split_input(z.reshape(z.shape[0], -1), self.cbn_classes)  # (B, latent_dim - K), (B, K) or None
        x = self.dense(z).view(z.shape[0], self.width, BASE, BASE)  # (B, 4 ngf, 4, 4)
        for block in self.blocks:
            x = block(x, onehot)  # (B, 4 ngf, 8 .. 32, 8 .. 32)
        return torch.tanh(self.to_image(F.relu(self.bn(x))))  # (B, C, 32, 32)


class SNGANResNetBody(nn.Module):
    """Four blocks of 2 ndf channels, the first two halving the side (32 -> 16 -> 8), then ReLU and a sum over
    positions."""

    def __init__(self, channels: int, ndf: int) -> None:
        super().__init__()
        c = 2 * ndf
        self.blocks = nn.Sequential(
            DownBlock(channels, c, down=True, first=True),  # (B, c, 16, 16)
            DownBlock(c, c, down=True),  # (B, c, 8, 8)
            DownBlock(c, c, down=False),  # (B, c, 8, 8)
            DownBlock(c, c, down=False),  # (B, c, 8, 8)
        )
        self.feature_dim = c

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, 32, 32) -> features (B, 2 ndf)."""
        # a sum, not a mean, over the 8x8 positions: the authors' code (its comment says average pooling, its code sums)
        return F.relu(self.blocks(x)).sum(dim=(2, 3))  # (B, 2 ndf)


class SNGANResNetDiscriminator(Discriminator):
    """`SNGANResNetBody` features, then a linear head without bias to one logit."""

    def __init__(self, channels: int = 3, ndf: int = 64) -> None:
        super().__init__()
        self.body = SNGANResNetBody(channels, ndf)
        self.feature_dim = self.body.feature_dim
        self.head = _glorot(nn.Linear(self.feature_dim, 1, bias=False), 1.0)  # (B, 1)


@MODELS.register("sngan_resnet")
@describe(options=(*WIDTHS, G_CONDITIONING), image_sizes=(SIZE,))
def sngan_resnet(
    *,
    latent_dim: int,
    channels: int,
    image_size: int,
    ngf: int = 64,
    ndf: int = 64,
    g_conditioning: str = "input",
    num_classes: int = 0,
    **_: object,
) -> tuple[nn.Module, Discriminator]:
    """SN-GAN's CIFAR-10 ResNet, D spectrally normalised; G is 4 ngf wide and D 2 ndf, so the default ngf = ndf =
    64 gives the paper's 256 and 128; at latent 128, 3x32x32: G has 4,276,739 and D 1,053,824 parameters."""
    _check("sngan_resnet", image_size, ngf, ndf)
    g = SNGANResNetGenerator(latent_dim, channels, ngf, cbn_classes(g_conditioning, num_classes))
    return g, spectral_norm_all(SNGANResNetDiscriminator(channels, ndf))
