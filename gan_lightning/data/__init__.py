"""LightningDataModules yielding (images in [-1, 1], labels) batches."""

from gan_lightning.data.base import GANDataModule, TensorImageDataset, default_data_dir
from gan_lightning.data.celeba import CelebADataModule
from gan_lightning.data.cifar10 import CIFAR10DataModule
from gan_lightning.data.folder import ImageFolderDataModule
from gan_lightning.data.images import ImageFileDataset
from gan_lightning.data.loading import ResumableDataLoader, ResumableSampler
from gan_lightning.data.mnist import MNISTDataModule
from gan_lightning.data.registry import DATASETS
from gan_lightning.data.stacked_mnist import StackedMNISTDataModule, decode_codes, encode_digits

__all__ = [
    "DATASETS",
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
