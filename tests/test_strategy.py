"""The module's update loop on Lightning's public API: every step through `manual_backward` and the hooks,
per-phase freezing, the step counter and scalars on the iteration axis
(batch transfer: the DataModules', tests/test_reuse.py)."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import MixedPrecision
from test_callbacks import read_events
from test_module import image_loader

from gan_lightning import GAN
from gan_lightning.training.objectives import NonSaturating

from conftest import cpu_trainer


class Watch(Callback):
    """Records each iteration's count next to Lightning's global_step, and how often a step hook ran."""

    def __init__(self) -> None:
        self.counts: list[tuple[int, int]] = []
        self.backward_calls = 0

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.counts.append((pl_module.iteration, trainer.global_step))

    def on_after_backward(self, trainer, pl_module) -> None:
        self.backward_calls += 1


def test_every_update_goes_through_lightnings_hooks_and_global_step_counts_optimizer_steps(tmp_path):
    torch.manual_seed(0)
    gan = GAN("dcgan_mnist", latent_dim=8, d_steps=2)
    watch = Watch()
    trainer = cpu_trainer(tmp_path, callbacks=[watch], max_steps=gan.optimizer_steps(3))
    trainer.fit(gan, image_loader(n=48, batch_size=16))
    assert watch.backward_calls == 3 * 3  # manual_backward dispatched the hook on every optimizer step
    assert watch.counts == [(i, 3 * i) for i in (1, 2, 3)]
    assert gan.iteration == 3


def test_fp16_skipped_steps_are_counted(tmp_path):
    # a scaler whose scale overflows fp16: every step is skipped
    gan = GAN("dcgan_mnist", latent_dim=8)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    trainer = cpu_trainer(tmp_path, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
                          max_steps=gan.optimizer_steps(2))  # fmt: skip
    trainer.fit(gan, image_loader())
    assert int(gan.amp.skipped) == round(math.log2(2.0**40 / scaler.get_scale())) == 4


def test_each_phase_freezes_the_other_network_and_keeps_user_frozen_parameters(tmp_path):
    seen = []

    class Spy(NonSaturating):
        """Records, as each phase's loss is computed, which parameters train: D's all, and each of G's."""

        def d_loss(self, G, D, *args, **kwargs):
            seen.append((all(p.requires_grad for p in D.parameters()), [p.requires_grad for p in G.parameters()]))
            return super().d_loss(G, D, *args, **kwargs)

        def g_loss(self, G, D, *args, **kwargs):
            seen.append((all(p.requires_grad for p in D.parameters()), [p.requires_grad for p in G.parameters()]))
            return super().g_loss(G, D, *args, **kwargs)

    gan = GAN("mlp", latent_dim=8, d_steps=2, objective=Spy())
    user_frozen = next(gan.generator.parameters())
    user_frozen.requires_grad_(False)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2)).fit(gan, image_loader(n=32, batch_size=16))
    n = len(list(gan.generator.parameters()))
    d_phase, g_phase = (True, [False] * n), (False, [False] + [True] * (n - 1))
    assert seen == [d_phase, d_phase, g_phase] * 2
    assert not user_frozen.requires_grad  # frozen before training, frozen after
    assert all(p.requires_grad for p in gan.discriminator.parameters())


def test_scalars_are_logged_on_the_iteration_axis_and_reach_callback_metrics(tmp_path):
    gan = GAN("mlp", latent_dim=8)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = cpu_trainer(tmp_path, logger=logger, log_every_n_steps=2, max_steps=gan.optimizer_steps(5))
    trainer.fit(gan, image_loader())
    ea = read_events(logger.log_dir)
    for tag in ("d_loss", "g_loss", "p_real", "p_fake", "grad_norm_d", "grad_norm_g"):
        tag = f"train/{tag}"
        assert [e.step for e in ea.Scalars(tag)] == [2, 4], tag  # the steps sample grids and val/ metrics use
    assert ea.Scalars("train/d_loss")[-1].value == pytest.approx(trainer.callback_metrics["train/d_loss"].item())
    assert 0 < trainer.callback_metrics["train/p_real"] < 1
