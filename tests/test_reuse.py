"""Reuse in a user's own Lightning project: the GAN with the user's own LightningDataModule and a plain Trainer
fits without warnings caused by this package, and the batch transfer the package's DataModules speed up stays
theirs (Lightning warns when a LightningModule overrides `transfer_batch_to_device` and a DataModule is passed)."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN, MNISTDataModule

from conftest import cpu_trainer


class OwnDataModule(pl.LightningDataModule):
    """A user's DataModule, nothing of gan_lightning in it: (images in [-1, 1], labels) batches."""

    def train_dataloader(self) -> DataLoader:
        images = torch.rand(32, 1, 28, 28) * 2 - 1
        return DataLoader(TensorDataset(images, torch.zeros(32, dtype=torch.long)), batch_size=8, drop_last=True)


def test_the_module_leaves_batch_transfer_to_lightning_and_the_datamodules():
    # What Lightning checks before it warns that the module's hook wins over a DataModule's.
    assert not is_overridden("transfer_batch_to_device", GAN("mlp", latent_dim=8))
    assert is_overridden("transfer_batch_to_device", MNISTDataModule("unused"))


def test_own_datamodule_and_plain_trainer_fit_without_a_transfer_warning(tmp_path):
    gan = GAN("mlp", latent_dim=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2)).fit(gan, OwnDataModule())
    assert gan.iteration == 2
    assert [str(w.message) for w in caught if "transfer_batch_to_device" in str(w.message)] == []


def test_package_datamodules_move_batches_tensor_by_tensor_and_other_types_take_lightnings_walk():
    dm = MNISTDataModule("unused")
    images, labels = torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    moved = dm.transfer_batch_to_device((images, labels), torch.device("cpu"), 0)
    assert type(moved) is tuple and moved[0] is images and moved[1] is labels  # .to(same device) is a no-op
    assert type(dm.transfer_batch_to_device([images], torch.device("cpu"), 0)) is list
    nested = dm.transfer_batch_to_device({"x": images, "meta": ["a"]}, torch.device("cpu"), 0)
    assert nested["x"] is images and nested["meta"] == ["a"]


def test_a_package_datamodule_and_a_plain_trainer_fit_without_a_warning_the_package_causes(tmp_path, fake_mnist_dir):
    """No validation-loop notice (the reference split is not a val_dataloader) and no transfer-hook warning."""
    gan, dm = GAN("mlp", latent_dim=8), MNISTDataModule(str(fake_mnist_dir), batch_size=16, download=False)
    trainer = pl.Trainer(accelerator="cpu", max_steps=gan.optimizer_steps(2), logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(gan, dm)
    assert gan.iteration == 2
    ours = [str(w.message) for w in caught if "validation_step" in str(w.message) or "transfer_batch" in str(w.message)]
    assert ours == []
