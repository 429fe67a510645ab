"""The EMA component: ramp-up arithmetic, BatchNorm statistics options, and EMA vs raw samples on real MNIST."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gan_lightning import EMA, GAN
from gan_lightning.core.errors import ConfigError


def toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_rampup_horizon_grows_with_iterations_up_to_decay():
    ema = EMA(toy(), decay=0.999, rampup=0.05)
    # half-life = min(ln 0.5 / ln 0.999 = 692.8 iterations, 0.05 * iteration); beta = 0.5 ** (1 / half-life)
    assert ema.beta(1) == pytest.approx(0.5**20)  # the first update all but copies G
    assert ema.beta(1000) == pytest.approx(0.5 ** (1 / 50))
    assert ema.beta(10_000) == pytest.approx(0.5 ** (1 / 500))
    assert ema.beta(100_000) == pytest.approx(0.999)  # the full horizon of `decay`
    assert EMA(toy(), decay=0.9, rampup=None).beta(1) == 0.9
    # the defect ramp-up fixes: without it, 1000 updates at 0.999 keep 37% of the initial weights
    assert math.prod(EMA(toy(), 0.999, None).beta(t) for t in range(1, 1001)) == pytest.approx(0.3677, abs=1e-3)
    assert math.prod(ema.beta(t) for t in range(1, 1001)) < 1e-6


def test_update_arithmetic_and_frozen_copy():
    net = toy()
    ema = EMA(net, decay=0.9, rampup=None, bn_stats="copy")
    p, e = net[0].weight, ema.module[0].weight
    torch.testing.assert_close(e, p)
    start = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)
    ema.update(net, 1)
    torch.testing.assert_close(e, start + 0.1)  # 0.9 * start + 0.1 * (start + 1)
    ema.update(net, 2)
    torch.testing.assert_close(e, start + 0.19)
    assert not any(q.requires_grad for q in ema.module.parameters())
    # ramped up: beta at iteration 20 is 0.5 ** (1 / 1) = 0.5
    ramped = EMA(net, decay=0.999, rampup=0.05, bn_stats="copy")
    with torch.no_grad():
        p.add_(2.0)
    ramped.update(net, 20)
    torch.testing.assert_close(ramped.module[0].weight, p.detach() - 1.0)


@pytest.mark.parametrize("bn_stats", ["copy", "average", "recompute"])
def test_batchnorm_statistics_options(bn_stats):
    net = toy()
    ema = EMA(net, decay=0.5, rampup=None, bn_stats=bn_stats)
    net.train()
    net(torch.randn(64, 3) + 5)  # move G's running statistics away from the EMA copy's
    ema.update(net, 1)
    ema_bn, bn = ema.module[1], net[1]
    x = torch.randn(32, 3)
    module = ema.ready(lambda n: x)
    if bn_stats == "copy":
        torch.testing.assert_close(ema_bn.running_mean, bn.running_mean)
    elif bn_stats == "average":  # halfway between the initial zeros and G's statistics
        torch.testing.assert_close(ema_bn.running_mean, 0.5 * bn.running_mean)
    else:  # the statistics of the averaged weights on the drawn inputs, exactly
        with torch.no_grad():
            h = ema.module[0](x)
        torch.testing.assert_close(ema_bn.running_mean, h.mean(0))
        torch.testing.assert_close(ema_bn.running_var, h.var(0, unbiased=True))
        assert ema_bn.momentum == bn.momentum  # restored after the cumulative estimate
    assert module is ema.module
    if bn_stats != "recompute":  # counters are copied, never averaged
        assert torch.equal(ema_bn.num_batches_tracked, bn.num_batches_tracked)


def test_recompute_happens_once_per_change_and_after_loading():
    net = toy()
    ema = EMA(net, bn_stats="recompute")
    calls = []

    def draw(n):
        calls.append(n)
        return torch.randn(n, 3)

    ema.update(net, 1)
    ema.ready(draw)
    first = len(calls)
    ema.ready(draw)
    assert first > 0 and len(calls) == first  # up to date: no second estimate
    fresh = EMA(toy(), bn_stats="recompute")
    fresh.load_state_dict(ema.state_dict())
    fresh.ready(draw)
    assert len(calls) == 2 * first  # statistics from disk are re-estimated for the loaded weights


def test_bad_options_fail_clearly():
    with pytest.raises(ConfigError, match=r"--ema-decay must lie in \(0, 1\), got 1.0"):
        EMA(toy(), decay=1.0)
    with pytest.raises(ConfigError, match="--ema-rampup must be >= 0"):
        EMA(toy(), rampup=-0.1)
    assert EMA(toy(), rampup=0.0).rampup is None  # 0 turns the ramp-up off, as --ema-rampup says
    for bad in (float("nan"), None):
        with pytest.raises(ConfigError, match="decay"):
            EMA(toy(), decay=bad)
    with pytest.raises(ConfigError, match="--ema-rampup must be >= 0, got nan"):
        EMA(toy(), rampup=float("nan"))
    with pytest.raises(ConfigError, match="unknown ema_bn_stats 'median'"):
        EMA(toy(), bn_stats="median")
    with pytest.raises(ConfigError, match=r"--ema-decay must lie in \(0, 1\), got 2.0"):
        GAN("mlp", ema_decay=2.0)


@pytest.mark.slow
def test_ema_samples_score_no_worse_than_raw_on_real_mnist(tmp_path, real_mnist_dir):
    """dcgan_mnist with --ema-decay 0.999: the classifier's FID of EMA samples is no worse than of raw samples."""
    from gan_lightning.commands.sample import load_gan
    from gan_lightning.commands.train import main
    from gan_lightning.metrics.classifier import train_classifier
    from gan_lightning.metrics.evaluator import evaluate

    train_classifier(real_mnist_dir, tmp_path / "clf.pt", epochs=1)
    argv = ["--data-dir", str(real_mnist_dir), "--model", "dcgan_mnist", "--ema-decay", "0.999", "--max-steps",
            "300", "--seed", "0", "--accelerator", "cpu", "--log-dir", str(tmp_path), "--name", "ema"]  # fmt: skip
    assert main(argv) == 0
    gan = load_gan(tmp_path / "ema" / "version_0" / "checkpoints" / "last.ckpt")
    raw_gan = load_gan(tmp_path / "ema" / "version_0" / "checkpoints" / "last.ckpt")
    raw_gan.ema = None
    ema_fid = evaluate(gan, tmp_path / "clf.pt", real_mnist_dir, num_samples=2000)["fid"]
    raw_fid = evaluate(raw_gan, tmp_path / "clf.pt", real_mnist_dir, num_samples=2000)["fid"]
    assert ema_fid <= raw_fid, (ema_fid, raw_fid)


def test_recompute_bypasses_sync_batchnorm(monkeypatch):
    # Under --sync-batchnorm Lightning converts the EMA copy too; rank zero re-estimates alone, so the estimate must
    # not enter SyncBatchNorm's collective (which would wait for the other ranks forever), and must restore it after.
    net = nn.SyncBatchNorm.convert_sync_batchnorm(toy())
    ema = EMA(net, bn_stats="recompute")
    ema.update(net, 1)
    x = torch.randn(32, 3)

    def synchronised(*_):
        raise AssertionError("the estimate entered SyncBatchNorm's synchronised forward")

    monkeypatch.setattr(nn.SyncBatchNorm, "forward", synchronised)
    bn = ema.ready(lambda n: x)[1]
    assert isinstance(bn, nn.SyncBatchNorm)
    with torch.no_grad():
        torch.testing.assert_close(bn.running_mean, ema.module[0](x).mean(0))
        with pytest.raises(AssertionError, match="entered SyncBatchNorm"):
            bn.train()(ema.module[0](x))  # afterwards the layer is SyncBatchNorm again
