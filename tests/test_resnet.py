"""The normalisation-free residual G and D: shapes, supported sizes, identity blocks at init, pinned sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.models import build_models
from gan_lightning.models.resnet import ResidualBlock, downsample, upsample


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(size, channels):
    G, D = build_models("resnet", latent_dim=8, channels=channels, image_size=size, ngf=8, ndf=8)
    images = G(torch.randn(3, 8))
    assert images.shape == (3, channels, size, size) and images.abs().max() <= 1
    assert D(images).shape == (3,) and D.features(images).shape == (3, D.feature_dim)


def test_unsupported_size_is_one_clear_error():
    with pytest.raises(ConfigError, match="resnet supports image sizes 28, 32 and 64"):
        build_models("resnet", latent_dim=8, channels=1, image_size=48)


def test_blocks_start_as_their_shortcut_and_nothing_normalises():
    for c_in, c_out in ((8, 8), (8, 4)):
        block = ResidualBlock(c_in, c_out, num_blocks=3)
        x = torch.randn(2, c_in, 5, 5)
        torch.testing.assert_close(block(x), block.shortcut(x))
    G, D = build_models("resnet", latent_dim=8, channels=3, image_size=64)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in [*G.modules(), *D.modules()])


def test_smooth_resampling_preserves_constants_and_sizes():
    x = torch.full((1, 2, 8, 8), 0.7)
    torch.testing.assert_close(upsample(x), torch.full((1, 2, 16, 16), 0.7))
    torch.testing.assert_close(downsample(x), torch.full((1, 2, 4, 4), 0.7))


@pytest.mark.parametrize(
    "channels,size,latent,expected",
    [(1, 28, 96, (875_585, 605_569)), (3, 64, 128, (680_259, 750_209))],
)
def test_parameter_counts_are_pinned(channels, size, latent, expected):
    G, D = build_models("resnet", latent_dim=latent, channels=channels, image_size=size)
    assert (sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())) == expected


def test_spectral_norm_and_bf16_forward_backward():
    from gan_lightning import GAN

    gan = GAN("resnet", latent_dim=8, ngf=8, ndf=8, spectral_norm=True, conditional=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gan.discriminator(gan.generator(gan.latents.draw(4, torch.Generator()).input), torch.arange(4))
    out.logits.float().sum().backward()
    assert all(p.grad is not None for p in gan.discriminator.parameters())
