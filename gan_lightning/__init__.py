"""gan_lightning: a PyTorch Lightning research template for GANs, built from components.

The public API: the LightningModule `GAN`, the DataModules and callbacks to reuse in your own Lightning project,
and every registry (`MODELS`, `OBJECTIVES`, `REGULARIZERS`, `TRANSFORMS`, `DATASETS`, `NOISES`; the metrics'
`EXTRACTORS` in `gan_lightning.metrics`) with the base classes a new component subclasses. Importing it loads no
plugin: the commands do (`load_plugins`), and a registry loads the installed ones when asked for a name it lacks.
"""

from gan_lightning.augment import TRANSFORMS
from gan_lightning.callbacks import GANCheckpoint, SampleGrid
from gan_lightning.core.options import Option
from gan_lightning.core.plugins import load_plugins
from gan_lightning.data import DATASETS, GANDataModule, MNISTDataModule, dataset
from gan_lightning.models import MODELS, Discriminator, build_models
from gan_lightning.models.heads import Critic, CriticOutput, ProjectionHead, QHead
from gan_lightning.regularizers import REGULARIZERS, PhaseContext, Regularizer, Term
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
    "REGULARIZERS",
    "TRANSFORMS",
    "Batch",
    "Critic",
    "CriticOutput",
    "Discriminator",
    "GANCheckpoint",
    "GANDataModule",
    "LatentSpace",
    "Latents",
    "MNISTDataModule",
    "Objective",
    "Option",
    "PerNetworkDDPStrategy",
    "PhaseContext",
    "PhaseLoss",
    "Prior",
    "ProjectionHead",
    "QHead",
    "Regularizer",
    "SampleGrid",
    "Term",
    "build_models",
    "dataset",
    "get_objective",
    "load_plugins",
]
