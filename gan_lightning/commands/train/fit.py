"""Fitting the run, and translating every way training can fail part-way into one line and an exit status."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from gan_lightning.callbacks import GANCheckpoint, RankWatch, collective_failed
from gan_lightning.callbacks.checkpoint import CheckpointWriteError
from gan_lightning.commands.base import CommandStopped, one_line
from gan_lightning.commands.train.resume import resume_command
from gan_lightning.core.errors import DataError, WriteError
from gan_lightning.core.files import reason
from gan_lightning.training.gan import GAN
from gan_lightning.training.guards import NonFiniteLossError


def _last_good(checkpoint: GANCheckpoint, trainer: pl.Trainer) -> str | None:
    """The newest checkpoint this run can resume from: its own last.ckpt, else the one it resumed from."""
    if Path(checkpoint.last_model_path or "").is_file():
        return checkpoint.last_model_path
    return str(trainer.ckpt_path) if trainer.ckpt_path else None


def _resume_hint(checkpoint: GANCheckpoint, trainer: pl.Trainer) -> str:
    """Where training can continue from, and the command that does it."""
    good = _last_good(checkpoint, trainer)
    if good is None:
        return "No checkpoint was written; start again."
    at = f" (iteration {checkpoint.saved_iteration})" if checkpoint.saved_iteration is not None else ""
    return f"Last good checkpoint: {good}{at}; resume with: {resume_command(good)}"


def fit(
    trainer: pl.Trainer,
    model: GAN,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | None,
    checkpoint: GANCheckpoint,
    watch: RankWatch,
) -> None:
    """`trainer.fit`, with every way training can fail part-way turned into one line and an exit status."""
    try:
        # weights_only: the checkpoint holds tensors and plain containers (read_training_checkpoint checked)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteLossError as err:
        good = _last_good(checkpoint, trainer) or "none"
        raise CommandStopped(f"{err} Last good checkpoint: {good}", status=3) from None
    except DataError as err:  # an image found unreadable mid-run (in a loader worker, or decoded in process)
        good = _last_good(checkpoint, trainer)
        after = f"last good checkpoint: {good}; resume it with --ckpt-path last" if good else "no checkpoint yet"
        raise DataError(f"{one_line(err)} (stopped at iteration {model.iteration}; {after})") from None
    except CheckpointWriteError:
        raise  # its message already says what is intact
    except WriteError as err:  # a sample grid or the metrics log on a full disk: training stops with it
        raise WriteError(
            f"{err}; training stopped at iteration {model.iteration}. {_resume_hint(checkpoint, trainer)}"
        ) from None
    except torch.OutOfMemoryError as err:
        after = _resume_hint(checkpoint, trainer)
        raise CommandStopped(f"rank {trainer.global_rank} ran out of device memory at iteration {model.iteration} "
                             f"({one_line(err)[:120]}); lower --batch-size or use --precision bf16-mixed. {after}",
                             status=5) from None  # fmt: skip
    except OSError as err:  # an output Lightning writes itself (hparams.yaml, the event file) on a full disk
        good = _last_good(checkpoint, trainer)
        what = err.filename or "an output"
        raise WriteError(f"could not write {what} ({reason(err)}) at iteration {model.iteration}; training stopped; "
                         f"last good checkpoint: {good or 'none'}") from None  # fmt: skip
    except Exception as err:
        if trainer.world_size == 1 or not collective_failed(err):
            raise
        message, speak = watch.explain(err, model.iteration, _resume_hint(checkpoint, trainer))
        raise CommandStopped(message if speak else "", status=5) from None
