"""The normalisation-free residual G and D: shapes, supported sizes, identity blocks at init, pinned sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_lightning.core.errors import ConfigError
from gan_lightning.models import ResNetDiscriminator, ResNetGenerator, build_models
from gan_lightning.models.resnet import ResidualBlock, downsample, upsample


def tiny(channels: int = 1, size: int = 28) -> tuple[ResNetGenerator, ResNetDiscriminator]:
    return build_models("resnet", latent_dim=8, channels=channels, image_size=size, ngf=8, ndf=8)


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(size, channels):
    G, D = tiny(channels, size)
    images = G(torch.randn(3, 8) * 10)  # large noise pushes the output towards tanh's saturation
    assert images.shape == (3, channels, size, size) and images.abs().max() <= 1
    assert D(images).shape == (3,) and D.features(images).shape == (3, D.feature_dim)


def test_unsupported_size_is_one_clear_error():
    with pytest.raises(ConfigError, match="resnet supports image sizes 28, 32 and 64; got image_size=48"):
        build_models("resnet", latent_dim=8, channels=1, image_size=48)


def test_every_block_starts_as_its_shortcut():
    G, D = tiny(3, 32)
    blocks = [m for m in [*G.modules(), *D.modules()] if isinstance(m, ResidualBlock)]
    assert len(blocks) == 8 and any(isinstance(b.shortcut, nn.Conv2d) for b in blocks)
    for block in blocks:
        x = torch.randn(2, block.conv1.in_channels, 5, 5)
        # conv2 starts at 1e-6 of its He scale (not 0: spectral norm would divide 0 by 0)
        torch.testing.assert_close(block(x), block.shortcut(x), atol=1e-4, rtol=0)


def test_nothing_normalises():
    G, D = build_models("resnet", latent_dim=128, channels=3, image_size=64)
    names = ("BatchNorm1d BatchNorm2d BatchNorm3d SyncBatchNorm LazyBatchNorm1d LazyBatchNorm2d LazyBatchNorm3d "
             "InstanceNorm1d InstanceNorm2d InstanceNorm3d LazyInstanceNorm1d LazyInstanceNorm2d LazyInstanceNorm3d "
             "LayerNorm GroupNorm LocalResponseNorm RMSNorm").split()  # fmt: skip
    norms = tuple(getattr(nn, name) for name in names if hasattr(nn, name))  # RMSNorm: torch >= 2.4
    assert not any(isinstance(m, norms) for m in [*G.modules(), *D.modules()])


def test_resampling_is_nearest_or_mean_with_a_121_blur():
    x = torch.randn(2, 3, 6, 6)

    def blur(t: torch.Tensor) -> torch.Tensor:  # [1, 2, 1] x [1, 2, 1] / 16 per channel, edges replicated
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(t.shape[1], 1, 3, 3)
        return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), k, groups=t.shape[1])

    torch.testing.assert_close(upsample(x), blur(F.interpolate(x, scale_factor=2.0, mode="nearest")))
    torch.testing.assert_close(downsample(x), F.avg_pool2d(blur(x), 2))
    torch.testing.assert_close(downsample(torch.full_like(x, 0.7)), torch.full((2, 3, 3, 3), 0.7))


@pytest.mark.parametrize(
    "channels,size,latent,expected",
    [(1, 28, 96, (875_585, 605_569)), (3, 64, 128, (680_259, 750_209))],
)
def test_parameter_counts_are_pinned(channels, size, latent, expected):
    G, D = build_models("resnet", latent_dim=latent, channels=channels, image_size=size)
    assert (sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())) == expected


def test_spectral_norm_on_every_conv_and_linear():
    G, D = tiny()
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        spectral_norm(layer)
    out = D(G(torch.randn(4, 8)))
    out.sum().backward()
    assert torch.isfinite(out).all() and len(layers) == 9
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())


def test_channels_last_and_bf16_autocast_on_cpu():
    G, D = tiny(3, 32)
    G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        images = G(torch.randn(4, 8))
        logits = D(images.contiguous(memory_format=torch.channels_last))
    logits.float().sum().backward()
    assert images.dtype == torch.bfloat16 and logits.shape == (4,) and torch.isfinite(logits).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in [*G.parameters(), *D.parameters()])


def test_conditional_gan_with_spectral_norm_in_bf16():
    from gan_lightning import GAN

    gan = GAN("resnet", latent_dim=8, ngf=8, ndf=8, spectral_norm=True, conditional=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gan.discriminator(gan.generator(gan.latents.draw(4, torch.Generator()).input), torch.arange(4))
    out.logits.float().sum().backward()
    assert torch.isfinite(out.logits).all() and out.features.shape == (4, gan.discriminator.net.feature_dim)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gan.discriminator.parameters())
