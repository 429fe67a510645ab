"""Datasets by name, each self-describing: `DATASETS.get(name)` is a `DatasetSpec` saying what the dataset is
(channels, native size, classes, whether it can live on the accelerator, its reference feature extractor); calling
it builds the DataModule. The command line, the metrics and `evaluate.py` read these declarations instead of
knowing dataset names. A new dataset is one file: a DataModule with its own `options`, registered by
`@dataset(name, ...)` (files in this package are imported automatically; a plugin's when the plugin loads).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.notes import note
from gan_lightning.core.options import Option, Options, call_with, declared
from gan_lightning.core.registry import Registry
from gan_lightning.data.base import GANDataModule


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset declares about itself; calling it builds its DataModule with the options it accepts.

    `channels` / `native_size` / `num_classes` are None when the dataset has none of its own (a folder: any channel
    count, no native size, no labels). `extractor` names the reference feature extractor for sample-quality metrics
    (`metrics.EXTRACTORS`), None for "Inception, when weights are given". `download` is the default of --download.
    `read_classes(data_dir, **options)` (default: the DataModule's classmethod of that name, if any) is for datasets
    whose classes are found in the data, not fixed (a folder's subfolders): it returns their names in label order,
    or None when the options give the run no classes.
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
        read_classes = self.read_classes or getattr(self.datamodule, "read_classes", None)
        if read_classes is None:
            return None
        if data_dir is None and self.needs_data_dir:
            raise ConfigError(f"{self.datamodule.__name__} needs --data-dir pointing at a directory of images")
        return call_with(read_classes, options, data_dir=data_dir)

    def inferred_channels(self, data_dir: str | None) -> int | None:
        """The channel count the data in `data_dir` shows (the DataModule's classmethod `read_channels`, e.g. a
        folder of greyscale images: 1), or None when the dataset declares its own or cannot tell."""
        read_channels = getattr(self.datamodule, "read_channels", None)
        if self.channels is not None or read_channels is None or data_dir is None:
            return None
        return read_channels(data_dir)

    def channels_for(self, data_dir: str | None, given: int | None, doing: str) -> int:
        """`given`, else the dataset's own channel count, else what its data shows (a greyscale folder: 1, said in
        one line naming what is `doing` it), else 3."""
        if given is not None:
            return given
        inferred = self.inferred_channels(data_dir)
        if inferred == 1:
            note(f"the images under {data_dir} are greyscale: {doing} --channels 1 (pass --channels 3 for RGB)")
        return self.channels or inferred or 3

    def accepts(self, option: str) -> bool:
        """Whether the DataModule takes `option` (the others do not apply to this dataset): a parameter of its
        constructor, or one every DataModule has (`SHARED`)."""
        return option in inspect.signature(self.datamodule).parameters or option in SHARED

    def __call__(self, data_dir: str | None, **options: Any) -> GANDataModule:
        """The DataModule over `data_dir`, given the options it accepts (None: its own default)."""
        if data_dir is None and self.needs_data_dir:
            raise ConfigError(f"{self.datamodule.__name__} needs --data-dir pointing at a directory of images")
        given = {k: v for k, v in options.items() if v is not None and self.accepts(k)}
        parameters = inspect.signature(self.datamodule).parameters
        datamodule = self.datamodule(data_dir, **{k: v for k, v in given.items() if k in parameters})
        for name, value in given.items():  # a SHARED option its own constructor does not take or pass on
            if name not in parameters:
                setattr(datamodule, name, value)
        return datamodule


DATASETS: Registry[DatasetSpec] = Registry("dataset")

D = TypeVar("D", bound=type[GANDataModule])


def dataset(name: str, **declaration: Any) -> Callable[[D], D]:
    """Class decorator registering a DataModule as dataset `name` with what it declares about itself
    (`DatasetSpec`'s fields): one file is one dataset, in this package or in a plugin."""

    def decorator(datamodule: D) -> D:
        DATASETS.register(name)(DatasetSpec(datamodule, **declaration))
        return datamodule

    return decorator


# Options every DataModule has through `GANDataModule` (its attribute of the same name), whatever its constructor
# takes: set on the built DataModule, so a plugin's dataset has them too.
SHARED = Options([
    Option("mirror", False, "double the training set with left-right mirrored copies of its images (StyleGAN2-ADA's "
           "--mirror); for flip-symmetric data (faces, scenes, objects), not digits or text"),
])  # fmt: skip

# Options of every dataset; a dataset that does not take one (its DataModule has no such parameter) refuses it.
# Options of one dataset only are declared by its DataModule (`options`), e.g. the image folder's.
# fmt: off
options = (
    Option("dataset", "mnist", "dataset", choices=DATASETS.names),
    Option("data_dir", None, "dataset root; (Stacked) MNIST reads DIR/MNIST/raw, CIFAR-10 "
           "DIR/cifar-10-batches-py", type=str, resume="free",
           default_text="$GAN_DATA_DIR or ./data"),
    Option("download", None, "download missing data", type=bool, resume="free",
           default_text="the dataset's: yes for MNIST, Stacked MNIST and CIFAR-10, no for CelebA"),
    Option("num_workers", None, "DataLoader worker processes", type=int, minimum=0, resume="free",
           default_text="per dataset"),
    Option("data_on_device", False, "keep the dataset as uint8 on the accelerator and batch by indexing (no "
           "DataLoader); datasets held in memory only", resume="free"),
    Option("batch_size", 128, "images per D step, per device; the effective batch is batch-size x devices x nodes",
           positive=True),
    *SHARED,
)
# fmt: on


def dataset_options() -> Options:
    """The options of every dataset (above) and those each registered DataModule declares itself."""
    own = (declared(DATASETS.get(name).datamodule) for name in DATASETS.names())
    return Options(declared(sys.modules[__name__]), *own)
