"""Resumable checkpoints at iteration boundaries: every N iterations, at the end, and on SIGINT/SIGTERM/SIGUSR1."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gan_lightning.core.errors import ConfigError, WriteError
from gan_lightning.core.files import reason, remove_quietly, save_torch

# Slurm's signal ahead of a time limit (`--signal=USR1@90`): stop at the iteration's end, save, requeue the job
STOP_AND_REQUEUE = (signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()


def training_complete(trainer: Trainer) -> bool:
    """Whether a step-limited run has made its last update: nothing would be left for a resume to train."""
    return trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps


class CheckpointWriteError(WriteError):
    """A checkpoint could not be written; the message says what is intact and how to resume."""


class DirectCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint straight to its path and syncs it to disk.

    Lightning's default stages every checkpoint in the system temp directory and then copies it across, so a
    small `/tmp` fails runs whose log directory has room, and a failed copy leaves both files behind. Here the
    bytes go to the destination only, a failed write removes what it wrote, and the OSError reaches the caller
    (`GANCheckpoint` writes to `last.ckpt.partial` and renames it, so the previous `last.ckpt` survives).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Save `checkpoint` to `path` with `torch.save`, flushed and fsynced before returning."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_torch(checkpoint, path)  # synced: the rename that follows must not publish cached bytes
        except BaseException:
            remove_quietly(path)
            raise


class GANCheckpoint(ModelCheckpoint):
    """Writes `checkpoints/last.ckpt` every `every_n_iterations`, after the final iteration, and on a stop signal.

    Every save happens at the end of a whole iteration, never between the D and the G update, and before
    Lightning closes the epoch, so the checkpoint records the data loader mid-epoch and resumes exactly. The
    first Ctrl-C (or SIGTERM) finishes the current iteration, saves and stops; a second Ctrl-C aborts at once.
    SIGUSR1 does the same and sets `requeue_requested` (Slurm's warning before a time limit); rank zero then calls
    `requeue()` right after `last.ckpt` is in place, before the slower work at the end of training (a final
    evaluation, other ranks exiting), and keeps its one-line answer in `requeue_message` (the train command passes
    `commands/train/cluster.py`'s `requeue`). `signalled_before()`, asked as training starts, says whether a SIGUSR1
    came before it (`cluster.TimeLimitOutsideTraining`): the run then stops after its first iteration the same way.
    It stays a `ModelCheckpoint` (so the Trainer adds no default one and `trainer.checkpoint_callback` finds it),
    but decides when to save itself and saves through `trainer.save_checkpoint`, Lightning's public call: write
    to `last.ckpt.partial`, then rename, so a run killed mid-write leaves the previous `last.ckpt` intact.
    """

    def __init__(
        self,
        every_n_iterations: int = 1000,
        dirpath: str | Path | None = None,
        keep: bool = False,
        run_info: dict[str, Any] | None = None,
        requeue: Callable[[], str] | None = None,
        signalled_before: Callable[[], bool] | None = None,
    ) -> None:
        if every_n_iterations < 1:
            raise ConfigError(f"every_n_iterations must be positive, got {every_n_iterations}")
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0)
        self.every_n_iterations = every_n_iterations
        self.keep = keep
        self.run_info = dict(run_info or {})
        self.stop_requested = False
        self.requeue_requested = False
        self.requeue = requeue
        self.signalled_before = signalled_before
        self.requeue_message: str | None = None
        self.saved_at_step: int | None = None
        self.saved_iteration: int | None = None  # of the newest last.ckpt this process wrote or resumed from
        self.previous_handlers: dict[int, Any] = {}

    @property
    def last_path(self) -> Path:
        """Where `last.ckpt` goes (the directory is known once the trainer has set this callback up)."""
        return Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def failure(self, trainer: Trainer, path: Path, iteration: int, err: OSError) -> str:
        """The one line for a checkpoint that could not be written: where, why, and what is still there."""
        if path.is_file():
            at = f" (iteration {self.saved_iteration})" if self.saved_iteration is not None else ""
            left = f"the previous {path}{at} is intact: free space, then resume with --ckpt-path {path}"
        elif trainer.ckpt_path:
            resumed = trainer.ckpt_path
            left = f"the checkpoint this run resumed from is intact: free space, then resume with --ckpt-path {resumed}"
        else:
            left = "this run has no checkpoint yet: free space (or pass another --log-dir) and start again"
        return (f"could not write the iteration-{iteration} checkpoint {path} ({reason(err)}); training stopped and "
                f"nothing partial was kept; {left}")  # fmt: skip

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stop_requested = self.requeue_requested = False
        if trainer.ckpt_path and self.saved_iteration is None:
            self.saved_iteration = pl_module.iteration  # resumed: the checkpoint read is the last good one
        if threading.current_thread() is threading.main_thread():  # signal handlers only work there
            for sig in (signal.SIGINT, signal.SIGTERM, *STOP_AND_REQUEUE):
                self.previous_handlers[sig] = signal.signal(sig, self.request_stop)
        if self.signalled_before is not None and self.signalled_before() and STOP_AND_REQUEUE:
            self.request_stop(STOP_AND_REQUEUE[0], None)  # a time-limit warning while the data loaded

    def request_stop(self, signum: int, frame: Any) -> None:
        """Signal handler: stop after the current iteration (and ask for a requeue on SIGUSR1); a second Ctrl-C
        interrupts immediately."""
        self.stop_requested = True
        self.requeue_requested = self.requeue_requested or signum in STOP_AND_REQUEUE
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for sig, handler in self.previous_handlers.items():
            signal.signal(sig, handler)
        self.previous_handlers.clear()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        iteration = pl_module.iteration
        final = training_complete(trainer)
        stop = self.stop_requested or trainer.received_sigterm
        if trainer.world_size > 1:
            # A signal may reach one rank only, or ranks at different moments: all must agree, or one rank
            # would enter the checkpoint's collectives while the others run the next iteration's all-reduce.
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            if stop:  # a second collective only when stopping: every rank agrees on it by now
                self.requeue_requested = trainer.strategy.reduce_boolean_decision(self.requeue_requested, all=False)
        if stop:
            self.stop_requested = True  # every rank reports the stop, not only the one the signal reached
            trainer.should_stop = True
        if final or stop or iteration % self.every_n_iterations == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Epoch-limited runs end here; the loader's state then says "start the next epoch".
        if trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs > 0:
            self.save(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pass  # checkpoints follow iterations only

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: saves follow the iteration count, and `last.ckpt` is always this run's own (a run
        resumed into another log directory writes there; ModelCheckpoint's best-k bookkeeping is unused)."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # What the module's hyperparameters do not say (which dataset, where): offline evaluation reads it.
        if self.run_info:
            checkpoint["gan_lightning_run"] = self.run_info

    def save(self, trainer: Trainer) -> None:
        """Write `last.ckpt` (and with `keep` an `iter_N.ckpt` copy) unless this step is saved or nothing trains."""
        if trainer.fast_dev_run or trainer.sanity_checking or self.saved_at_step == trainer.global_step:
            return
        path = self.last_path
        partial = path.with_name(f"{path.name}.partial")
        iteration = trainer.lightning_module.iteration
        kept = path.with_name(f"iter_{iteration:07d}.ckpt")
        self.last_model_path = str(path)  # before saving: the checkpoint's own callback state names itself
        try:
            trainer.save_checkpoint(partial, weights_only=False)  # every rank takes part; rank zero writes
            if trainer.is_global_zero:
                os.replace(partial, path)
                if self.keep:  # a copy per save, for `evaluate.py RUN_DIR` to score the run's history
                    shutil.copyfile(path, f"{kept}.partial")
                    os.replace(f"{kept}.partial", kept)
        except OSError as err:
            if trainer.is_global_zero:
                remove_quietly(partial)
                remove_quietly(f"{kept}.partial")
            self.last_model_path = str(path) if path.is_file() else ""
            raise CheckpointWriteError(self.failure(trainer, path, iteration, err)) from None
        self.saved_at_step = trainer.global_step
        self.saved_iteration = iteration
        if trainer.is_global_zero:
            if (
                self.stop_requested
                and self.requeue_requested
                and self.requeue
                and self.requeue_message is None
                and not training_complete(trainer)  # a requeued restart would have nothing to train
            ):
                self.requeue_message = self.requeue()  # the state is on disk: the restart finds it
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
