"""The train command (`scripts/train.py`, `gan-train`): flags and presets -> DataModule, GAN, Trainer."""

from gan_lightning.commands.train.options import RUN_OPTIONS, option_groups, train_options
from gan_lightning.commands.train.parser import TrainParser, build_parser
from gan_lightning.commands.train.presets import PRESETS
from gan_lightning.commands.train.resolution import resolve
from gan_lightning.commands.train.runner import main, run
from gan_lightning.commands.train.trainer import LightningNotices, default_strategy

__all__ = [
    "PRESETS",
    "RUN_OPTIONS",
    "LightningNotices",
    "TrainParser",
    "build_parser",
    "default_strategy",
    "main",
    "option_groups",
    "resolve",
    "run",
    "train_options",
]
