"""Gradient accumulation (`--accumulate N`): N micro-batches per update give the full batch's update without
BatchNorm, run with it, and a batch that does not split is refused in one line; under DDP gradients are
all-reduced once per update, not once per micro-batch."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback
from test_ddp import NEW, OLD, _train
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.commands.train import main
from gan_lightning.core.errors import ConfigError

from conftest import cpu_trainer


class Recorder(Callback):
    """Counts backward passes and keeps every optimizer step's gradients (all parameters, flattened)."""

    def __init__(self) -> None:
        self.backward_calls, self.grads = 0, []

    def on_after_backward(self, trainer, pl_module) -> None:
        self.backward_calls += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.grads.append(torch.cat([p.grad.detach().flatten().clone() for p in params]))


def one_iteration(tmp_path, model: str, batch: int, precision: str = "32-true", **options) -> tuple[GAN, Recorder]:
    """A GAN seeded alike every call, after one iteration on the same `batch` images; what its steps saw."""
    torch.manual_seed(0)
    gan = GAN(model, latent_dim=16, **options)
    images = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    recorder = Recorder()
    trainer = cpu_trainer(tmp_path, callbacks=[recorder], precision=precision, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, DataLoader(TensorDataset(images), batch_size=batch))
    return gan, recorder


def max_weight_difference(a: GAN, b: GAN) -> float:
    nets = ("generator", "discriminator")
    return max((p - q).abs().max().item() for net in nets
               for p, q in zip(getattr(a, net).parameters(), getattr(b, net).parameters(), strict=True))  # fmt: skip


@pytest.mark.parametrize("options", [{}, {"loss": "rpgan", "r1": 1.0, "r2": 1.0, "d_steps": 2}], ids=["bce", "rpgan"])
def test_accumulated_update_is_the_full_batchs_without_batchnorm(options, tmp_path):
    d_steps, batch = options.get("d_steps", 1), 64 * options.get("d_steps", 1)  # 64 images per update
    diffs = {}
    for precision in ("32-true", "64-true"):
        full, seen_full = one_iteration(tmp_path, "mlp", batch, precision, **options)
        accumulated, seen = one_iteration(tmp_path, "mlp", batch, precision, accumulate=4, **options)
        # not vacuous: 4 backward passes per optimizer step, one optimizer step per update
        assert (seen_full.backward_calls, seen.backward_calls) == (d_steps + 1, 4 * (d_steps + 1))
        assert full.global_step == accumulated.global_step == len(seen.grads) == d_steps + 1
        # each step's gradient is the full batch's (Adam's step is invariant to the gradient's scale, so the
        # weights alone would not notice a missing 1/N)
        for g_full, g_acc in zip(seen_full.grads, seen.grads, strict=True):
            tolerance = (1e-5 if precision == "32-true" else 1e-13) * g_full.abs().max()
            assert (g_full - g_acc).abs().max() <= tolerance
        diffs[precision] = max_weight_difference(full, accumulated)
    torch.manual_seed(0)
    assert max_weight_difference(full, GAN("mlp", latent_dim=16, **options).double()) > 1e-4  # the weights moved
    print(
        f"\nmlp {options or 'bce'}: batch 64 vs --accumulate 4 (4 x 16), max |weight difference| after one "
        f"iteration: {diffs['32-true']:.3g} in float32, {diffs['64-true']:.3g} in float64"
    )
    assert diffs["64-true"] < 1e-9
    # float32: Adam moves a weight by lr * g / (|g| + 1e-8), so rounding in gradients near 1e-9 shows at ~1e-5
    assert diffs["32-true"] < 1e-4


def test_batchnorm_networks_train_with_accumulation_on_per_micro_batch_statistics(tmp_path):
    full, _ = one_iteration(tmp_path, "dcgan_mnist", 16)
    accumulated, seen = one_iteration(tmp_path, "dcgan_mnist", 16, accumulate=4)  # micro-batches of 4
    assert seen.backward_calls == 4 * 2
    assert all(torch.isfinite(p).all() for p in accumulated.parameters())
    # BatchNorm normalises each micro-batch with its own statistics: not the full batch's update (documented)
    assert max_weight_difference(full, accumulated) > 1e-6


def test_a_batch_that_does_not_split_is_refused_in_one_line(tmp_path, capsys, fake_mnist_dir):
    gan = GAN("mlp", latent_dim=8, accumulate=3)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1))
    with pytest.raises(ConfigError) as err:
        trainer.fit(gan, DataLoader(TensorDataset(torch.rand(16, 1, 28, 28)), batch_size=16))
    assert "\n" not in str(err.value) and "--accumulate 3" in str(err.value) and "16 images" in str(err.value)
    # the command refuses it before anything is written
    argv = ["--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "10", "--accumulate", "4",
            "--accelerator", "cpu", "--log-dir", str(tmp_path / "logs"), "--max-steps", "1"]  # fmt: skip
    assert main(argv) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "--accumulate 4" in err_lines[0] and "multiple of 4" in err_lines[0]
    assert not (tmp_path / "logs").exists()


# in the slow suite: the default one checks the per-network strategy's count with accumulation in test_ddp
@pytest.mark.parametrize("strategy", [NEW, OLD])
@pytest.mark.slow
def test_ddp_all_reduces_once_per_update_not_per_micro_batch(tmp_path, fake_mnist_dir, strategy):
    ranks = _train(tmp_path, fake_mnist_dir, "mlp", "bce", strategy, "--accumulate", "4")  # ranks bit-identical
    d_steps, iterations, fp32 = 2, 4, 4
    wrapped = ranks[0]["wrapped"]
    per_iteration = d_steps * wrapped[1] + wrapped[0] if strategy == NEW else (d_steps + 1) * wrapped[0]
    assert ranks[0]["allreduce_bytes"] == iterations * per_iteration * fp32
