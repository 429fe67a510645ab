"""SampleGrid: fixed noise, eval-mode sampling, TensorBoard images that can be read back, checkpointed noise."""

from __future__ import annotations

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
    noise = grid.fixed_noise.clone()
    assert noise.shape == (4, 8)
    torch.testing.assert_close(noise, SampleGrid(num_samples=4)._noise(gan))  # same seed, same noise


def test_fixed_noise_survives_checkpoint(tmp_path):
    gan = GAN("mlp", latent_dim=8)
    grid = SampleGrid(num_samples=4, every_n_steps=1, seed=99, save_png=False)
    trainer = cpu_trainer(tmp_path, callbacks=[grid], max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, loader())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    restored = SampleGrid(num_samples=4, seed=0, save_png=False)  # a different seed: the checkpoint must win
    trainer2 = cpu_trainer(tmp_path, callbacks=[restored], max_steps=gan.optimizer_steps(2))
    trainer2.fit(GAN("mlp", latent_dim=8), loader(), ckpt_path=tmp_path / "a.ckpt")
    torch.testing.assert_close(restored.fixed_noise, grid.fixed_noise)


def test_only_rank_zero_samples(tmp_path, monkeypatch):
    gan = GAN("mlp", latent_dim=8)
    grid = SampleGrid(num_samples=4, every_n_steps=1, save_png=False)
    trainer = cpu_trainer(tmp_path, max_steps=2)
    trainer.strategy.model = gan
    monkeypatch.setattr(type(trainer), "is_global_zero", property(lambda self: False))
    called = []
    monkeypatch.setattr(gan, "sample", lambda *a, **k: called.append(1))
    assert grid.log_grid(trainer, gan) is None and not called
    assert grid.fixed_noise is not None  # the noise exists on every rank, so checkpoint state agrees
