"""SN-GAN's CIFAR-10 networks (models/sngan.py): parameter counts by hand, the published layer specs, spectral
normalisation built into D, and the 32-pixel-only refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gan_lightning import GAN
from gan_lightning.core.errors import ConfigError
from gan_lightning.models import build_models
from gan_lightning.models.heads import spectral_norm_all


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def test_standard_cnn_parameter_count_by_hand():
    g, d = build_models("sngan_cnn", latent_dim=128, channels=3, image_size=32)
    # G: dense 128 -> 4*4*512 with BatchNorm1d over its 8192 units, deconvs 512-256-128-64, conv 3x3 to RGB
    dense = 128 * 8192 + 8192 + 2 * 8192
    deconvs = conv(512, 256, 4) + conv(256, 128, 4) + conv(128, 64, 4) + 2 * (256 + 128 + 64)
    assert num_params(g) == dense + deconvs + conv(64, 3, 3) == 3_828_739
    # D: 3x3 / 4x4 convs 3-64, 64-128, 128-128, 128-256, 256-256, 256-512, 512-512, then dense 4*4*512 -> 1
    widths = [3, 64, 128, 128, 256, 256, 512, 512]
    convs = sum(conv(a, b, 4 if i % 2 else 3) for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)))
    assert num_params(d) == convs + 8192 + 1 == 5_860_865


def test_resnet_parameter_count_by_hand():
    g, d = build_models("sngan_resnet", latent_dim=128, channels=3, image_size=32)
    # G (ch 256): dense to 4*4*256; per up-block 2 BN, 2 conv 3x3, a 1x1 shortcut; final BN and conv 3x3 to RGB
    block = 2 * 512 + 2 * conv(256, 256, 3) + conv(256, 256, 1)
    assert num_params(g) == 128 * 4096 + 4096 + 3 * block + 512 + conv(256, 3, 3) == 4_276_739  # the paper's ~4.3M
    # D (ch 128): first block 3-128 with a 1x1 shortcut, a downsampling block with one, two plain ones; bias-free head
    first = conv(3, 128, 3) + conv(128, 128, 3) + conv(3, 128, 1)
    down = 2 * conv(128, 128, 3) + conv(128, 128, 1)
    assert num_params(d) == first + down + 2 * 2 * conv(128, 128, 3) + 128 == 1_053_824


def test_standard_cnn_layers_as_published():
    g, d = build_models("sngan_cnn", latent_dim=128, channels=3, image_size=32)
    deconvs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in deconvs] == [
        (512, 256, (4, 4), (2, 2)), (256, 128, (4, 4), (2, 2)), (128, 64, (4, 4), (2, 2))]  # fmt: skip
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in g.modules()) == 4
    assert isinstance(list(g.modules())[-1], nn.Tanh)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size[0], m.stride[0]) for m in convs] == [(3, 1), (4, 2)] * 3 + [(3, 1)]
    assert {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)} == {0.1}
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in d.modules())
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))])
    assert abs(weights.std().item() - 0.02) < 0.001  # chainer-gan-lib's N(0, 0.02)


def test_resnet_layers_as_published():
    torch.manual_seed(0)
    g, d = build_models("sngan_resnet", latent_dim=128, channels=3, image_size=32)
    d.eval()  # in train mode every forward moves spectral norm's power iteration, so the weights change
    x = torch.randn(2, 3, 32, 32)
    sides = []
    h = x
    for block in d.body.blocks:
        h = block(h)
        sides.append(h.shape[-1])
    assert sides == [16, 8, 8, 8] and h.shape[1] == 128  # downsampling in the first two blocks
    assert d.head.bias is None and d.feature_dim == 128
    # global sum pooling of ReLU features: the body's output is the sum over the 8x8 positions
    torch.testing.assert_close(d.features(x), torch.relu(d.body.blocks(x)).sum(dim=(2, 3)))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 7  # 2 per up-block, 1 before the output conv
    assert all(m.out_channels == 256 for m in g.blocks.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("model", ["sngan_cnn", "sngan_resnet"])
def test_every_weight_of_d_is_spectrally_normalised_and_g_has_none(model):
    g, d = build_models(model, latent_dim=16, channels=3, image_size=32, ngf=8, ndf=8)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(parametrize.is_parametrized(m) for m in g.modules())
    # the largest singular value of each normalised weight, after a few power iterations, is 1
    d.train()
    for _ in range(30):
        d(torch.randn(2, 3, 32, 32))
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1) < 0.05, m
    # --spectral-norm on top leaves D as it was and adds the projection head's
    gan = GAN(model, image_size=32, latent_dim=8, ngf=8, ndf=8, channels=3, spectral_norm=True, conditional=True)
    critic = gan.discriminator
    assert all(len(m.parametrizations.weight) == 1 for m in critic.net.modules() if parametrize.is_parametrized(m))
    assert parametrize.is_parametrized(critic.projection.embed, "weight")


def test_spectral_norm_all_is_idempotent():
    net = nn.Sequential(nn.Linear(4, 3), nn.Conv2d(2, 2, 3))
    spectral_norm_all(spectral_norm_all(net))
    assert [len(m.parametrizations.weight) for m in net] == [1, 1]


@pytest.mark.parametrize("model", ["sngan_cnn", "sngan_resnet"])
def test_other_sizes_are_one_line(model):
    with pytest.raises(ConfigError, match=f"{model} is the CIFAR-10 network, 32x32 only \\(got image_size=64\\)"):
        build_models(model, latent_dim=16, channels=3, image_size=64)
