"""Experiment trackers by name: how each builds its Lightning logger for a run, and how it shows a grid or a text.

Lightning's loggers take scalars and hyperparameters the same way; images and texts they each take differently
(TensorBoard's `add_image`, W&B's `log_image`, MLflow's artifacts). A `Tracker` says how for one of them, so the
callbacks that log a sample grid, a health warning or a metric's protocol call `log_image`/`log_text` once and
every logger of the run receives it, whichever the user chose with `--logger` (or passed to their own Trainer).
A new tracker is one file in this package (or a plugin) registering a `Tracker` subclass.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn

from gan_lightning.core.errors import ConfigError, DataError, WriteError, first_line
from gan_lightning.core.files import write_text
from gan_lightning.core.options import Option
from gan_lightning.core.registry import Registry


@dataclass(frozen=True)
class RunLocation:
    """Where a run lives: `log_dir/name/version_<version>` (its config.yaml, checkpoints and samples); version None
    lets TensorBoard pick its next one (fast_dev_run, where nothing is written). `resumed_at`: the iteration a
    resumed run continues from (None for a new run)."""

    log_dir: Path
    name: str
    version: int | None
    resumed_at: int | None = None

    @property
    def run_dir(self) -> Path:
        """The run's own directory."""
        return self.log_dir / self.name / f"version_{self.version}"


class Tracker:
    """One experiment tracker: the Lightning logger it builds for a run, and how that logger shows a sample grid
    (a (C, H, W) float tensor in [0, 1]) and a markdown text. Scalars and hyperparameters go through Lightning's
    own `log_metrics` / `log_hyperparams`, the same for every logger."""

    logger_class: ClassVar[type[Logger]]
    requires: ClassVar[str | None] = None  # the importable package it needs, when that is an optional extra
    extra: ClassVar[str | None] = None  # `pip install -e ".[extra]"` installs it

    def build(self, run: RunLocation, config: Mapping[str, Any]) -> Logger:
        """The logger for `run`; `config` is the run's recorded configuration (flags by name)."""
        raise NotImplementedError

    def image(self, logger: Logger, tag: str, grid: torch.Tensor, step: int) -> None:
        """Show `grid` ((C, H, W) in [0, 1]) under `tag` at iteration `step`."""
        raise NotImplementedError

    def text(self, logger: Logger, tag: str, text: str, step: int) -> None:
        """Show the markdown `text` under `tag` at iteration `step`."""
        raise NotImplementedError

    def started(self, logger: Logger, run: RunLocation, config: Mapping[str, Any]) -> None:
        """Called once on rank zero when the run's input has been checked: hand the logger the run's config."""
        logger.log_hyperparams(flat_config(config))

    def finished(self, logger: Logger) -> None:
        """Called once on rank zero after training (ended or stopped): close what Lightning leaves open."""


LOGGERS: Registry[type[Tracker]] = Registry("logger")


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`config.yaml`'s nested record as `section/flag` keys (trackers show flat parameters)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{prefix}{key}/"))
        else:
            plain = isinstance(value, (int, float, str, bool)) or value is None
            flat[f"{prefix}{key}"] = value if plain else str(value)
    return flat


def file_name(tag: str, step: int, extension: str) -> str:
    """The file of a grid or text logged as `tag` at iteration `step`: `<tag with / as _>_<step>.<extension>`."""
    return f"{tag.replace('/', '_')}_{step:07d}.{extension}"


def recorded_run_id(run: RunLocation, file: str) -> str | None:
    """The tracker's own run id this run directory recorded in `file` (a restart continues that tracker run), or
    None before the first start has recorded one."""
    path = run.run_dir / file
    recorded = path.read_text().strip() if path.is_file() else ""
    return recorded or None


def record_run_id(run: RunLocation, file: str, run_id: str) -> None:
    """Record the tracker's own run id in the run directory's `file`, for `recorded_run_id` at a restart."""
    write_text(run.run_dir / file, f"{run_id}\n", f"the run's {file}")


def logger_names(text: str) -> list[str]:
    """`--logger tensorboard,csv` -> ["tensorboard", "csv"]."""
    return [name.strip() for name in str(text).split(",") if name.strip()]


def check_loggers(text: str) -> None:
    """One-line ConfigError for an unknown tracker, a repeated one, or one whose package is not installed."""
    names = logger_names(text)
    if not names:
        raise ConfigError("--logger needs at least one of: " + ", ".join(LOGGERS.names()))
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"--logger: unknown logger {name!r}; choose from {', '.join(LOGGERS.names())}")
        kind = LOGGERS.get(name)
        if kind.requires and importlib.util.find_spec(kind.requires) is None:
            raise ConfigError(f"--logger {name} needs the {kind.requires} package, which is not installed; "
                              f'install it with pip install -e ".[{kind.extra or kind.requires}]"')  # fmt: skip
    if len(set(names)) != len(names):
        raise ConfigError(f"--logger names a logger twice: {text}")


options = (
    Option("logger", "tensorboard", lambda: "where the run is logged: one or several (comma list) of "
           + ", ".join(LOGGERS.names()) + "; the run directory (config.yaml, checkpoints) is LOG_DIR/NAME/version_N "
           "whichever is chosen", type=str, metavar="NAMES", resume="free", check=check_loggers),
)  # fmt: skip


def build_loggers(names: str | Sequence[str], run: RunLocation, config: Mapping[str, Any]) -> list[Logger]:
    """The Lightning loggers `--logger` names, TensorBoard's first (its directory is the run directory, which
    Lightning's `trainer.log_dir` then reports)."""
    names = logger_names(names) if isinstance(names, str) else list(names)
    names.sort(key=lambda name: name != "tensorboard")
    return [LOGGERS.get(name)().build(run, config) for name in names]


def tracker_of(logger: Logger) -> Tracker | None:
    """The registered tracker that shows images and texts on `logger` (None for a logger no tracker knows)."""
    for name in LOGGERS.names():
        kind = LOGGERS.get(name)
        if type(logger) is kind.logger_class:
            return kind()
    for name in LOGGERS.names():  # a subclass of a known logger (the user's own TensorBoardLogger, say)
        kind = LOGGERS.get(name)
        if isinstance(logger, kind.logger_class):
            return kind()
    return None


def log_image(trainer: Trainer, tag: str, grid: torch.Tensor, step: int) -> None:
    """Show `grid` ((C, H, W) in [0, 1]) on every logger of the run (none under fast_dev_run)."""
    for logger, tracker in _tracked(trainer):
        tracker.image(logger, tag, grid, step)


def log_text(trainer: Trainer, tag: str, text: str, step: int) -> None:
    """Show the markdown `text` on every logger of the run (none under fast_dev_run)."""
    for logger, tracker in _tracked(trainer):
        tracker.text(logger, tag, text, step)


def _tracked(trainer: Trainer) -> list[tuple[Logger, Tracker]]:
    if trainer.fast_dev_run:  # Lightning swaps in a dummy logger: nothing is written
        return []
    pairs = [(logger, tracker_of(logger)) for logger in trainer.loggers]
    return [(logger, tracker) for logger, tracker in pairs if tracker is not None]


def run_dir(trainer: Trainer) -> Path | None:
    """Where the run's own files (sample PNGs, metrics.jsonl) go: the first logger's directory when that is
    TensorBoard's (this project's runs and most Lightning projects), else the Trainer's root directory; None under
    fast_dev_run or without a logger (nothing to write beside)."""
    if trainer.fast_dev_run or not trainer.loggers:
        return None
    first = trainer.loggers[0]
    if isinstance(first, TensorBoardLogger):
        return Path(first.log_dir)
    return Path(trainer.default_root_dir)


def start_trackers(loggers: Sequence[Logger], run: RunLocation, config: Mapping[str, Any]) -> None:
    """`Tracker.started` for each logger; a tracker's service refusing to start (no W&B login, an MLflow server out
    of reach, a recorded run id its store does not hold) is one-line ConfigError instead of the service's trace."""
    for logger in loggers:
        tracker = tracker_of(logger)
        if tracker is None:
            continue
        try:
            tracker.started(logger, run, config)
        except (ConfigError, DataError, WriteError):  # already one line, with its own exit status (a full disk: 4)
            raise
        except Exception as err:
            raise ConfigError(f"{type(logger).__name__} could not start ({type(err).__name__}: {first_line(err)}); "
                              "check the tracker's login and server settings (W&B without a login: "
                              "WANDB_MODE=offline), or leave it out of --logger") from None  # fmt: skip


def finish_trackers(loggers: Sequence[Logger], failed: bool = False) -> None:
    """`Tracker.finished` for each logger, each on its own: one failing (a server gone) leaves the others closed
    and says so in one warning line. `failed`: the run never trained (a tracker could not start), so each logger is
    first finalized as failed (Lightning's `finalize`: MLflow's run is FAILED, not left RUNNING)."""
    for logger in loggers:
        tracker = tracker_of(logger)
        try:
            if failed:
                logger.finalize("failed")
            if tracker is not None:
                tracker.finished(logger)
        except Exception as err:
            rank_zero_warn(f"{type(logger).__name__} could not finish ({type(err).__name__}: {first_line(err)})")
