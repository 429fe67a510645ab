"""Datasets by name, each self-describing: `DATASETS.get(name)` is a `DatasetSpec` saying what the dataset is
(channels, native size, classes, whether it can live on the accelerator, its reference feature extractor); calling
it builds the DataModule. The command line, the metrics and `evaluate.py` read these declarations instead of
knowing dataset names, so a new dataset is one DataModule file plus one `DATASETS.register(...)` line here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, call_with
from gan_lightning.core.registry import Registry
from gan_lightning.data.base import GANDataModule
from gan_lightning.data.celeba import CelebADataModule
from gan_lightning.data.cifar10 import CIFAR10DataModule
from gan_lightning.data.folder import ImageFolderDataModule
from gan_lightning.data.mnist import MNISTDataModule
from gan_lightning.data.stacked_mnist import StackedMNISTDataModule


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset declares about itself; calling it builds its DataModule with the options it accepts.

    `channels` / `native_size` / `num_classes` are None when the dataset has none of its own (a folder: any channel
    count, no native size, no labels). `extractor` names the reference feature extractor for sample-quality metrics
    (`metrics.EXTRACTORS`), None for "Inception, when weights are given". `download` is the default of --download.
    `read_classes(data_dir, **options)` is for datasets whose classes are found in the data, not fixed (a folder's
    subfolders): it returns their names in label order, or None when the options give the run no classes.
    """

    datamodule: type[GANDataModule]
    channels: int | None = None
    native_size: int | None = None
    num_classes: int | None = None
    data_on_device: bool = False
    download: bool = False
    extractor: str | None = None
    needs_data_dir: bool = False
    read_classes: Callable[..., list[str] | None] | None = None

    def class_names(self, data_dir: str | None, **options: Any) -> list[str] | None:
        """The class names, in label order, that the data in `data_dir` has under `options` (those `read_classes`
        takes), or None when the dataset declares no names (then `num_classes`, if set, is all it says)."""
        if self.read_classes is None:
            return None
        if data_dir is None and self.needs_data_dir:
            raise ConfigError(f"{self.datamodule.__name__} needs --data-dir pointing at a directory of images")
        return call_with(self.read_classes, options, data_dir=data_dir)

    def accepts(self, option: str) -> bool:
        """Whether the DataModule takes `option` (the others do not apply to this dataset)."""
        return option in inspect.signature(self.datamodule).parameters

    def __call__(self, data_dir: str | None, **options: Any) -> GANDataModule:
        """The DataModule over `data_dir`, given the options it accepts (None: its own default)."""
        if data_dir is None and self.needs_data_dir:
            raise ConfigError(f"{self.datamodule.__name__} needs --data-dir pointing at a directory of images")
        given = {k: v for k, v in options.items() if v is not None and self.accepts(k)}
        return self.datamodule(data_dir, **given)


DATASETS: Registry[DatasetSpec] = Registry("dataset")
# fmt: off
DATASETS.register("mnist")(DatasetSpec(MNISTDataModule, channels=1, native_size=28, num_classes=10,
                                       data_on_device=True, download=True, extractor="mnist_classifier"))
DATASETS.register("stacked_mnist")(DatasetSpec(StackedMNISTDataModule, channels=3, native_size=28,
                                               num_classes=1000, data_on_device=True, download=True,
                                               extractor="stacked_mnist_classifier"))
DATASETS.register("celeba")(DatasetSpec(CelebADataModule, native_size=64))
DATASETS.register("cifar10")(DatasetSpec(CIFAR10DataModule, channels=3, native_size=32, num_classes=10,
                                         data_on_device=True, download=True,
                                         read_classes=CIFAR10DataModule.read_classes))
DATASETS.register("folder")(DatasetSpec(ImageFolderDataModule, needs_data_dir=True,
                                        read_classes=ImageFolderDataModule.read_classes))
# fmt: on

# Options of every dataset; a dataset that does not take one (its DataModule has no such parameter) refuses it.
# fmt: off
options = (
    Option("dataset", "mnist", "dataset", choices=DATASETS.names),
    Option("data_dir", None, "dataset root; (Stacked) MNIST reads DIR/MNIST/raw, CIFAR-10 "
           "DIR/cifar-10-batches-py", type=str, resume="free",
           default_text="$GAN_DATA_DIR or ./data"),
    Option("download", None, "download missing data", type=bool, resume="free",
           default_text="the dataset's: yes for MNIST, Stacked MNIST and CIFAR-10, no for CelebA"),
    Option("skip_bad_images", False, "skip unreadable image files instead of failing", resume="free"),
    Option("prepared", None, "read the images from this directory written by scripts/prepare_data.py (decoded, "
           "cropped and packed once) instead of decoding files; refused when the folder changed since", type=str,
           resume="free", metavar="DIR", default_text="none: decode the files"),
    Option("num_workers", None, "DataLoader worker processes", type=int, minimum=0, resume="free",
           default_text="per dataset"),
    Option("data_on_device", False, "keep the dataset as uint8 on the accelerator and batch by indexing (no "
           "DataLoader); datasets held in memory only", resume="free"),
    Option("batch_size", 128, "images per D step, per device; the effective batch is batch-size x devices x nodes",
           positive=True),
)
# fmt: on
