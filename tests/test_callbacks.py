"""SampleGrid: fixed noise, eval-mode sampling, TensorBoard images that can be read back, checkpointed noise."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN, SampleGrid

from conftest import cpu_trainer


def loader(n: int = 64) -> DataLoader:
    images = torch.rand(n, 1, 28, 28) * 2 - 1
    return DataLoader(TensorDataset(images, torch.zeros(n, dtype=torch.long)), batch_size=16, drop_last=True)


def read_events(log_dir) -> EventAccumulator:
    ea = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    return ea


def test_grids_and_scalars_written_to_tensorboard(tmp_path):
    gan = GAN("mlp", latent_dim=8)
    logger = TensorBoardLogger(tmp_path, name="run")
    grid = SampleGrid(num_samples=16, every_n_steps=2)
    trainer = cpu_trainer(
        tmp_path, logger=logger, callbacks=[grid], log_every_n_steps=1, max_steps=gan.optimizer_steps(5)
    )
    trainer.fit(gan, loader())
    ea = read_events(logger.log_dir)
    assert {"train/d_loss", "train/g_loss", "train/p_real", "train/p_fake"} <= set(ea.Tags()["scalars"])
    # every 2 generator updates, plus the end of training (step 5), on the iteration axis
    assert [e.step for e in ea.Images("samples")] == [2, 4, 5]
    image = ea.Images("samples")[-1]
    assert image.width == 4 * 28 + 5 * 2 and image.height == image.width  # 4x4 grid with 2-pixel padding
    assert len(ea.Scalars("train/d_loss")) == 5
    pngs = sorted(p.name for p in (tmp_path / "run" / "version_0" / "samples").iterdir())
    assert pngs == ["samples_0000002.png", "samples_0000004.png", "samples_0000005.png"]


def test_grid_samples_fixed_noise_in_eval_mode(tmp_path):
    modes: list[bool] = []

    class Probe(GAN):
        def sample(self, *args, **kwargs):
            handle = self.generator.register_forward_pre_hook(lambda m, _: modes.append(m.training))
            try:
                return super().sample(*args, **kwargs)
            finally:
                handle.remove()

    gan = Probe("dcgan_mnist", latent_dim=8)
    grid = SampleGrid(num_samples=4, every_n_steps=1, save_png=False)
    trainer = cpu_trainer(tmp_path, callbacks=[grid], max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, loader())
    assert modes and not any(modes)  # BatchNorm in eval mode while sampling
    assert gan.generator.training  # and back to training afterwards
    noise = grid.fixed_latents[""].clone()
    assert noise.shape == (4, 8)
    torch.testing.assert_close(noise, SampleGrid(num_samples=4).latents_for(gan)[""])  # same seed, same noise


def test_fixed_noise_survives_checkpoint(tmp_path):
    gan = GAN("mlp", latent_dim=8)
    grid = SampleGrid(num_samples=4, every_n_steps=1, seed=99, save_png=False)
    trainer = cpu_trainer(tmp_path, callbacks=[grid], max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, loader())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    restored = SampleGrid(num_samples=4, seed=0, save_png=False)  # a different seed: the checkpoint must win
    trainer2 = cpu_trainer(tmp_path, callbacks=[restored], max_steps=gan.optimizer_steps(2))
    trainer2.fit(GAN("mlp", latent_dim=8), loader(), ckpt_path=tmp_path / "a.ckpt")
    torch.testing.assert_close(restored.fixed_latents, grid.fixed_latents)


def test_only_rank_zero_samples(tmp_path, monkeypatch):
    gan = GAN("mlp", latent_dim=8)
    grid = SampleGrid(num_samples=4, every_n_steps=1, save_png=False)
    trainer = cpu_trainer(tmp_path, max_steps=2)
    trainer.strategy.model = gan
    monkeypatch.setattr(type(trainer), "is_global_zero", property(lambda self: False))
    called = []
    monkeypatch.setattr(gan, "sample", lambda *a, **k: called.append(1))
    assert grid.log_grid(trainer, gan) is None and not called
    assert grid.fixed_latents is not None  # the noise exists on every rank, so checkpoint state agrees


def _history(d_loss, g_loss, p_real=0.7, p_fake=0.3):
    return [{"d_loss": d, "g_loss": g, "p_real": p_real, "p_fake": p_fake} for d, g in zip(d_loss, g_loss, strict=True)]


def test_health_flags_flat_d_loss_with_falling_g_loss():
    from gan_lightning.callbacks import diagnose

    chance = 2 * math.log(2)
    stalled = _history([chance + 0.01 * (-1) ** i for i in range(10)], [2.0 - 0.1 * i for i in range(10)])
    message = diagnose(stalled, chance)
    assert message is not None and "chance value 1.386" in message
    healthy = _history([1.0 + 0.05 * (-1) ** i for i in range(10)], [1.5 + 0.05 * (-1) ** i for i in range(10)])
    assert diagnose(healthy, chance) is None
    flat_g = _history([chance] * 10, [1.0] * 10)  # D at chance but G not improving: no warning
    assert diagnose(flat_g, chance) is None
    assert diagnose(stalled[:5], chance) is None  # too short a history to judge


def test_health_flags_a_discriminator_that_wins_completely():
    from gan_lightning.callbacks import diagnose

    won = _history([0.01] * 10, [6.0] * 10, p_real=0.999, p_fake=0.001)
    assert "D wins completely" in diagnose(won, 2 * math.log(2))
    once = won[:9] + _history([0.5], [1.0])  # not sustained
    assert diagnose(once, 2 * math.log(2)) is None
    # a critic's or hinge D's outputs of +-6 are not probabilities: sigmoid of them says nothing about G's gradients
    assert diagnose(won, None, saturates=False) is None


def test_only_losses_on_log_odds_saturate():
    from gan_lightning.training.objectives import OBJECTIVES

    assert {name for name in OBJECTIVES.names() if OBJECTIVES.get(name).saturates} == {"bce", "minimax"}


def test_health_warning_written_once_to_tensorboard(tmp_path):
    from gan_lightning.callbacks import TrainingHealth

    class Stalled(GAN):
        def training_step(self, batch, batch_idx):  # whatever the real step logged, log a stalled D over it
            super().training_step(batch, batch_idx)
            metrics = {"d_loss": 2 * math.log(2), "g_loss": 5.0 - 0.1 * self.iteration, "p_real": 0.5, "p_fake": 0.5}
            self.log_dict({f"train/{k}": torch.tensor(v) for k, v in metrics.items()}, on_step=True, on_epoch=False)

    logger = TensorBoardLogger(tmp_path, name="health")
    health = TrainingHealth(window=5)
    trainer = cpu_trainer(
        tmp_path, logger=logger, callbacks=[health], log_every_n_steps=1, max_steps=Stalled("mlp").optimizer_steps(12)
    )
    with pytest.warns(UserWarning, match="chance value"):
        trainer.fit(Stalled("mlp", latent_dim=4), loader())
    assert len(health.warned) == 1
    ea = read_events(logger.log_dir)
    assert ea.Tags()["tensors"] == ["health/text_summary"]
    assert len(ea.Tensors("health/text_summary")) == 1
