"""Convolutional GANs: the cs231n MNIST DCGAN and the DCGAN of Radford et al. (PyTorch DCGAN tutorial)."""

from __future__ import annotations

import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models.base import Discriminator
from gan_lightning.models.cbn import G_CONDITIONING, cbn_classes, condition_batchnorms, run_layers, split_input
from gan_lightning.models.registry import MODELS, WIDTHS, describe


def dcgan_weights_init(module: nn.Module) -> None:
    """DCGAN tutorial init: conv/linear weights N(0, 0.02), BatchNorm weights N(1, 0.02) and biases 0."""
    # The paper initialises every weight from N(0, 0.02) instead of PyTorch's fan-in scaled default, and
    # its hyperparameters (lr 2e-4, beta1 0.5) were chosen together with this init. The DCGAN layers have
    # no biases (BatchNorm's shift makes them redundant), so only BatchNorm biases are set.
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:  # a cBN's own is not
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------------------------
# cs231n MNIST DCGAN
# ----------------------------------------------------------------------------------------------------------


class MNISTDCGANGenerator(nn.Module):
    """InfoGAN (appendix C.1) MNIST generator: two FC layers, then two stride-2 transposed convs to 28x28.

    `cbn_classes` > 0: class-conditional BatchNorm (`models/cbn.py`); the last `cbn_classes` of the `latent_dim`
    input columns are one-hot labels, which go to every BatchNorm instead of the first layer.
    """

    def __init__(self, latent_dim: int = 96, channels: int = 1, cbn_classes: int = 0):
        super().__init__()
        self.latent_dim, self.cbn_classes = latent_dim, cbn_classes
        self.image_shape = (channels, 28, 28)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim - cbn_classes, 1024),  # (B, 1024)
            nn.ReLU(),
            nn.BatchNorm1d(1024),  # (B, 1024)
            nn.Linear(1024, 7 * 7 * 128),  # (B, 6272)
            nn.ReLU(),
            # BatchNorm1d over all 6272 units, not BatchNorm2d(128) after the reshape: the spec normalises
            # the FC output per unit. A common transcription gets this wrong (and has fewer parameters).
            nn.BatchNorm1d(7 * 7 * 128),  # (B, 6272)
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),  # (B, 64, 14, 14)
            nn.ReLU(),
            nn.BatchNorm2d(64),  # (B, 64, 14, 14)
            nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1),  # (B, C, 28, 28)
            nn.Tanh(),  # images are normalised to [-1, 1]
        )
        if cbn_classes:
            condition_batchnorms(self.fc, cbn_classes)
            condition_batchnorms(self.deconv, cbn_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map noise (B, latent_dim) to images (B, C, 28, 28) in [-1, 1]."""
        z, onehot = split_input(z, self.cbn_classes)  # (B, latent_dim - K), (B, K) or None
        x = run_layers(self.fc, z, onehot)  # (B, 6272)
        x = x.view(z.shape[0], 128, 7, 7)  # (B, 128, 7, 7)
        return run_layers(self.deconv, x, onehot)  # (B, C, 28, 28)


class MNISTDCGANDiscriminator(Discriminator):
    """cs231n MNIST discriminator: two 5x5 conv + max-pool stages, then FC 1024 and a linear head."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 5, stride=1),  # (B, 32, 24, 24)
            nn.LeakyReLU(0.01),
            nn.MaxPool2d(2),  # (B, 32, 12, 12)
            nn.Conv2d(32, 64, 5, stride=1),  # (B, 64, 8, 8)
            nn.LeakyReLU(0.01),
            nn.MaxPool2d(2),  # (B, 64, 4, 4)
            nn.Flatten(),  # (B, 1024)
            nn.Linear(64 * 4 * 4, 1024),  # (B, 1024)
            nn.LeakyReLU(0.01),
        )
        self.head = nn.Linear(1024, 1)  # (B, 1)
        self.feature_dim = 1024


@MODELS.register("dcgan_mnist")
@describe(options=(G_CONDITIONING,), image_sizes=(28,))
def dcgan_mnist(
    *, latent_dim: int, channels: int, image_size: int, g_conditioning: str = "input", num_classes: int = 0, **_: object
) -> tuple[nn.Module, Discriminator]:
    """cs231n MNIST DCGAN; at 1x28x28 and latent 96, G has 6,675,009 and D 1,102,721 parameters."""
    if image_size != 28:
        # The 7x7 seed and the 4x4 map after two unpadded convs are hard-wired to 28x28 inputs.
        raise ConfigError(f"dcgan_mnist is 28x28 only (got image_size={image_size}); use --model dcgan for other sizes")
    cbn = cbn_classes(g_conditioning, num_classes)
    return MNISTDCGANGenerator(latent_dim, channels, cbn), MNISTDCGANDiscriminator(channels)


# ----------------------------------------------------------------------------------------------------------
# DCGAN (Radford et al. 2015, PyTorch DCGAN tutorial), generalised to any power-of-two size >= 32
# ----------------------------------------------------------------------------------------------------------


def _num_stride2_layers(image_size: int) -> int:
    """Number of stride-2 (de)convolutions between 4x4 and image_size; ConfigError if unsupported."""
    # Below 32 the generator would start at ngf*1 and the architecture stops being DCGAN as published.
    if image_size < 32 or image_size & (image_size - 1):
        raise ConfigError(
            f"dcgan supports image sizes that are powers of two >= 32 (32, 64, 128, 256, ...); got "
            f"image_size={image_size}. Pass --image-size with one of them, or --model dcgan_mnist for 28x28"
        )
    return image_size.bit_length() - 3  # log2(image_size) - 2


class DCGANGenerator(nn.Module):
    """DCGAN generator: a 4x4 projection, then stride-2 transposed convs halving channels up to image_size.

    `cbn_classes` > 0: class-conditional BatchNorm (`models/cbn.py`); the last `cbn_classes` of the `latent_dim`
    input columns are one-hot labels, which go to every BatchNorm instead of the projection.
    """

    def __init__(
        self, latent_dim: int = 100, channels: int = 3, image_size: int = 64, ngf: int = 64, cbn_classes: int = 0
    ):
        super().__init__()
        self.latent_dim, self.cbn_classes = latent_dim, cbn_classes
        self.image_shape = (channels, image_size, image_size)
        n = _num_stride2_layers(image_size)
        mult = 2 ** (n - 1)  # 8 at 64x64, so the last hidden layer has ngf channels
        layers: list[nn.Module] = [
            # A 4x4 "full" transposed conv on a 1x1 input is the paper's projection of z, with no bias
            # because BatchNorm's shift makes it redundant.
            nn.ConvTranspose2d(latent_dim - cbn_classes, ngf * mult, 4, 1, 0, bias=False),  # (B, ngf*mult, 4, 4)
            nn.BatchNorm2d(ngf * mult),
            nn.ReLU(True),
        ]
        while mult > 1:
            out = ngf * mult // 2
            layers += [
                nn.ConvTranspose2d(ngf * mult, out, 4, 2, 1, bias=False),  # (B, ngf*mult/2, 2s, 2s)
                nn.BatchNorm2d(out),
                nn.ReLU(True),
            ]
            mult //= 2
        layers += [
            # No BatchNorm on the output layer: the paper found it destabilises training.
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False),  # (B, C, S, S)
            nn.Tanh(),  # images are normalised to [-1, 1]
        ]
        self.main = condition_batchnorms(nn.Sequential(*layers), cbn_classes) if cbn_classes else nn.Sequential(*layers)
        self.apply(dcgan_weights_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map noise (B, latent_dim) to images (B, C, S, S) in [-1, 1]."""
        z, onehot = split_input(z, self.cbn_classes)  # (B, nz), (B, K) or None
        x = z.view(z.shape[0], -1, 1, 1)  # (B, nz, 1, 1)
        return run_layers(self.main, x, onehot)  # (B, C, S, S)


class DCGANDiscriminator(Discriminator):
    """DCGAN discriminator: stride-2 convs doubling channels down to 4x4, then a linear head."""

    def __init__(self, channels: int = 3, image_size: int = 64, ndf: int = 64):
        super().__init__()
        n = _num_stride2_layers(image_size)
        layers: list[nn.Module] = [
            # No BatchNorm on the input layer: the paper found it destabilises training.
            nn.Conv2d(channels, ndf, 4, 2, 1, bias=False),  # (B, ndf, S/2, S/2)
            nn.LeakyReLU(0.2, inplace=True),
        ]
        mult = 1
        for _ in range(n - 1):
            layers += [
                nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False),  # (B, ndf*2mult, s/2, s/2)
                nn.BatchNorm2d(ndf * mult * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            mult *= 2
        layers.append(nn.Flatten())  # (B, ndf*mult*4*4)
        self.body = nn.Sequential(*layers)
        self.feature_dim = ndf * mult * 4 * 4
        # The tutorial's final Conv2d(ndf*8, 1, 4, 1, 0) on a 4x4 map is exactly this Linear on the flattened
        # map; as a Linear it fits the body/head contract. No sigmoid: the losses take logits.
        self.head = nn.Linear(self.feature_dim, 1, bias=False)  # (B, 1)
        self.apply(dcgan_weights_init)


@MODELS.register("dcgan")
@describe(options=(*WIDTHS, G_CONDITIONING), image_sizes=(32, 64, 128, 256, 512, 1024))
def dcgan(
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
    """DCGAN pair; at nz 100, ngf = ndf = 64, 3x64x64, G has 3,576,704 and D 2,765,568 parameters."""
    if ngf < 1 or ndf < 1:
        raise ConfigError(f"dcgan needs ngf >= 1 and ndf >= 1 (got ngf={ngf}, ndf={ndf})")
    return (
        DCGANGenerator(latent_dim, channels, image_size, ngf, cbn_classes(g_conditioning, num_classes)),
        DCGANDiscriminator(channels, image_size, ndf),
    )
