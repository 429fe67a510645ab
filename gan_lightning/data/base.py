"""What every GAN DataModule shares: [-1, 1] images, a resumable rank-aware training loader, a val loader."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from gan_lightning.core.errors import ConfigError
from gan_lightning.data.loading import (
    DeviceTensorLoader,
    loader_worker_init,
    make_train_loader,
    mirrored,
    move_tensors,
    require_one_batch,
    to_signed,
)


def default_data_dir() -> str:
    """`$GAN_DATA_DIR` when set, else `./data`."""
    return os.environ.get("GAN_DATA_DIR", "./data")


def identity_collate(batch: Any) -> Any:
    """Collate for datasets whose `__getitems__` already returns a whole batch."""
    return batch


class TensorImageDataset(Dataset):
    """uint8 images held in memory as one (N, C, H, W) tensor, served as [-1, 1] floats with their labels.

    `__getitems__` gathers a whole batch with one indexing op instead of stacking B single images, which
    is most of the loading cost for small images such as MNIST.
    """

    collate_fn = staticmethod(identity_collate)

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_signed(self.images[index]), self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return to_signed(self.images[idx]), self.labels[idx]


class GANDataModule(LightningDataModule):
    """Base class: subclasses build `self.train_set` / `self.val_set` in `setup` and set the image geometry.

    Training batches are `(images, labels)` with images (B, C, H, W) in [-1, 1]; datasets without labels
    give zeros. Under DDP each rank reads its own shard of every epoch's permutation. Subclasses whose training set
    is a `TensorImageDataset` may set `data_on_device`: the training loader then indexes uint8 tensors on the
    accelerator instead of running a DataLoader. With `mirror` (`--mirror`, which the dataset registry sets on a
    DataModule whose constructor does not take it) the training loader serves the training set twice, the second
    copy mirrored left-right (`training_set`).
    """

    channels: int
    image_size: int
    num_classes: int | None = None
    data_on_device: bool = False

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        mirror: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.data_dir = data_dir if data_dir is not None else default_data_dir()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.mirror = mirror
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _pin(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = self.trainer
        return trainer is not None and trainer.accelerator.__class__.__name__ == "CUDAAccelerator"

    def _loader_kwargs(self, dataset: Dataset) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self._pin()}
        collate = getattr(dataset, "collate_fn", None)
        if collate is not None:
            kwargs["collate_fn"] = collate
        return kwargs

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def check_batches(self, world_size: int = 1) -> None:
        """Raise DataError unless each of `world_size` processes gets one whole training batch (after `setup`):
        the command calls it before the run directory exists, the loaders again when they are built."""
        require_one_batch(len(self.training_set()), self.batch_size, world_size)

    def training_set(self) -> Dataset:
        """The images the training loader serves (after `setup`): `train_set`, followed under `mirror` by its
        images mirrored left-right (item n + i is item i flipped, as StyleGAN2-ADA's dataset x-flips)."""
        if self.train_set is None:
            self.setup("fit")
        return mirrored(self.train_set) if self.mirror else self.train_set

    def train_dataloader(self) -> DataLoader | DeviceTensorLoader:
        """Shuffled, rank-sharded, resumable loader of [-1, 1] images (`training_set`); with `data_on_device`, one
        indexing uint8 tensors on the accelerator."""
        dataset = self.training_set()
        rank, world = self._rank_and_world()
        if self.data_on_device:
            trainer = self.trainer
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            return DeviceTensorLoader(
                self.train_set.images, self.train_set.labels, batch_size=self.batch_size, device=device,
                seed=self.seed, num_replicas=world, rank=rank, mirror=self.mirror,
            )  # fmt: skip
        return make_train_loader(
            dataset,
            batch_size=self.batch_size,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            **self._loader_kwargs(dataset),
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move an (images, labels) batch tensor by tensor; other batch types take Lightning's generic walk.

        The hook lives here, not on the GAN module: Lightning warns when a LightningModule overriding it is fitted
        with a DataModule, so the module keeps Lightning's default and works with a user's own DataModule as is."""
        moved = move_tensors(batch, device)
        return moved if moved is not None else super().transfer_batch_to_device(batch, device, dataloader_idx)

    def reference_dataloader(self) -> DataLoader:
        """Validation images in a fixed order, the metrics' reference set. Not Lightning's `val_dataloader` hook:
        the GAN has no validation step, and Lightning notes every fit that a val loader without one is skipped."""
        if self.val_set is None:
            self.setup("validate")
        kwargs = self._loader_kwargs(self.val_set)
        return DataLoader(
            self.val_set, batch_size=self.batch_size, shuffle=False, persistent_workers=self.num_workers > 0,
            worker_init_fn=loader_worker_init(self.num_workers, self._rank_and_world()[0]), **kwargs,
        )  # fmt: skip
