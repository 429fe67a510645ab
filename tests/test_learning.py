"""Short training runs that must measurably learn: a 2-D mixture of Gaussians, and (slow) real MNIST."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN

from conftest import cpu_trainer

MODES = 8
RADIUS, STD = 2.0, 0.05


def ring_centres() -> torch.Tensor:
    angles = torch.arange(MODES) * 2 * math.pi / MODES
    return torch.stack([angles.cos(), angles.sin()], dim=1) * RADIUS


def ring_data(n: int, seed: int = 0) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    idx = torch.randint(MODES, (n,), generator=rng)
    return ring_centres()[idx] + STD * torch.randn(n, 2, generator=rng)


def mlp(inp: int, out: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, 128), act, nn.Linear(128, 128), act, nn.Linear(128, out))


def mode_report(samples: torch.Tensor) -> tuple[int, float]:
    """(modes holding at least 2% of the samples within 4 std, fraction of samples near any mode)."""
    dist = torch.cdist(samples, ring_centres())  # (N, MODES)
    nearest, which = dist.min(dim=1)
    good = nearest < 4 * STD
    counts = torch.bincount(which[good], minlength=MODES)
    return int((counts >= 0.02 * len(samples)).sum()), good.float().mean().item()


# bce shows learning in the default suite; lsgan, the same run with another loss, in the slow one
@pytest.mark.parametrize("loss", ["bce", pytest.param("lsgan", marks=pytest.mark.slow)])
def test_gan_learns_a_ring_of_gaussians(tmp_path, loss):
    torch.manual_seed(0)
    gan = GAN(generator=mlp(8, 2, nn.ReLU()), discriminator=mlp(2, 1, nn.LeakyReLU(0.2)), latent_dim=8, loss=loss)
    before = mode_report(gan.sample(2000))
    data = DataLoader(TensorDataset(ring_data(256 * 40)), batch_size=256, shuffle=True, drop_last=True)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2000), max_epochs=-1).fit(gan, data)
    modes, quality = mode_report(gan.sample(4000))
    assert before[1] < 0.05  # an untrained generator lands near no mode
    assert modes >= 7, f"only {modes} of {MODES} modes covered"
    assert quality > 0.6, f"only {quality:.0%} of samples near a mode"


@pytest.mark.slow
def test_mlp_gan_learns_real_mnist(tmp_path, real_mnist_dir):
    """The cs231n GAN for 1500 iterations: D(G(z)) rises from ~0 and samples move towards digit statistics."""
    import lightning.pytorch as pl

    from gan_lightning.data import MNISTDataModule
    from gan_lightning.data.base import to_signed

    pl.seed_everything(0, verbose=False)
    gan = GAN("mlp")
    dm = MNISTDataModule(real_mnist_dir, batch_size=128, download=False)
    dm.setup()
    real = to_signed(dm.val_set.images[:2000])  # (2000, 1, 28, 28) in [-1, 1]
    untrained = gan.sample(2000)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1500)).fit(gan, dm)
    trained = gan.sample(2000)

    def gap(x: torch.Tensor) -> float:  # distance of the per-pixel mean and std from the real digits'
        return ((x.mean(0) - real.mean(0)).abs().mean() + (x.std(0) - real.std(0)).abs().mean()).item()

    assert gap(trained) < 0.35 * gap(untrained)
    # digits are mostly background: real MNIST has ~81% of pixels below -0.9
    background = (trained < -0.9).float().mean().item()
    assert 0.6 < background < 0.95
