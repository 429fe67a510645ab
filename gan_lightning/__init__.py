"""gan_lightning: GANs as a PyTorch Lightning template (vanilla GAN, LSGAN, DCGAN) on MNIST, CelebA and folders."""

from gan_lightning.callbacks import SampleGrid
from gan_lightning.data import GANDataModule, MNISTDataModule
from gan_lightning.losses import LOSSES, AdversarialLoss, get_loss
from gan_lightning.models import MODELS, Discriminator, build_models
from gan_lightning.module import GAN, NOISES

__version__ = "0.1.0"

__all__ = [
    "GAN",
    "LOSSES",
    "MODELS",
    "NOISES",
    "AdversarialLoss",
    "Discriminator",
    "GANDataModule",
    "MNISTDataModule",
    "SampleGrid",
    "build_models",
    "get_loss",
]
