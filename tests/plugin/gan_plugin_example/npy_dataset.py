"""A dataset of NumPy arrays: every `DIR/<pattern>` file holds uint8 images (N, H, W) or (N, C, H, W)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gan_lightning.core.errors import DataError
from gan_lightning.core.options import Option
from gan_lightning.data import GANDataModule, TensorImageDataset, dataset


@dataset("npy", channels=1, native_size=28)
class NpyDataModule(GANDataModule):
    """uint8 images from .npy files, held in memory; no labels; 10% held out for validation."""

    options = (Option("npy_pattern", "*.npy", "npy dataset: which files of --data-dir to read (a glob)",
                      resume="free"),)  # fmt: skip
    channels, image_size = 1, 28

    def __init__(self, data_dir: str | None = None, batch_size: int = 128, num_workers: int = 0,
                 seed: int = 0, npy_pattern: str = "*.npy") -> None:  # fmt: skip
        super().__init__(data_dir, batch_size, num_workers, seed=seed)
        self.npy_pattern = npy_pattern

    def setup(self, stage: str | None = None) -> None:
        """Read every matching file once."""
        if self.train_set is not None:
            return
        files = sorted(Path(self.data_dir).glob(self.npy_pattern))
        if not files:
            raise DataError(f"no {self.npy_pattern} files in {self.data_dir}; pass --data-dir DIR holding them")
        images = torch.from_numpy(np.concatenate([np.load(f) for f in files]))
        images = images.unsqueeze(1) if images.ndim == 3 else images  # (N, C, H, W)
        labels = torch.zeros(len(images), dtype=torch.long)
        cut = max(1, len(images) // 10)
        self.train_set = TensorImageDataset(images[cut:], labels[cut:])
        self.val_set = TensorImageDataset(images[:cut], labels[:cut])
