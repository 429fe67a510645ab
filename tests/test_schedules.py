"""Schedules of the learning rate, the R1/R2 gamma, the EMA horizon and the augmentation probability: hand-computed
values, the module's optimizers / objective / EMA / augmentation following them, exact resume, one-line refusals."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Callback
from test_resume import generator_weights, train
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.commands.train import main
from gan_lightning.core.errors import ConfigError
from gan_lightning.regularizers.lecam import LeCam
from gan_lightning.training.objectives import RelativisticPairing
from gan_lightning.training.schedules import half_life, schedule_value, total_iterations

from conftest import cpu_trainer

COS_QUARTER = (1 + math.cos(math.pi / 4)) / 2  # 0.8536: the cosine schedule's remaining fraction at t = 1/4


class ProbableShift(nn.Module):
    """A toy augmentation with a per-sample probability buffer `p`; remembers the p of every call."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(p))
        self.seen: list[float] = []

    def forward(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        self.seen.append(float(self.p))
        chosen = torch.rand(x.shape[0], generator=rng, device=rng.device).to(x.device) < self.p
        return x + 0.1 * chosen.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))


class Flip(nn.Module):
    """A toy augmentation without a probability."""

    def forward(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return x.flip(-1)


class AdaptiveShift(ProbableShift):
    """Owns its p: adjusts it from what it observes (as an ADA controller)."""

    def observe(self, real_logits: torch.Tensor) -> None:
        self.p += 0.01


@pytest.mark.parametrize(
    "shape,expected",
    [
        # base 1e-3 -> final 1e-4 over 100 iterations: at 0, 25, 50, 100 and past the end
        ("constant", (1e-3, 1e-3, 1e-3, 1e-3, 1e-3)),
        ("linear", (1e-3, 7.75e-4, 5.5e-4, 1e-4, 1e-4)),
        ("cosine", (1e-3, 1e-4 + 9e-4 * COS_QUARTER, 5.5e-4, 1e-4, 1e-4)),
    ],
)
def test_schedule_values_at_start_middle_and_end(shape, expected):
    values = [schedule_value(shape, 1e-3, 1e-4, i, 100) for i in (0, 25, 50, 100, 150)]
    assert values == pytest.approx(expected, rel=1e-12, abs=0)
    assert schedule_value("cosine", 0.0, 0.5, 50, 100) == pytest.approx(0.25)  # growing works alike


def test_the_total_is_the_trainers_budget_in_iterations():
    assert total_iterations(3000, 3) == 1000
    assert total_iterations(1, 3) == 1  # fast_dev_run's single step: a one-iteration run
    assert total_iterations(-1, 3) is None


class Follow(Callback):
    """Per optimizer step: the learning rate; per iteration: r1, r2 and the EMA decay the iteration used."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.per_iteration: list[tuple[float, float, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.per_iteration.append((pl_module.objective.r1, pl_module.objective.r2, pl_module.ema.decay))


def test_optimizers_penalties_ema_and_augmentation_follow_their_schedules(tmp_path):
    augment = ProbableShift(p=0.0)
    objective = RelativisticPairing(r1=1.0, r2=0.5, augment=augment)
    gan = GAN("mlp", latent_dim=8, objective=objective, ema_decay=0.9, lr=1e-3,
              lr_schedule="linear", lr_final=1e-4, gamma_schedule="cosine", gamma_final=0.1,
              ema_schedule="linear", ema_final=0.99, aug_schedule="linear", aug_final=0.5)  # fmt: skip
    follow = Follow()
    trainer = cpu_trainer(tmp_path, callbacks=[follow], log_every_n_steps=1, max_steps=gan.optimizer_steps(4))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(64, 1, 28, 28) * 2 - 1), batch_size=16))
    t = [i / 4 for i in range(4)]  # the four iterations' positions in the run
    # each iteration: one D step and one G step, both at that iteration's learning rate
    assert follow.lrs == pytest.approx([1e-3 + (1e-4 - 1e-3) * x for x in t for _ in range(2)], rel=1e-12)
    cos = [(1 + math.cos(math.pi * x)) / 2 for x in t]  # 1, 0.854, 0.5, 0.146
    ema_decays = [0.5 ** (1 / (half_life(0.9) + (half_life(0.99) - half_life(0.9)) * x)) for x in t]
    expected = [(0.1 + 0.9 * c, 0.1 + 0.4 * c, e) for c, e in zip(cos, ema_decays, strict=True)]
    assert follow.per_iteration == [pytest.approx(e, rel=1e-12) for e in expected]
    assert follow.per_iteration[1][0] == pytest.approx(0.1 + 0.9 * COS_QUARTER)  # hand-computed: 0.868
    # the augmentation ran at p = 0, 1/8, 1/4, 3/8: 4 augmented D calls per iteration (real and fake in each phase)
    assert augment.seen == pytest.approx([0.5 * x for x in t for _ in range(4)])
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert logged["train/lr"] == pytest.approx(1e-3 + (1e-4 - 1e-3) * 0.75)
    assert logged["train/r1_gamma"] == pytest.approx(0.1 + 0.9 * cos[3])
    assert logged["train/r2_gamma"] == pytest.approx(0.1 + 0.4 * cos[3])
    assert logged["train/aug_p"] == pytest.approx(0.375)
    assert logged["train/ema_half_life"] == pytest.approx(half_life(ema_decays[3]))


class Betas(Callback):
    """Per optimizer step: (lr, beta2) of the optimizer stepping."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        group = optimizer.param_groups[0]
        self.seen.append((group["lr"], group["betas"][1]))


def test_beta2_follows_its_schedule_and_a_schedule_length_holds_the_final_values(tmp_path):
    """R3GAN's recipe: beta2 0.9 -> 0.99 and lr decayed over the first iterations of a longer run, then held."""
    gan = GAN("mlp", latent_dim=8, lr=1e-3, beta1=0.0, beta2=0.9, beta2_schedule="linear", beta2_final=0.99,
              lr_schedule="linear", lr_final=5e-4, schedule_length=2)  # fmt: skip
    follow = Betas()
    trainer = cpu_trainer(tmp_path, callbacks=[follow], log_every_n_steps=1, max_steps=gan.optimizer_steps(4))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(64, 1, 28, 28) * 2 - 1), batch_size=16))
    # iterations 0, 1 of a 2-iteration schedule, then its end values at iterations 2 and 3 (D step, G step each)
    expected = [(1e-3, 0.9), (7.5e-4, 0.945), (5e-4, 0.99), (5e-4, 0.99)]
    assert follow.seen == [pytest.approx(e, rel=1e-12) for e in expected for _ in range(2)]
    assert all(opt.param_groups[0]["betas"][0] == 0.0 for opt in trainer.optimizers)  # beta1 untouched
    assert float(trainer.callback_metrics["train/beta2"]) == pytest.approx(0.99)


def test_the_augmentation_schedule_drives_diffaugment(tmp_path):
    """--diffaug POLICY --diffaug-p 0 --aug-schedule linear: DiffAugment's own p follows the schedule."""
    gan = GAN("mlp", latent_dim=8, diffaug="translation", diffaug_p=0.0, aug_schedule="linear", aug_final=0.5)
    assert gan.objective.augment.p == 0
    trainer = cpu_trainer(tmp_path, log_every_n_steps=1, max_steps=gan.optimizer_steps(4))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(64, 1, 28, 28) * 2 - 1), batch_size=16))
    assert float(gan.objective.augment.p) == pytest.approx(0.375)  # the last iteration's value, t = 3/4
    assert float(trainer.callback_metrics["train/aug_p"]) == pytest.approx(0.375)


class FollowLeCam(Callback):
    """Per iteration: the weight LeCam's D term used."""

    def __init__(self) -> None:
        self.weights: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.weights.append(pl_module.objective.regularizer(LeCam).weight)


def test_a_component_option_declared_schedulable_follows_its_schedule(tmp_path):
    """LeCam declares its weight with schedule="weight": --lecam-schedule / --lecam-final come from that declaration,
    and the schedule writes the built regularizer's weight each iteration, logged as train/lecam_weight."""
    assert {"lecam_schedule", "lecam_final"} <= set(GAN.declared_options().names())
    gan = GAN("mlp", latent_dim=8, lecam=0.4, lecam_schedule="linear", lecam_final=0.0)
    follow = FollowLeCam()
    trainer = cpu_trainer(tmp_path, callbacks=[follow], log_every_n_steps=1, max_steps=gan.optimizer_steps(4))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(64, 1, 28, 28) * 2 - 1), batch_size=16))
    assert follow.weights == pytest.approx([0.4, 0.3, 0.2, 0.1], rel=1e-12)
    assert float(trainer.callback_metrics["train/lecam_weight"]) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="--lecam-schedule linear needs --lecam-final"):
        GAN("mlp", latent_dim=8, lecam=0.4, lecam_schedule="linear")
    with pytest.raises(ConfigError, match="--lecam-final must be >= 0"):  # the weight's own bound, at the end too
        GAN("mlp", latent_dim=8, lecam=0.4, lecam_schedule="linear", lecam_final=-1.0)
    with pytest.raises(ConfigError, match="--lecam-schedule: nothing to schedule"):
        GAN("mlp", latent_dim=8, lecam_schedule="linear", lecam_final=0.0)  # LeCam is off


def test_without_schedules_nothing_is_set_or_logged(tmp_path):
    gan = GAN("mlp", latent_dim=8, lr=1e-3, r1=0.5, ema_decay=0.9)
    trainer = cpu_trainer(tmp_path, log_every_n_steps=1, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(32, 1, 28, 28) * 2 - 1), batch_size=16))
    assert (gan.objective.r1, gan.ema.decay, trainer.optimizers[0].param_groups[0]["lr"]) == (0.5, 0.9, 1e-3)
    assert not {"train/lr", "train/r1_gamma", "train/ema_half_life"} & set(trainer.callback_metrics)


def test_a_scheduled_run_resumes_exactly(tmp_path, fake_mnist_dir):
    flags = ("--model", "mlp", "--loss", "rpgan", "--r1", "1", "--r2", "1", "--ema-decay", "0.9", "--max-steps", "10",
             "--lr-schedule", "cosine", "--lr-final", "1e-4", "--gamma-schedule", "linear", "--gamma-final", "0.1",
             "--ema-schedule", "cosine", "--ema-final", "0.99")  # fmt: skip
    train(tmp_path / "straight", fake_mnist_dir, *flags, "--checkpoint-every", "5", "--keep-checkpoints")
    half = tmp_path / "straight" / "run" / "version_0" / "checkpoints" / "iter_0000005.ckpt"
    train(tmp_path / "resumed", fake_mnist_dir, *flags, "--ckpt-path", str(half))  # same length: same schedules
    _, straight = generator_weights(tmp_path / "straight")
    _, resumed = generator_weights(tmp_path / "resumed")
    assert straight["global_step"] == resumed["global_step"] == 10 * 3
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in straight["state_dict"].items():  # G, D and the EMA generator, bit-identical on CPU
        assert torch.equal(value, resumed["state_dict"][key]), key
    # not vacuous: both runs ended at the schedule's last value, far from --lr 1e-3
    last_lr = schedule_value("cosine", 1e-3, 1e-4, 9, 10)
    for ckpt in (straight, resumed):
        assert [s["param_groups"][0]["lr"] for s in ckpt["optimizer_states"]] == pytest.approx([last_lr] * 2)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lr_schedule": "cosine"}, "--lr-schedule cosine needs --lr-final"),
        ({"gamma_schedule": "linear", "gamma_final": 0.1}, "--gamma-schedule needs a penalty to schedule"),
        ({"ema_schedule": "linear", "ema_final": 0.99}, "--ema-schedule needs an EMA generator"),
        ({"aug_schedule": "linear", "aug_final": 0.5}, "--aug-schedule needs an augmentation"),
        ({"aug_schedule": "linear", "aug_final": 0.5, "objective": RelativisticPairing(augment=Flip())},
         "has no probability p"),
        ({"aug_schedule": "linear", "aug_final": 0.5, "objective": RelativisticPairing(augment=AdaptiveShift())},
         "AdaptiveShift is adaptive"),
    ],
)  # fmt: skip
def test_a_schedule_without_what_it_needs_is_refused_in_one_line(options, message):
    with pytest.raises(ConfigError) as err:
        GAN("mlp", latent_dim=8, **options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_schedule_without_a_step_budget_is_refused_in_one_line(tmp_path, capsys, fake_mnist_dir):
    gan = GAN("mlp", latent_dim=8, lr_schedule="cosine", lr_final=1e-4)
    trainer = cpu_trainer(tmp_path, max_epochs=1)  # max_steps -1: no iteration budget
    with pytest.raises(ConfigError) as err:
        trainer.fit(gan, DataLoader(TensorDataset(torch.rand(16, 1, 28, 28)), batch_size=16))
    assert "--lr-schedule needs the run's length in iterations" in str(err.value) and "\n" not in str(err.value)
    argv = ["--data-dir", str(fake_mnist_dir), "--no-download", "--accelerator", "cpu", "--max-epochs", "1",
            "--lr-schedule", "linear", "--lr-final", "1e-4", "--log-dir", str(tmp_path / "logs")]  # fmt: skip
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--lr-schedule needs the run's length" in lines[0] and "--max-steps" in lines[0]
    assert not (tmp_path / "logs").exists()
