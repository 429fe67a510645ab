"""Training callbacks, one concern a file: sample grids, checkpoints, progress, health warnings, rank failures."""

from gan_lightning.callbacks.checkpoint import DirectCheckpointIO, GANCheckpoint
from gan_lightning.callbacks.grid import SampleGrid
from gan_lightning.callbacks.health import TrainingHealth, diagnose
from gan_lightning.callbacks.progress import RunProgress
from gan_lightning.callbacks.ranks import RankWatch, collective_failed
from gan_lightning.loggers.tensorboard import CUSTOM_SCALARS, GANLogger  # the default tracker's logger

__all__ = [
    "CUSTOM_SCALARS",
    "DirectCheckpointIO",
    "GANCheckpoint",
    "GANLogger",
    "RankWatch",
    "RunProgress",
    "SampleGrid",
    "TrainingHealth",
    "collective_failed",
    "diagnose",
]
