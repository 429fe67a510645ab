"""LightningDataModules yielding (images in [-1, 1], labels) batches, each registered by name (`registry.py`)."""

from gan_lightning.core.registry import import_submodules
from gan_lightning.data.base import GANDataModule, TensorImageDataset, default_data_dir
from gan_lightning.data.celeba import CelebADataModule
from gan_lightning.data.cifar10 import CIFAR10DataModule
from gan_lightning.data.folder import ImageFolderDataModule
from gan_lightning.data.images import ImageFileDataset
from gan_lightning.data.loading import ResumableDataLoader, ResumableSampler
from gan_lightning.data.mnist import MNISTDataModule
from gan_lightning.data.registry import DATASETS, dataset, dataset_options
from gan_lightning.data.stacked_mnist import StackedMNISTDataModule, decode_codes, encode_digits

__all__ = [
    "DATASETS",
    "dataset",
    "dataset_options",
    "CIFAR10DataModule",
    "CelebADataModule",
    "GANDataModule",
    "ImageFileDataset",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "ResumableDataLoader",
    "ResumableSampler",
    "StackedMNISTDataModule",
    "TensorImageDataset",
    "decode_codes",
    "default_data_dir",
    "encode_digits",
]

import_submodules(__name__)  # every dataset file registers itself
