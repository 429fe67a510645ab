"""CelebA faces as a LightningDataModule: the aligned-and-cropped JPEGs, decoded lazily, in [-1, 1]."""

from __future__ import annotations

import os
from pathlib import Path

from gan_lightning.core.errors import DataError
from gan_lightning.data.folder import ImageFolderDataModule
from gan_lightning.data.images import IMAGE_EXTENSIONS
from gan_lightning.data.registry import dataset

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


@dataset("celeba", native_size=64)
class CelebADataModule(ImageFolderDataModule):
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
        prepared: str | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, pin_memory, seed, image_size, channels, skip_bad_images,
                         val_fraction, prepared=prepared)  # fmt: skip
        self.save_hyperparameters()
        self.download = download

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

    def _split(self, files: list[Path]) -> tuple[list[Path], list[Path]]:
        partition = self.partition_file()
        return super()._split(files) if partition is None else self._split_by_partition(files, partition)

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
