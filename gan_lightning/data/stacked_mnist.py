"""Stacked MNIST (VEEGAN, PacGAN, R3GAN): three MNIST digits as the R, G, B channels of one image, 1000 modes."""

from __future__ import annotations

import numpy as np
import torch

from gan_lightning.core.errors import ConfigError
from gan_lightning.data.base import TensorImageDataset
from gan_lightning.data.mnist import MNISTDataModule
from gan_lightning.data.registry import dataset

STACK_SEED = 2024  # default composition seed; deliberately not the training seed (see StackedMNISTDataModule)


def encode_digits(digits: torch.Tensor) -> torch.Tensor:
    """(N, 3) digit labels per channel -> codes `100 * d0 + 10 * d1 + d2` in 0..999 (long)."""
    digits = digits.long()
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def decode_codes(codes: torch.Tensor) -> torch.Tensor:
    """Codes in 0..999 -> (N, 3) digits, channel 0 first: the inverse of `encode_digits`."""
    codes = torch.as_tensor(codes).long().reshape(-1)
    return torch.stack((codes // 100, codes // 10 % 10, codes % 10), dim=1)


def draw_sources(pool_size: int, count: int, seed: np.random.SeedSequence) -> torch.Tensor:
    """(count, 3) indices into a pool of `pool_size` digits, each drawn uniformly with replacement."""
    if count == 0:
        return torch.empty(0, 3, dtype=torch.long)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, pool_size, size=(count, 3), dtype=np.int64))


def stack_digits(digits: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor) -> TensorImageDataset:
    """A dataset whose image i has `digits[sources[i, c]]` as channel c, labelled with the 3-digit code."""
    images = digits[:, 0][sources]  # (count, 3, S, S) uint8: one gather, no intermediate copies
    return TensorImageDataset(images, encode_digits(labels[sources]))


@dataset(
    "stacked_mnist",
    channels=3,
    native_size=28,
    num_classes=1000,
    data_on_device=True,
    download=True,
    extractor="stacked_mnist_classifier",
)
class StackedMNISTDataModule(MNISTDataModule):
    """Stacked MNIST: 3 x S x S uint8 images whose channels are three independently drawn MNIST digits.

    Each image's label is its code `100 * d0 + 10 * d1 + d2` (0..999; `decode_codes` inverts it), the
    1000 modes that mode-coverage evaluations count.

    - Sources: the digits come from `MNISTDataModule`'s fixed split of MNIST's 60,000 training digits
      (55,000 / 5,000, split seed 12345), read and validated by it, so missing files give MNIST's error.
      Training images draw only from its train digits and validation images only from its val digits:
      no digit appears in both. MNIST's official test set is not used.
    - Composition: each channel's digit is drawn uniformly with replacement, independently of the others.
      `num_train` (default 55,000, one epoch as long as MNIST's) and `num_val` (default 5,000) set the sizes;
      the papers use other sizes, so pass those for a comparison with them.
    - Determinism: the draw depends only on `stack_seed` (default `STACK_SEED`), never on the training `seed`,
      which shuffles batches only: runs with different `--seed` see the same dataset. The train and val draws
      use independent streams, so `num_train` does not change the val images and vice versa.
    - Size: `image_size` 28 (default) or any size >= 8; digits are resized once (with `resize_uint8`)
      before stacking. `--model dcgan` needs a power of two such as 32; `dcgan_mnist` is 28 only.
    - Memory: the images are materialised at setup as one uint8 tensor, 55,000 x 3 x 28 x 28 = 129 MB
      (169 MB at 32), plus 5,000 for val, 12 MB; with `data_on_device` the training images live on the
      accelerator instead.
    """

    channels = 3
    num_classes = 1000

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        image_size: int = 28,
        val_fraction: float = 1 / 12,
        download: bool = True,
        data_on_device: bool = False,
        num_train: int = 55_000,
        num_val: int = 5_000,
        stack_seed: int = STACK_SEED,
    ) -> None:
        super().__init__(
            data_dir, batch_size, num_workers, pin_memory, seed, image_size, val_fraction, download, data_on_device
        )
        if num_train < 1:
            raise ConfigError(f"num_train must be positive, got {num_train}")
        if num_val < 0:
            raise ConfigError(f"num_val must be >= 0, got {num_val}")
        if num_val > 0 and val_fraction == 0:
            raise ConfigError("num_val > 0 needs MNIST validation digits to draw from; val_fraction is 0")
        if stack_seed < 0:
            raise ConfigError(f"stack_seed must be >= 0, got {stack_seed}")
        self.num_train = num_train
        self.num_val = num_val
        self.stack_seed = stack_seed
        self.train_sources: torch.Tensor | None = None  # (num_train, 3) indices into the MNIST train digits
        self.val_sources: torch.Tensor | None = None  # (num_val, 3) indices into the MNIST val digits

    def setup(self, stage: str | None = None) -> None:
        """Load MNIST's split digits (MNISTDataModule.setup), then stack them into the two sets."""
        if self.train_set is not None:
            return
        super().setup(stage)
        digits_train, digits_val = self.train_set, self.val_set
        self.train_set = self.val_set = None  # a failure below must not leave the unstacked digits in place
        train_seed, val_seed = np.random.SeedSequence(self.stack_seed).spawn(2)
        self.train_sources = draw_sources(len(digits_train), self.num_train, train_seed)
        self.val_sources = draw_sources(len(digits_val), self.num_val, val_seed)
        self.train_set = stack_digits(digits_train.images, digits_train.labels, self.train_sources)
        self.val_set = stack_digits(digits_val.images, digits_val.labels, self.val_sources)
