"""MNIST as a LightningDataModule: 28x28 grey digits in [-1, 1], held in memory as uint8."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data.base import GANDataModule, TensorImageDataset
from gan_lightning.data.loading import seeded_split
from gan_lightning.data.registry import dataset

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (N, C, H, W) uint8 stack once, up front, instead of per sample in every epoch."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(4096):  # bounded peak memory at 128x128
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def check_idx_file(path: Path) -> int:
    """The item count of an uncompressed uint8 IDX file; DataError naming the file when it is damaged."""
    hint = "delete it and let --download fetch it again, or copy a good one"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or header[:3] != b"\x00\x00\x08":
                raise DataError(f"{path} is not an uncompressed uint8 IDX file (bad magic number); {hint}")
            ndim = header[3]
            dims = [int.from_bytes(f.read(4), "big") for _ in range(ndim)]
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror}); {hint}") from None
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise DataError(f"{path} is damaged: {size} bytes where its header promises {expected} (truncated?); {hint}")
    return dims[0] if dims else 0


@dataset(
    "mnist",
    channels=1,
    native_size=28,
    num_classes=10,
    data_on_device=True,
    download=True,
    extractor="mnist_classifier",
)
class MNISTDataModule(GANDataModule):
    """torchvision MNIST under `<data_dir>/MNIST/raw`; 60,000 training digits split 55,000 / 5,000 into
    train and val by default.

    `image_size` other than 28 resizes the digits once at setup (the DCGAN generators want 32 or 64).
    """

    channels = 1
    num_classes = 10

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
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, pin_memory, seed)
        if image_size < 8:
            raise ConfigError(f"image_size must be at least 8, got {image_size}")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.download = download
        self.data_on_device = data_on_device

    # torchvision's dataset class, also the folder under --data-dir; the name in messages; a hint a subclass adds
    torchvision_class, title, download_hint = "MNIST", "MNIST", ""

    @property
    def raw_dir(self) -> Path:
        """Where torchvision keeps the four IDX files."""
        return Path(self.data_dir) / self.torchvision_class / "raw"

    def missing_files(self) -> list[str]:
        """The IDX files not present (uncompressed) under `raw_dir`."""
        return [name for name in MNIST_FILES if not (self.raw_dir / name).is_file()]

    def _missing_error(self, reason: str) -> DataError:
        return DataError(
            f"{self.title} not found in {self.raw_dir} ({reason}); expected the files {', '.join(MNIST_FILES)} "
            f"there. Pass --data-dir DIR where DIR/{self.torchvision_class}/raw holds them (or set GAN_DATA_DIR)"
            f"{self.download_hint}."
        )

    def prepare_data(self) -> None:
        """Download the files only when they are missing (runs on one process per node)."""
        if not self.missing_files():
            return
        if not self.download:
            raise self._missing_error("downloading is disabled")
        import torchvision.datasets

        source = getattr(torchvision.datasets, self.torchvision_class)
        try:  # torchvision checks each archive's MD5 and leaves the uncompressed IDX files in raw_dir
            source(self.data_dir, train=True, download=True)
            source(self.data_dir, train=False, download=True)
        except Exception as err:  # network errors come in many types; the user needs one message
            raise self._missing_error(f"download failed: {type(err).__name__}") from err

    def setup(self, stage: str | None = None) -> None:
        """Load the IDX files into uint8 tensors and split off a fixed validation set."""
        if self.train_set is not None:
            return
        if missing := self.missing_files():
            raise self._missing_error(f"missing {', '.join(missing)}")
        counts = {name: check_idx_file(self.raw_dir / name) for name in MNIST_FILES}
        for images, labels in zip(MNIST_FILES[::2], MNIST_FILES[1::2], strict=True):
            if counts[images] != counts[labels]:
                raise DataError(f"{self.raw_dir}: {images} holds {counts[images]} images but {labels} holds "
                                f"{counts[labels]} labels; the files come from different releases")  # fmt: skip
        import torchvision.datasets

        train = getattr(torchvision.datasets, self.torchvision_class)(self.data_dir, train=True, download=False)
        images = resize_uint8(train.data.unsqueeze(1), self.image_size)  # (60000, 1, S, S) uint8
        labels = train.targets.long()
        # A fixed split seed: changing the training seed must not change the validation images.
        train_idx, val_idx = seeded_split(len(labels), self.val_fraction, seed=12345)
        self.train_set = TensorImageDataset(images[train_idx], labels[train_idx])
        self.val_set = TensorImageDataset(images[val_idx], labels[val_idx])
