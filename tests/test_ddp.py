"""Two CPU processes (gloo): both DDP strategies train with ranks staying bit-identical, and `ddp_per_network`
all-reduces only the gradients of the network each phase trains (counted by a DDP comm hook)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gan_lightning import GAN
from gan_lightning.commands.train import main

from conftest import REPO

PROBE = [sys.executable, str(REPO / "tests" / "ddp_probe.py")]
OLD, NEW = "ddp_find_unused_parameters_true", "ddp_per_network"


def _ranks(tmp_path, cmd: list[str]) -> list[dict]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    a, b = ranks[0]["params"], ranks[1]["params"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    return ranks


def _flags(out, fake_mnist_dir, model: str, loss: str, *extra: str) -> list[str]:
    """The train flags of the runs here (4 iterations, 2 D steps), their devices and strategy left out."""
    return ["--data-dir", str(fake_mnist_dir), "--no-download", "--model", model, "--batch-size", "16",
            "--latent-dim", "8", "--max-steps", "4", "--accelerator", "cpu", "--log-dir", str(out / "logs"),
            "--d-steps", "2", "--loss", loss, *extra]  # fmt: skip


def _train(tmp_path, fake_mnist_dir, model: str, loss: str, strategy: str, *extra: str) -> list[dict]:
    out = tmp_path / strategy
    out.mkdir()
    cmd = [*PROBE, str(out), *_flags(out, fake_mnist_dir, model, loss, *extra), "--devices", "2", "--strategy",
           strategy]  # fmt: skip
    ranks = _ranks(out, cmd)
    assert all(r["iteration"] == 4 for r in ranks)
    # rank zero alone writes checkpoints and grids
    run_dir = out / "logs" / model / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (out / "logs" / model / "version_1").exists()
    assert len(list((run_dir / "samples").iterdir())) == 1
    return ranks


@pytest.mark.parametrize(
    "model,loss,extra",
    [
        ("mlp", "bce", ()),
        ("dcgan_mnist", "bce", ()),  # BatchNorm
        ("mlp", "wgan-gp", ()),  # the gradient penalty
        ("mlp", "rpgan", ("--r1", "1", "--r2", "1", "--reg-every", "2", "--diffaug", "color,translation,cutout")),
    ],
)
@pytest.mark.slow  # two two-rank runs each; the default suite runs the per-network strategy alone, below
def test_per_network_ddp_halves_the_traffic_and_keeps_ranks_identical(tmp_path, fake_mnist_dir, model, loss, extra):
    old = _train(tmp_path, fake_mnist_dir, model, loss, OLD, *extra)
    new = _train(tmp_path, fake_mnist_dir, model, loss, NEW, *extra)
    assert old[0]["strategy"] == "DDPStrategy" and old[0]["find_unused"] == [True]
    assert new[0]["strategy"] == "PerNetworkDDPStrategy" and new[0]["find_unused"] == [False, False]
    # the same checkpoint keys as a single-device run: the wrappers are not submodules
    assert new[0]["state_dict_keys"] == old[0]["state_dict_keys"]
    (whole,), (g, d) = old[0]["wrapped"], new[0]["wrapped"]
    assert whole == g + d
    d_steps, iterations, fp32 = 2, 4, 4
    # before: every optimizer step all-reduces G and D (the idle one's gradients as zeros)
    assert old[0]["allreduce_bytes"] == iterations * (d_steps + 1) * (g + d) * fp32
    # after: each D step all-reduces D, each G step G
    assert new[0]["allreduce_bytes"] == iterations * (d_steps * d + g) * fp32
    assert all(r["allreduce_bytes"] == rank0["allreduce_bytes"] for r, rank0 in ((old[1], old[0]), (new[1], new[0])))


# R1/R2's double backward and augmentation (lazily, every second D step), path length's all-reduced mean, and
# updates of two micro-batches each
STYLE = ("--accumulate", "2", "--image-size", "8", "--ngf", "8", "--ndf", "8", "--w-dim", "8", "--mapping-layers",
         "1", "--pl-weight", "2", "--pl-every", "1", "--noise", "normal", "--r1", "1", "--r2", "1", "--reg-every", "2",
         "--diffaug", "color,translation,cutout")  # fmt: skip


def test_per_network_ddp_all_reduces_each_phases_network_and_keeps_ranks_identical(tmp_path, fake_mnist_dir):
    ranks = _train(tmp_path, fake_mnist_dir, "stylegan2", "rpgan", NEW, *STYLE)
    assert ranks[0]["strategy"] == "PerNetworkDDPStrategy" and ranks[0]["find_unused"] == [False, False]
    # the same run on one device, in this process: the checkpoint keys and the networks' sizes to expect
    assert main(_flags(tmp_path / "single", fake_mnist_dir, "stylegan2", "rpgan", *STYLE)) == 0
    gan = GAN.load_from_checkpoint(
        tmp_path / "single" / "logs" / "stylegan2" / "version_0" / "checkpoints" / "last.ckpt"
    )
    assert ranks[0]["state_dict_keys"] == sorted(gan.state_dict())  # the wrappers are not submodules
    g, d = (sum(p.numel() for p in net.parameters() if p.requires_grad) for net in (gan.generator, gan.discriminator))
    assert ranks[0]["wrapped"] == [g, d]
    # each D update all-reduces D alone, each G update G alone: once per update, not per micro-batch
    d_steps, iterations, fp32 = 2, 4, 4
    assert [r["allreduce_bytes"] for r in ranks] == [iterations * (d_steps * d + g) * fp32] * 2
    # each rank draws its own images and directions; the mean that moves a is all-reduced, so the ranks agree
    key = "objective.regularizers.path_length.pl_mean"
    assert ranks[0]["buffers"][key] > 0 and torch.equal(ranks[0]["buffers"][key], ranks[1]["buffers"][key])


@pytest.mark.slow  # two gloo ranks; the strategy's wrapping is tested on the built-in networks above
def test_custom_networks_get_their_own_wrappers(tmp_path):
    ranks = _ranks(tmp_path, [*PROBE, str(tmp_path), "--custom-networks", NEW])
    assert ranks[0]["strategy"] == "PerNetworkDDPStrategy" and len(ranks[0]["wrapped"]) == 2
    assert ranks[0]["iteration"] == 4 and ranks[0]["allreduce_bytes"] > 0


@pytest.mark.slow  # two gloo ranks for a fallback path: kept out of the default suite's time
def test_a_module_without_networks_falls_back_to_one_wrapper(tmp_path):
    proc_out = tmp_path
    ranks = _ranks(proc_out, [*PROBE, str(tmp_path), "--plain-module", NEW])
    assert len(ranks[0]["wrapped"]) == 1 and ranks[0]["find_unused"] == [True]


def test_multi_process_runs_default_to_per_network_ddp():
    from gan_lightning.commands.train import default_strategy

    assert default_strategy(2, "cpu", 1) == "ddp_per_network" and default_strategy(1, "cpu", 1) == "auto"
    assert default_strategy(1, "cpu", 2) == "ddp_per_network"  # one device on each of two nodes


def test_the_train_command_registers_the_default_multi_device_strategy():
    """scripts/train.py imports only the command; `--devices 2` must still find `ddp_per_network` registered."""
    code = ("import sys; from gan_lightning.commands.train import main; from lightning.pytorch.strategies import "
            "StrategyRegistry; sys.exit(0 if 'ddp_per_network' in StrategyRegistry else 1)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
