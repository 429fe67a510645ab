"""CelebA faces as a LightningDataModule: the aligned-and-cropped JPEGs, decoded lazily, in [-1, 1]."""

from __future__ import annotations

import os
from pathlib import Path

from gan_lightning.data.base import GANDataModule
from gan_lightning.data.images import (
    IMAGE_EXTENSIONS,
    ImageFileDataset,
    check_image_options,
    default_num_workers,
    list_image_files,
)
from gan_lightning.data.loading import seeded_split
from gan_lightning.errors import DataError

# Fixed, not `seed`: changing the training seed must not change which faces are held out for the metrics.
SPLIT_SEED = 12345
PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")  # official / Kaggle mirror
TRAIN, VALID = 0, 1


def read_partition(path: Path) -> dict[str, int]:
    """Parse CelebA's `list_eval_partition` (`000001.jpg 0` lines, or the Kaggle CSV) into name -> split."""
    parts: dict[str, int] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.replace(",", " ").split()
            if not fields or (lineno == 1 and fields[-1] == "partition"):  # blank line / CSV header
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DataError(
                    f"{path}, line {lineno}: expected '<image name> <0|1|2>', got {line.strip()!r}; "
                    f"fix the file or delete it to use a random split"
                )
            parts[fields[0]] = int(fields[1])
    return parts


class CelebADataModule(GANDataModule):
    """CelebA in `<data_dir>/celeba/img_align_celeba/*.jpg`, split by `list_eval_partition.txt` if present.

    With the partition file, train is its split 0 and val its split 1 (split 2, test, is unused); without
    it, a fixed random `val_fraction` of the images is held out. Labels are zeros.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        seed: int = 0,
        image_size: int = 64,
        channels: int = 3,
        download: bool = False,
        skip_bad_images: bool = False,
        val_fraction: float = 0.05,
    ) -> None:
        workers = default_num_workers() if num_workers is None else num_workers
        super().__init__(data_dir, batch_size, workers, pin_memory, seed)
        check_image_options(image_size, channels, val_fraction)
        self.save_hyperparameters()
        self.image_size = image_size
        self.channels = channels
        self.download = download
        self.skip_bad_images = skip_bad_images
        self.val_fraction = val_fraction

    @property
    def root(self) -> Path:
        """`<data_dir>/celeba`, the folder torchvision's CelebA uses."""
        return Path(self.data_dir) / "celeba"

    @property
    def image_dir(self) -> Path:
        """Where the aligned-and-cropped JPEGs live."""
        return self.root / "img_align_celeba"

    def partition_file(self) -> Path | None:
        """The split file, if one is present."""
        return next((self.root / n for n in PARTITION_FILES if (self.root / n).is_file()), None)

    def _has_images(self) -> bool:
        # A cheap check for prepare_data: stop at the first image instead of listing 200k files.
        if not self.image_dir.is_dir():
            return False
        for _dirpath, _dirnames, filenames in os.walk(self.image_dir, followlinks=True):
            if any(name.lower().endswith(IMAGE_EXTENSIONS) for name in filenames):
                return True
        return False

    def _missing_error(self, reason: str) -> DataError:
        return DataError(
            f"CelebA not found: {reason}. Expected the aligned JPEGs as {self.image_dir}/000001.jpg ... "
            f"(202,599 files) and, optionally, the split file {self.root / PARTITION_FILES[0]} (without it "
            f"a random {self.val_fraction:.0%} of the images is used for validation). Get 'CelebA "
            f"Align&Cropped Images' (img_align_celeba.zip) and list_eval_partition.txt from the official "
            f"CelebA page (mmlab.ie.cuhk.edu.hk/projects/CelebA.html) and unzip them into {self.root}; pass "
            f"--data-dir DIR where DIR/celeba/img_align_celeba holds them (or set GAN_DATA_DIR), or pass "
            f"--download to try torchvision's downloader (Google Drive, often over its quota)."
        )

    def prepare_data(self) -> None:
        """Download CelebA through torchvision only when its images are missing and `download` is set."""
        if self._has_images():
            return
        if not self.download:
            raise self._missing_error(f"no images in {self.image_dir} and downloading is off")
        from torchvision.datasets import CelebA

        try:
            CelebA(self.data_dir, split="all", download=True)
        except Exception as err:  # network, quota and integrity errors come in many types; the user needs one
            raise self._missing_error(f"the download failed ({type(err).__name__}: {err})") from err

    def setup(self, stage: str | None = None) -> None:
        """List the images and split them into train and val file datasets (nothing is decoded yet)."""
        if self.train_set is not None:
            return
        if not self.image_dir.is_dir():
            raise self._missing_error(f"the folder {self.image_dir} does not exist")
        files = list_image_files(self.image_dir)
        if not files:
            raise self._missing_error(f"the folder {self.image_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        partition = self.partition_file()
        if partition is not None:
            train_files, val_files = self._split_by_partition(files, partition)
        else:
            train_idx, val_idx = seeded_split(len(files), self.val_fraction, seed=SPLIT_SEED)
            train_files, val_files = [files[i] for i in train_idx], [files[i] for i in val_idx]
        if not train_files:
            raise DataError(f"no training images in {self.image_dir} (split file: {partition})")
        kwargs = {
            "image_size": self.image_size,
            "channels": self.channels,
            "skip_bad_images": self.skip_bad_images,
        }
        self.train_set = ImageFileDataset(train_files, **kwargs)
        self.val_set = ImageFileDataset(val_files, **kwargs)

    def _split_by_partition(self, files: list[Path], partition: Path) -> tuple[list[Path], list[Path]]:
        # Match by file name, so the Kaggle mirror's nested img_align_celeba/img_align_celeba/ works too.
        by_name = {f.name: f for f in files}
        parts = read_partition(partition)
        wanted = [name for name, split in parts.items() if split in (TRAIN, VALID)]
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise DataError(
                f"{len(missing)} of the {len(wanted)} train/valid images listed in {partition} are not in "
                f"{self.image_dir} (e.g. {', '.join(missing[:3])}); finish unzipping img_align_celeba.zip "
                f"there, or delete {partition.name} to split the images present at random"
            )
        train = [by_name[name] for name in sorted(parts) if parts[name] == TRAIN]
        val = [by_name[name] for name in sorted(parts) if parts[name] == VALID]
        return train, val

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far in the train and val sets."""
        return sum(getattr(ds, "num_skipped", 0) for ds in (self.train_set, self.val_set) if ds is not None)
