"""--model r3gan: R3GAN's networks (brownvc/R3GAN R3GAN/Networks.py) at its CIFAR-10 size, fix-up init, resamplers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models import build_models, default_image_size
from gan_lightning.models.r3gan_layers import Downsample, ResidualBlock, Upsample, lowpass_kernel

# R3GAN's CIFAR-10 preset (train.py): 4 stages of width 768, 2 blocks, expansion 2, cardinality 96, noise 64.
CIFAR10 = {"channels": 3, "image_size": 32, "ngf": 768, "ndf": 768}


def num_params(module: nn.Module) -> int:
    """Total number of parameters."""
    return sum(p.numel() for p in module.parameters())


def blocks(module: nn.Module) -> list[ResidualBlock]:
    """Every residual block of a network."""
    return [m for m in module.modules() if isinstance(m, ResidualBlock)]


@pytest.mark.parametrize(
    ("latent_dim", "num_classes", "expected_g", "expected_d"),
    [
        (64, 0, 20_732_160, 20_683_776),  # counted from the reference's Generator / Discriminator once
        (74, 10, 20_781_952, 20_683_776),  # conditional G: 64 noise + 10 one-hot columns, label embedding 64
    ],
)
def test_cifar10_parameter_counts_equal_the_reference(
    latent_dim: int, num_classes: int, expected_g: int, expected_d: int
) -> None:
    with torch.device("meta"):  # the shapes without 80 MB of weights
        g, d = build_models("r3gan", latent_dim=latent_dim, num_classes=num_classes, **CIFAR10)
    assert num_params(g) == expected_g
    assert num_params(d) == expected_d  # the conditional D's class term is the package's projection head
    block = blocks(g)[0]
    assert (block.expand.out_channels, block.grouped.groups, block.grouped.kernel_size) == (1536, 96, (3, 3))
    assert len(blocks(g)) == len(blocks(d)) == 8


def test_every_block_is_its_shortcut_at_init() -> None:
    torch.manual_seed(0)
    g, d = build_models("r3gan", latent_dim=16, channels=3, image_size=32, ngf=32, ndf=32)
    x = torch.randn(2, 32, 8, 8)
    for block in blocks(g) + blocks(d):
        branch = block(x) - x  # (B, C, H, W)
        # a normally initialised last layer gives a branch of the order of x
        assert branch.abs().max() < 1e-4 * x.abs().max()
    # so G at init is its basis, the upsamplers and the aggregation, and D's body its extraction, downsamplers, basis
    z = torch.randn(2, 16)
    h = g.basis(z)  # (B, w, 4, 4)
    for _ in range(3):
        h = g.upsample(h)
    torch.testing.assert_close(g(z), torch.tanh(g.to_image(h)), rtol=0, atol=1e-4)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    h = d.body.from_image(images)
    for _ in range(3):
        h = d.body.downsample(h)
    torch.testing.assert_close(d.features(images), d.body.basis(h), rtol=0, atol=1e-4)


def test_fixup_gains_of_the_branch_layers() -> None:
    torch.manual_seed(0)
    g, _ = build_models("r3gan", latent_dim=16, channels=3, image_size=32, ngf=64, ndf=8)
    gain = math.sqrt(2 / 1.04) * 8 ** (-1 / 4)  # leaky ReLU 0.2's gain times (4 stages x 2 blocks)^(-1/4)
    block = blocks(g)[0]
    for layer, fan_in in ((block.expand, 64), (block.grouped, 16 * 9)):
        assert layer.weight.std().item() == pytest.approx(gain / math.sqrt(fan_in), rel=0.05)
    assert block.act1.bias.abs().max() == 0 and block.act2.bias.abs().max() == 0


def test_resamplers_against_hand_computed_values() -> None:
    torch.testing.assert_close(
        lowpass_kernel(), torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    )
    # separable inputs: each axis is upsampled by taps [1, 3, 3, 1] / 4 with zeros outside, so [a, b] becomes
    # [3a/4, (3a + b)/4, (a + 3b)/4, 3b/4]; channel 1 is channel 0 times -2 (the resampling is per channel)
    x = torch.outer(torch.tensor([1.0, 2]), torch.tensor([3.0, 5]))  # (2, 2)
    up = torch.outer(torch.tensor([0.75, 1.25, 1.75, 1.5]), torch.tensor([2.25, 3.5, 4.5, 3.75]))  # (4, 4)
    torch.testing.assert_close(Upsample()(torch.stack([x, -2 * x])[None]), torch.stack([up, -2 * up])[None])
    # downsampling: [1, 3, 3, 1] / 8 at stride 2 over the zero-padded row; [a, b, c, d] -> [(3a+3b+c)/8, (b+3c+3d)/8]
    y = torch.outer(torch.tensor([1.0, 2, 3, 4]), torch.tensor([0.0, 1, 0, 2]))  # (4, 4)
    down = torch.outer(torch.tensor([1.5, 2.875]), torch.tensor([0.375, 0.875]))  # (2, 2)
    torch.testing.assert_close(Downsample()(torch.stack([y, -2 * y])[None]), torch.stack([down, -2 * down])[None])


@pytest.mark.parametrize("num_classes", [0, 3])
def test_gradients_reach_every_parameter(num_classes: int) -> None:
    torch.manual_seed(0)
    g, d = build_models("r3gan", latent_dim=8 + num_classes, channels=1, image_size=16, ngf=8, ndf=8,
                        num_classes=num_classes)  # fmt: skip
    z = torch.cat([torch.randn(2, 8), nn.functional.one_hot(torch.tensor([0, 1]), 3)[:, :num_classes].float()], dim=1)
    fake = g(z)
    assert fake.shape == (2, 1, 16, 16) and torch.isfinite(fake).all() and fake.abs().max() <= 1
    logits = d(fake)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    logits.sum().backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"
    if num_classes:
        assert g.embed.weight.shape == (64, num_classes)  # the reference's ConditionEmbeddingDimension on CIFAR-10


def test_labels_condition_g_and_other_columns_are_noise() -> None:
    torch.manual_seed(0)
    g, _ = build_models("r3gan", latent_dim=11, channels=3, image_size=8, ngf=8, ndf=8, num_classes=3)
    z = torch.randn(1, 8).expand(3, 8)
    images = g(torch.cat([z, torch.eye(3)], dim=1))  # one noise, three classes
    assert (images[0] - images[1]).abs().max() > 1e-3
    plain, _ = build_models("r3gan", latent_dim=11, channels=3, image_size=8, ngf=8, ndf=8)
    assert plain.embed is None and plain.basis.linear.in_features == 11  # InfoGAN codes: all columns are noise


def test_sizes_and_option_errors() -> None:
    assert default_image_size("r3gan", 28) == 32  # MNIST is padded to 32
    assert default_image_size("r3gan", 32) == 32
    with pytest.raises(ConfigError, match="powers of two"):
        build_models("r3gan", latent_dim=8, channels=1, image_size=28)
    with pytest.raises(ConfigError, match="--r3gan-group-channels 16"):
        build_models("r3gan", latent_dim=8, channels=1, image_size=16, ngf=12, ndf=8)
    with pytest.raises(ConfigError, match="--latent-dim"):
        build_models("r3gan", latent_dim=3, channels=1, image_size=16, num_classes=3)
