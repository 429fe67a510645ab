"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms"): 28x28 grey photos of 10 kinds of clothing in MNIST's exact format, registered as
`fashion_mnist`.

The files are MNIST's four uncompressed IDX files under the same names, in torchvision's `FashionMNIST` folder,
`<data_dir>/FashionMNIST/raw`, so everything else is `MNISTDataModule`'s: the IDX checks, the resize at setup, the
fixed 55,000 / 5,000 split of the 60,000 training images (the 10,000 test images are unused), `--data-on-device`.
"""

from __future__ import annotations

from gan_lightning.data.mnist import MNISTDataModule
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

    torchvision_class, title, download_hint = "FashionMNIST", "Fashion-MNIST", ", or --download"
