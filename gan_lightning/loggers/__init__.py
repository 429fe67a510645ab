"""Experiment trackers by name (`--logger tensorboard,csv,wandb,mlflow`), one file each, all behind `Tracker`.

A new tracker is one file here or in a plugin: a `Tracker` subclass saying how to build its Lightning logger and
how it shows a sample grid and a text, registered with `@LOGGERS.register(name)`.
"""

from gan_lightning.core.registry import import_submodules
from gan_lightning.loggers.base import (
    LOGGERS,
    RunLocation,
    Tracker,
    build_loggers,
    file_name,
    finish_trackers,
    flat_config,
    log_image,
    log_text,
    options,
    run_dir,
    start_trackers,
    tracker_of,
)
from gan_lightning.loggers.tensorboard import CUSTOM_SCALARS, GANLogger

__all__ = ["CUSTOM_SCALARS", "LOGGERS", "GANLogger", "RunLocation", "Tracker", "build_loggers", "file_name",
           "finish_trackers", "flat_config", "log_image", "log_text", "options", "run_dir", "start_trackers",
           "tracker_of"]  # fmt: skip

import_submodules(__name__)  # every tracker file registers itself
