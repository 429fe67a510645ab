"""Registry-wide over DATASETS: every dataset builds from generated files in its real layout and yields a batch
of the shape, range and labels its `DatasetSpec` declares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_data_images import PARTITION, make_celeba, write_image

from gan_lightning.data import DATASETS

from conftest import make_fake_cifar10, make_fake_mnist


def _folder(root: Path) -> Path:
    for i in range(12):
        write_image(root / "photos" / f"{i:03d}.png", (40, 30), seed=i)
    return root / "photos"


def _celeba(root: Path) -> Path:
    make_celeba(root, partition=PARTITION)
    return root


def _fashion_mnist(root: Path) -> Path:
    make_fake_mnist(root, n_train=60, n_test=20)
    (root / "MNIST").rename(root / "FashionMNIST")  # MNIST's IDX files, in torchvision's FashionMNIST folder
    return root


# dataset -> writer of a tiny copy in the dataset's real file layout, returning the --data-dir to read it from
LAYOUTS: dict[str, Callable[[Path], Path]] = {
    "mnist": lambda root: make_fake_mnist(root, n_train=60, n_test=20),
    "stacked_mnist": lambda root: make_fake_mnist(root, n_train=60, n_test=20),
    "fashion_mnist": _fashion_mnist,
    "celeba": _celeba,
    "cifar10": lambda root: make_fake_cifar10(root, per_batch=4, n_test=4),
    "folder": _folder,
}


def test_every_registered_dataset_has_a_layout_writer_here():
    assert sorted(LAYOUTS) == DATASETS.names(), "add a writer of the new dataset's file layout to LAYOUTS"


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_yields_a_batch_as_declared(tmp_path, name):
    spec = DATASETS.get(name)
    size, channels = spec.native_size or 32, spec.channels or 3
    dm = spec(str(LAYOUTS[name](tmp_path)), batch_size=4, image_size=size, channels=channels, download=False,
              num_workers=0, seed=0)  # fmt: skip
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, channels, size, size) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and images.min() < 0 < images.max()
    assert labels.shape == (4,) and labels.dtype == torch.long
    if spec.num_classes:
        assert 0 <= labels.min() and labels.max() < spec.num_classes
    else:
        assert torch.equal(labels, torch.zeros(4, dtype=torch.long))  # datasets without labels give zeros
    for option in ("download", "data_on_device", "skip_bad_images"):  # what the spec says it takes, it takes
        assert spec.accepts(option) == (option in type(dm).__init__.__code__.co_varnames)
    assert spec.data_on_device == spec.accepts("data_on_device")
