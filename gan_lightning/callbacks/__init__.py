"""Training callbacks, one concern a file: sample grids, checkpoints, progress, health warnings."""

from gan_lightning.callbacks.checkpoint import GANCheckpoint
from gan_lightning.callbacks.grid import SampleGrid
from gan_lightning.callbacks.health import TrainingHealth, diagnose
from gan_lightning.callbacks.progress import RunProgress
from gan_lightning.tensorboard import CUSTOM_SCALARS, GANLogger

__all__ = ["CUSTOM_SCALARS", "GANCheckpoint", "GANLogger", "RunProgress", "SampleGrid", "TrainingHealth", "diagnose"]
