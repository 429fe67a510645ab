"""Any directory tree of images as a LightningDataModule, decoded lazily (once, when small), in [-1, 1]; labels all
zero, or with `conditional` the index of each image's top-level subfolder (torchvision ImageFolder's classes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import find_classes

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.core.options import Option
from gan_lightning.data.base import GANDataModule
from gan_lightning.data.images import (
    CACHE_BYTES,
    HEADER_CHECK_LIMIT,
    IMAGE_EXTENSIONS,
    ImageFileDataset,
    check_image_options,
    default_num_workers,
    list_image_files,
)
from gan_lightning.data.loading import seeded_split
from gan_lightning.data.prepared import PreparedImageDataset, PreparedImages
from gan_lightning.data.registry import dataset

# Fixed, not `seed`: changing the training seed must not change which images are held out for the metrics.
SPLIT_SEED = 12345


def missing_folder_error(reason: str) -> DataError:
    """The one line for a folder with nothing to train on."""
    return DataError(
        f"no images to train on: {reason}. --dataset folder reads every file ending in "
        f"{', '.join(IMAGE_EXTENSIONS)} (any case) under the folder given by --data-dir (or "
        f"GAN_DATA_DIR), searching subfolders too."
    )


def folder_problem(root: Path) -> str | None:
    """Why `root` is not a folder to read images from (missing, or a file), None when it is a directory."""
    if root.is_dir():
        return None
    return f"{root} is a file, not a folder" if root.exists() else f"the folder {root} does not exist"


def folder_classes(root: str | Path) -> list[str]:
    """The classes of an image folder as torchvision's ImageFolder reads them: its subfolders' names, sorted (label
    i is the i-th); one-line ConfigError when images lie directly in `root` (they would have no class) or it has no
    subfolders."""
    root = Path(root)
    problem = folder_problem(root)
    if problem:
        raise missing_folder_error(problem)
    with os.scandir(root) as entries:
        loose = sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
                       and not e.name.startswith("."))  # fmt: skip
    if loose:
        raise ConfigError(f"--conditional takes each image's class from its subfolder of {root}, but {len(loose)} "
                          f"image(s) lie directly in it (e.g. {loose[0]}); move them into a class subfolder or drop "
                          "--conditional")  # fmt: skip
    try:
        classes, _ = find_classes(root)  # torchvision's own rule, so the labels match an ImageFolder of `root`
    except FileNotFoundError:
        raise ConfigError(f"--conditional needs one subfolder of images per class in {root}; it has no "
                          "subfolders") from None  # fmt: skip
    return classes


GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # PIL's single-channel modes (LA: grey with alpha)


@dataset("folder", needs_data_dir=True)
class ImageFolderDataModule(GANDataModule):
    """Every image file under `data_dir` (recursively), resized and centre-cropped to `image_size`.

    A fixed random `val_fraction` of the files is held out for validation. Subfolders are not classes: labels are
    zeros; with `conditional`, each top-level subfolder is a class (`folder_classes`, the order of torchvision's
    ImageFolder) and an image's label is its subfolder's index; the files, their order and the split are the same
    either way. Subclasses (CelebA) change where the images are, how they split, and the error text. With `prepared`
    (a directory written by `gan-prepare` from this folder), the same images come from its memory-mapped uint8 array
    instead of being decoded: same files, split, order, labels and pixels, refused in one line when out of date.
    """

    # fmt: off
    options = (
        Option("skip_bad_images", False, "skip unreadable image files instead of failing", resume="free"),
        Option("prepared", None, "read the images from this directory written by scripts/prepare_data.py (decoded, "
               "cropped and packed once) instead of decoding files; refused when the folder changed since", type=str,
               resume="free", metavar="DIR", default_text="none: decode the files"),
    )
    # fmt: on

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        seed: int = 0,
        image_size: int = 64,
        channels: int = 3,
        skip_bad_images: bool = False,
        val_fraction: float = 0.05,
        conditional: bool = False,
        prepared: str | None = None,
    ) -> None:
        workers = default_num_workers() if num_workers is None else num_workers
        super().__init__(data_dir, batch_size, workers, pin_memory, seed)
        check_image_options(image_size, channels, val_fraction)
        self.save_hyperparameters()
        self.image_size = image_size
        self.channels = channels
        self.skip_bad_images = skip_bad_images
        self.val_fraction = val_fraction
        self.conditional = conditional
        self.prepared = prepared
        self.class_names: list[str] | None = None

    def _loader_kwargs(self, dataset: Dataset) -> dict[str, Any]:
        kwargs = super()._loader_kwargs(dataset)
        if self.prepared is not None:
            # nothing is left to decode: loader workers would only ship each batch through shared memory as float32
            # (four times its uint8 bytes), which costs more than the gather they would take off the main process
            kwargs["num_workers"] = 0
        return kwargs

    @classmethod
    def read_classes(cls, data_dir: str, conditional: bool = False) -> list[str] | None:
        """The class names a run over `data_dir` has: its subfolders' with `conditional`, else None (no labels)."""
        return folder_classes(data_dir) if conditional else None

    @classmethod
    def read_channels(cls, data_dir: str, sample: int = 32) -> int | None:
        """1 when the folder's images are greyscale (the first `sample` files, as their headers say), else None:
        the command then trains one channel unless --channels says otherwise."""
        root = Path(data_dir)
        if not root.is_dir():
            return None  # the missing folder is reported, in its own words, when the data is read
        # regular files only: opening a named pipe or a device among the images would block or read forever
        files = [path for path in list_image_files(root)[:sample] if path.is_file()]
        try:
            modes = set()
            for path in files:
                with Image.open(path) as image:  # the header only: no pixels are decoded
                    modes.add(image.mode)
        except (OSError, ValueError):
            return None  # an unreadable file is reported when the data is read
        return 1 if files and modes <= GREY_MODES else None

    @property
    def image_dir(self) -> Path:
        """The folder searched for images: `data_dir` itself."""
        return Path(self.data_dir)

    def _missing_error(self, reason: str) -> DataError:
        return missing_folder_error(reason)

    def source_files(self) -> list[Path]:
        """Every image file of the folder, in the order of `list_image_files`; one-line DataError when none."""
        problem = folder_problem(self.image_dir)
        if problem:
            raise self._missing_error(problem)
        files = list_image_files(self.image_dir)
        if not files:
            raise self._missing_error(f"the folder {self.image_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        return files

    def file_labels(self, files: list[Path]) -> list[int] | None:
        """Each file's class index (its top-level subfolder's) with `conditional`, else None (all zeros)."""
        if not self.conditional:
            return None
        classes = folder_classes(self.image_dir)
        index = {name: i for i, name in enumerate(classes)}
        labels = [index[f.relative_to(self.image_dir).parts[0]] for f in files]
        present = set(labels)
        empty = [name for i, name in enumerate(classes) if i not in present]
        if empty:
            raise DataError(f"--conditional: the class folder {self.image_dir / empty[0]} has no images "
                            f"({len(empty)} empty class folder(s)); add images or remove it")  # fmt: skip
        self.class_names, self.num_classes = classes, len(classes)
        return labels

    def prepare_data(self) -> None:
        """Nothing to download; fail early, on one process, when the folder is missing."""
        problem = folder_problem(self.image_dir)
        if problem:
            raise self._missing_error(problem)

    def _split(self, files: list[Path]) -> tuple[list[Path], list[Path]]:
        train_idx, val_idx = seeded_split(len(files), self.val_fraction, seed=SPLIT_SEED)
        return [files[i] for i in train_idx], [files[i] for i in val_idx]

    def setup(self, stage: str | None = None) -> None:
        """List the images and split them into train and val file datasets (nothing is decoded yet)."""
        if self.train_set is not None:
            return
        files = self.source_files()
        store = None
        if self.prepared is not None:  # checked before anything else: a stale or mismatched one is refused
            store = PreparedImages.open(self.prepared)
            store.check(self.image_dir, files, self.image_size, self.channels)
        labels = self.file_labels(files)
        train_files, val_files = self._split(files)
        if not train_files:
            raise DataError(f"no training images left in {self.image_dir} after the validation split")
        # by path, so whatever the split (CelebA's matches names) each image keeps its own label
        label_of = dict(zip(files, labels, strict=True)) if labels is not None else None
        train_labels, val_labels = ([label_of[f] for f in part] if label_of else None
                                    for part in (train_files, val_files))  # fmt: skip
        if store is not None:
            self.train_set, self.val_set = (self._prepared_set(store, files, part, part_labels)
                                            for part, part_labels in ((train_files, train_labels),
                                                                      (val_files, val_labels)))  # fmt: skip
            return
        kwargs = {"image_size": self.image_size, "channels": self.channels, "skip_bad_images": self.skip_bad_images}
        # The training images' cache budget is shared by every process that loads them: each rank's main process
        # or loader workers. The validation images are read once (their features are kept), so never cached.
        loaders = max(1, self.num_workers) * (self.trainer.world_size if self.trainer is not None else 1)
        cache = CACHE_BYTES // loaders
        self.train_set = ImageFileDataset(train_files, labels=train_labels, cache_bytes=cache, **kwargs)
        self.val_set = ImageFileDataset(val_files, labels=val_labels, **kwargs)
        if len(files) <= HEADER_CHECK_LIMIT:
            self.train_set.check_headers()
            self.val_set.check_headers()

    def _prepared_set(self, store: PreparedImages, files: list[Path], part: list[Path],
                      labels: list[int] | None) -> PreparedImageDataset:  # fmt: skip
        """`part` of `files` served from the prepared rows (row i is file i: the record matched the listing)."""
        row_of = {f: i for i, f in enumerate(files)}
        rows = [row_of[f] for f in part]
        if labels is not None:  # classes: the prepared labels must be the folder's, as `file_labels` found them
            if store.classes != self.class_names:
                raise DataError(f"--prepared {store.path} was prepared with classes {store.classes}, the folder "
                                f"has {self.class_names}; rerun gan-prepare --conditional")  # fmt: skip
            label_tensor = store.labels()[torch.as_tensor(rows, dtype=torch.long)]
        else:
            label_tensor = torch.zeros(len(rows), dtype=torch.long)
        return PreparedImageDataset(store, rows, label_tensor, skip_bad_images=self.skip_bad_images)

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far in the train and val sets."""
        return sum(getattr(ds, "num_skipped", 0) for ds in (self.train_set, self.val_set) if ds is not None)
