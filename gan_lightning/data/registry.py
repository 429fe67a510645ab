"""Datasets by name: `DATASETS.get(name)(data_dir, batch_size=..., ...)` builds the DataModule to train on.

Every builder takes the same keyword options, so a caller (the train command) passes them all without knowing
the dataset; a dataset ignores the options that do not apply to it (`channels` for MNIST and Stacked MNIST,
`download` for a folder, `data_on_device` for files streamed from disk), and the train command rejects such
combinations first.
"""

from __future__ import annotations

from collections.abc import Callable

from gan_lightning.data.base import GANDataModule
from gan_lightning.data.celeba import CelebADataModule
from gan_lightning.data.folder import ImageFolderDataModule
from gan_lightning.data.mnist import MNISTDataModule
from gan_lightning.data.stacked_mnist import StackedMNISTDataModule
from gan_lightning.errors import ConfigError
from gan_lightning.registry import Registry

DatasetBuilder = Callable[..., GANDataModule]

DATASETS: Registry[DatasetBuilder] = Registry("dataset")


@DATASETS.register("mnist")
def _mnist(
    data_dir: str | None, *, batch_size: int, seed: int = 0, image_size: int = 28, channels: int = 1,
    num_workers: int | None = None, download: bool = True, skip_bad_images: bool = False, data_on_device: bool = False,
) -> MNISTDataModule:  # fmt: skip
    """MNIST from `data_dir/MNIST/raw`, in memory; `num_workers` None means none (batches are tensor slices)."""
    return MNISTDataModule(
        data_dir, batch_size=batch_size, num_workers=num_workers or 0, seed=seed, image_size=image_size,
        download=download, data_on_device=data_on_device,
    )  # fmt: skip


@DATASETS.register("celeba")
def _celeba(
    data_dir: str | None, *, batch_size: int, seed: int = 0, image_size: int = 64, channels: int = 3,
    num_workers: int | None = None, download: bool = False, skip_bad_images: bool = False,
    data_on_device: bool = False,
) -> CelebADataModule:  # fmt: skip
    """CelebA from `data_dir/celeba/img_align_celeba`, decoded from disk by `num_workers` (None: per machine)."""
    return CelebADataModule(
        data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed, image_size=image_size, channels=channels,
        download=download, skip_bad_images=skip_bad_images,
    )  # fmt: skip


@DATASETS.register("folder")
def _folder(
    data_dir: str | None, *, batch_size: int, seed: int = 0, image_size: int = 64, channels: int = 3,
    num_workers: int | None = None, download: bool = False, skip_bad_images: bool = False,
    data_on_device: bool = False,
) -> ImageFolderDataModule:  # fmt: skip
    """Every image file under `data_dir`, which must be given: there is no default folder of your images."""
    if data_dir is None:
        raise ConfigError("--dataset folder needs --data-dir pointing at a directory of images")
    return ImageFolderDataModule(
        data_dir, batch_size=batch_size, num_workers=num_workers, seed=seed, image_size=image_size,
        channels=channels, skip_bad_images=skip_bad_images,
    )  # fmt: skip


@DATASETS.register("stacked_mnist")
def _stacked_mnist(
    data_dir: str | None, *, batch_size: int, seed: int = 0, image_size: int = 28, channels: int = 3,
    num_workers: int | None = None, download: bool = True, skip_bad_images: bool = False, data_on_device: bool = False,
) -> StackedMNISTDataModule:  # fmt: skip
    """Stacked MNIST (three digits as R, G, B; 1000 modes) from `data_dir/MNIST/raw`, at its default sizes and
    stack seed: `seed` only shuffles batches, never changes the images. Always 3 channels (`channels` ignored)."""
    return StackedMNISTDataModule(
        data_dir, batch_size=batch_size, num_workers=num_workers or 0, seed=seed, image_size=image_size,
        download=download, data_on_device=data_on_device,
    )  # fmt: skip
