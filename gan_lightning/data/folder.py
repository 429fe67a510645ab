"""Any directory tree of images as a LightningDataModule, decoded lazily (once, when small), in [-1, 1], labels
all zero."""

from __future__ import annotations

from pathlib import Path

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
from gan_lightning.errors import DataError

# Fixed, not `seed`: changing the training seed must not change which images are held out for the metrics.
SPLIT_SEED = 12345


class ImageFolderDataModule(GANDataModule):
    """Every image file under `data_dir` (recursively), resized and centre-cropped to `image_size`.

    A fixed random `val_fraction` of the files is held out for validation. Subfolders are not classes:
    labels are zeros. Subclasses (CelebA) change where the images are, how they split, and the error text.
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
        skip_bad_images: bool = False,
        val_fraction: float = 0.05,
    ) -> None:
        workers = default_num_workers() if num_workers is None else num_workers
        super().__init__(data_dir, batch_size, workers, pin_memory, seed)
        check_image_options(image_size, channels, val_fraction)
        self.save_hyperparameters()
        self.image_size = image_size
        self.channels = channels
        self.skip_bad_images = skip_bad_images
        self.val_fraction = val_fraction

    @property
    def image_dir(self) -> Path:
        """The folder searched for images: `data_dir` itself."""
        return Path(self.data_dir)

    def _missing_error(self, reason: str) -> DataError:
        return DataError(
            f"no images to train on: {reason}. --dataset folder reads every file ending in "
            f"{', '.join(IMAGE_EXTENSIONS)} (any case) under the folder given by --data-dir (or "
            f"GAN_DATA_DIR), searching subfolders too."
        )

    def prepare_data(self) -> None:
        """Nothing to download; fail early, on one process, when the folder is missing."""
        if not self.image_dir.is_dir():
            raise self._missing_error(f"the folder {self.image_dir} does not exist")

    def _split(self, files: list[Path]) -> tuple[list[Path], list[Path]]:
        train_idx, val_idx = seeded_split(len(files), self.val_fraction, seed=SPLIT_SEED)
        return [files[i] for i in train_idx], [files[i] for i in val_idx]

    def setup(self, stage: str | None = None) -> None:
        """List the images and split them into train and val file datasets (nothing is decoded yet)."""
        if self.train_set is not None:
            return
        if not self.image_dir.is_dir():
            raise self._missing_error(f"the folder {self.image_dir} does not exist")
        files = list_image_files(self.image_dir)
        if not files:
            raise self._missing_error(f"the folder {self.image_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        train_files, val_files = self._split(files)
        if not train_files:
            raise DataError(f"no training images left in {self.image_dir} after the validation split")
        kwargs = {"image_size": self.image_size, "channels": self.channels, "skip_bad_images": self.skip_bad_images}
        # The training images' cache budget is shared by every process that loads them: each rank's main process
        # or loader workers. The validation images are read once (their features are kept), so never cached.
        loaders = max(1, self.num_workers) * (self.trainer.world_size if self.trainer is not None else 1)
        self.train_set = ImageFileDataset(train_files, cache_bytes=CACHE_BYTES // loaders, **kwargs)
        self.val_set = ImageFileDataset(val_files, **kwargs)
        if len(files) <= HEADER_CHECK_LIMIT:
            self.train_set.check_headers()
            self.val_set.check_headers()

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far in the train and val sets."""
        return sum(getattr(ds, "num_skipped", 0) for ds in (self.train_set, self.val_set) if ds is not None)
