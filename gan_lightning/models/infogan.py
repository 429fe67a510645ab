"""InfoGAN's MNIST networks (Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets", appendix C, Table 1), as the authors' code builds them (openai/InfoGAN,
`infogan/models/regularized_gan.py`, network_type "mnist", with the layers of `infogan/misc/custom_ops.py`).

Table 1 lists each layer's parts ("4 x 4 conv. 128 lRELU. stride 2. batchnorm"); the code fixes what it leaves open,
and this file follows the code: BatchNorm before the nonlinearity (`conv_batch_norm().apply(leaky_rectify)`), the
FC BatchNorms per unit (`fc_batch_norm`, so the 7x7x128 one is over 6272 units, before the reshape), leaky ReLU
slope 0.01 (`leaky_rectify`'s default), "SAME" padding (28 -> 14 -> 7 and back: padding 1 here), every layer with a
bias, weights N(0, 0.02) (truncated for the convs), biases 0 and BatchNorm gains N(1, 0.02). The paper's G outputs
Bernoulli means; here a Tanh, as every generator of the package, for images in [-1, 1].

D's last hidden layer (FC 1024) is its `body`'s output, so the package's InfoGAN Q head and a conditional GAN's
projection head attach to it as in the paper, where Q shares all of D but the output layer.
"""

from __future__ import annotations

import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models.base import Discriminator
from gan_lightning.models.registry import MODELS, describe

SLOPE = 0.01  # leaky_rectify(x, leakiness=0.01) in the authors' custom_ops.py


def infogan_init(module: nn.Module) -> None:
    """The authors' init: conv weights truncated N(0, 0.02), other weights N(0, 0.02), biases 0, BN gains N(1, 0.02)."""
    if isinstance(module, nn.Conv2d):
        nn.init.trunc_normal_(module.weight, 0.0, 0.02, -0.04, 0.04)  # TensorFlow truncates at 2 std
    elif isinstance(module, (nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.zeros_(module.bias)


class InfoGANGenerator(nn.Module):
    """FC 1024, FC 7x7x128, 4x4 stride-2 upconvs to 64 and C channels; BatchNorm, ReLU after all but the last."""

    def __init__(self, latent_dim: int = 74, channels: int = 1) -> None:
        super().__init__()
        self.image_shape = (channels, 28, 28)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 1024),  # (B, 1024)
            nn.BatchNorm1d(1024),  # (B, 1024)
            nn.ReLU(),  # (B, 1024)
            nn.Linear(1024, 7 * 7 * 128),  # (B, 6272)
            nn.BatchNorm1d(7 * 7 * 128),  # (B, 6272): per unit, as the authors' fc_batch_norm before the reshape
            nn.ReLU(),  # (B, 6272)
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),  # (B, 64, 14, 14)
            nn.BatchNorm2d(64),  # (B, 64, 14, 14)
            nn.ReLU(),  # (B, 64, 14, 14)
            nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1),  # (B, C, 28, 28)
            nn.Tanh(),  # (B, C, 28, 28): the package's images are in [-1, 1]
        )
        self.apply(infogan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents (B, latent_dim) to images (B, C, 28, 28) in [-1, 1]."""
        x = self.fc(z)  # (B, 6272)
        return self.deconv(x.view(z.shape[0], 128, 7, 7))  # (B, C, 28, 28)


class InfoGANDiscriminator(Discriminator):
    """4x4 stride-2 conv 64, 4x4 stride-2 conv 128, FC 1024 (the shared body), then an FC logit head."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 4, stride=2, padding=1),  # (B, 64, 14, 14)
            nn.LeakyReLU(SLOPE),  # (B, 64, 14, 14): no BatchNorm on D's input layer, as in the table
            nn.Conv2d(64, 128, 4, stride=2, padding=1),  # (B, 128, 7, 7)
            nn.BatchNorm2d(128),  # (B, 128, 7, 7)
            nn.LeakyReLU(SLOPE),  # (B, 128, 7, 7)
            nn.Flatten(),  # (B, 6272)
            nn.Linear(7 * 7 * 128, 1024),  # (B, 1024)
            nn.BatchNorm1d(1024),  # (B, 1024)
            nn.LeakyReLU(SLOPE),  # (B, 1024): the features Q and the projection head share
        )
        self.head = nn.Linear(1024, 1)  # (B, 1)
        self.feature_dim = 1024
        self.apply(infogan_init)


@MODELS.register("infogan_mnist")
@describe(image_sizes=[28])
def infogan_mnist(*, latent_dim: int, channels: int, image_size: int, **_: object) -> tuple[nn.Module, Discriminator]:
    """InfoGAN's MNIST pair, 28x28 only.

    Parameters, by hand for G input width L and C channels:
    G = (1024 L + 1024) + 2048 + (1024 * 6272 + 6272) + 2 * 6272 + (128 * 64 * 16 + 64) + 128 + (64 * C * 16 + C)
      = 1024 L + 1025 C + 6,575,680;
    D = (C * 64 * 16 + 64) + (64 * 128 * 16 + 128) + 256 + (6272 * 1024 + 1024) + 2048 + (1024 + 1)
      = 1024 C + 6,558,145.
    At 1x28x28: the paper's L = 74 (62 noise + 10-way categorical + 2 continuous codes) gives G 6,652,481; this
    package's --infogan default L = 108 (96 + 10 + 2) gives G 6,687,297 and an unconditional L = 96 G 6,675,009;
    D has 6,559,169 (the Q head on its 1024 features is the package's, counted apart).
    """
    if image_size != 28:
        # the 7x7 seed of G and the 7x7x128 input of D's FC layer are the 28x28 geometry of the paper
        raise ConfigError(f"infogan_mnist is 28x28 only (got image_size={image_size}); use --model dcgan for "
                          "other sizes")  # fmt: skip
    return InfoGANGenerator(latent_dim, channels), InfoGANDiscriminator(channels)
