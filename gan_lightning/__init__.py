"""gan_lightning: a PyTorch Lightning research template for GANs, built from components."""

from gan_lightning.callbacks import SampleGrid
from gan_lightning.data import DATASETS, GANDataModule, MNISTDataModule
from gan_lightning.models import MODELS, Discriminator, build_models
from gan_lightning.models.heads import Critic, CriticOutput, ProjectionHead, QHead
from gan_lightning.training.ema import EMA
from gan_lightning.training.gan import GAN
from gan_lightning.training.latents import NOISES, Latents, LatentSpace, Prior
from gan_lightning.training.objectives import OBJECTIVES, Batch, Objective, PhaseLoss, get_objective

# Importing the strategy registers `ddp_per_network` with Lightning, the default of every multi-device run.
from gan_lightning.training.strategy import PerNetworkDDPStrategy

__version__ = "0.2.0"

__all__ = [
    "DATASETS",
    "EMA",
    "GAN",
    "MODELS",
    "NOISES",
    "OBJECTIVES",
    "Batch",
    "Critic",
    "CriticOutput",
    "Discriminator",
    "GANDataModule",
    "LatentSpace",
    "Latents",
    "MNISTDataModule",
    "Objective",
    "PerNetworkDDPStrategy",
    "PhaseLoss",
    "Prior",
    "ProjectionHead",
    "QHead",
    "SampleGrid",
    "build_models",
    "get_objective",
]
