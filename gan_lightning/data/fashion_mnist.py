"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms"): 28x28 grey photos of 10 kinds of clothing in MNIST's exact format, registered as
`fashion_mnist`.

The files are MNIST's four uncompressed IDX files under the same names, in torchvision's `FashionMNIST` folder,
`<data_dir>/FashionMNIST/raw`, so everything else is `MNISTDataModule`'s: the IDX checks, the resize at setup, the
fixed 55,000 / 5,000 split of the 60,000 training images (the 10,000 test images are unused), `--data-on-device`.
"""

from __future__ import annotations

from pathlib import Path

from gan_lightning.core.errors import DataError
from gan_lightning.data.base import TensorImageDataset
from gan_lightning.data.loading import seeded_split
from gan_lightning.data.mnist import MNIST_FILES, MNISTDataModule, check_idx_file, resize_uint8
from gan_lightning.data.registry import dataset

# torchvision's FashionMNIST.classes, in label order
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


# No reference extractor: the MNIST digit classifier's modes mean nothing on clothes; Inception scores it, given
# --fid-weights.
@dataset("fashion_mnist", channels=1, native_size=28, num_classes=len(CLASSES), data_on_device=True, download=True)
class FashionMNISTDataModule(MNISTDataModule):
    """torchvision's Fashion-MNIST under `<data_dir>/FashionMNIST/raw`, served as `MNISTDataModule` serves MNIST."""

    @classmethod
    def read_classes(cls, data_dir: str | None, conditional: bool = False) -> list[str] | None:
        """With `conditional`, the class names (fixed by the dataset, whatever is in `data_dir`); else None."""
        return list(CLASSES) if conditional else None

    @property
    def raw_dir(self) -> Path:
        """Where torchvision's `FashionMNIST` keeps the four IDX files."""
        return Path(self.data_dir) / "FashionMNIST" / "raw"

    def _missing_error(self, reason: str) -> DataError:
        return DataError(
            f"Fashion-MNIST not found in {self.raw_dir} ({reason}); expected the files {', '.join(MNIST_FILES)} "
            f"there. Pass --data-dir DIR where DIR/FashionMNIST/raw holds them (or set GAN_DATA_DIR), or --download."
        )

    def prepare_data(self) -> None:
        """Download Fashion-MNIST only when its files are missing (runs on one process per node)."""
        if not self.missing_files():
            return
        if not self.download:
            raise self._missing_error("downloading is disabled")
        from torchvision.datasets import FashionMNIST

        try:  # torchvision checks each archive's MD5 and leaves the uncompressed IDX files in raw_dir
            FashionMNIST(self.data_dir, train=True, download=True)
            FashionMNIST(self.data_dir, train=False, download=True)
        except Exception as err:  # network errors come in many types; the user needs one message
            raise self._missing_error(f"download failed: {type(err).__name__}") from err

    def setup(self, stage: str | None = None) -> None:
        """Load the IDX files into uint8 tensors and split off MNIST's fixed validation set."""
        if self.train_set is not None:
            return
        if missing := self.missing_files():
            raise self._missing_error(f"missing {', '.join(missing)}")
        # a damaged or mismatched file is a one-line DataError here, before torchvision reads it
        counts = {name: check_idx_file(self.raw_dir / name) for name in MNIST_FILES}
        for images, labels in zip(MNIST_FILES[::2], MNIST_FILES[1::2], strict=True):
            if counts[images] != counts[labels]:
                raise DataError(f"{self.raw_dir}: {images} holds {counts[images]} images but {labels} holds "
                                f"{counts[labels]} labels; the files come from different releases")  # fmt: skip
        from torchvision.datasets import FashionMNIST

        fashion = FashionMNIST(self.data_dir, train=True, download=False)
        images = resize_uint8(fashion.data.unsqueeze(1), self.image_size)  # (60000, 1, S, S) uint8
        labels = fashion.targets.long()  # (60000,)
        # MNIST's split seed: the validation images never depend on the training seed
        train_idx, val_idx = seeded_split(len(labels), self.val_fraction, seed=12345)
        self.train_set = TensorImageDataset(images[train_idx], labels[train_idx])
        self.val_set = TensorImageDataset(images[val_idx], labels[val_idx])
