"""Callbacks: sample grids from a fixed noise batch, resumable checkpoints, an iteration-counting progress bar."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image

from gan_lightning.errors import ConfigError


class SampleGrid(Callback):
    """Logs a grid of samples from one fixed noise batch every `every_n_steps` generator updates and at the end.

    The noise is drawn once from its own seed and stored in the checkpoint, so grids stay comparable across
    epochs and across a resume. Sampling runs in eval mode, without gradients, on global rank zero only.
    Grids go to TensorBoard under the image tag `tag`, and (with `save_png`) to `<log_dir>/samples/`.
    """

    def __init__(
        self,
        num_samples: int = 64,
        every_n_steps: int = 500,
        nrow: int | None = None,
        seed: int = 1234,
        tag: str = "samples",
        save_png: bool = True,
    ) -> None:
        if num_samples < 1 or every_n_steps < 1:
            raise ConfigError(f"num_samples and every_n_steps must be positive, got {num_samples}, {every_n_steps}")
        self.num_samples = num_samples
        self.every_n_steps = every_n_steps
        self.nrow = nrow or max(1, round(num_samples**0.5))
        self.seed = seed
        self.tag = tag
        self.save_png = save_png
        self.fixed_noise: torch.Tensor | None = None
        self._last_logged = -1

    def _noise(self, pl_module: LightningModule) -> torch.Tensor:
        if self.fixed_noise is None:
            self.fixed_noise = pl_module.sample_noise(
                self.num_samples, generator=torch.Generator().manual_seed(self.seed)
            ).cpu()
        return self.fixed_noise

    def log_grid(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor | None:
        """Sample the fixed noise and write the grid (rank zero only); returns the grid on rank zero."""
        step = pl_module.iteration
        noise = self._noise(pl_module)  # every rank, so the buffer in every rank's checkpoint state agrees
        if not trainer.is_global_zero or step == self._last_logged:
            return None
        self._last_logged = step
        images = pl_module.sample(z=noise).float().cpu()  # (N, C, H, W) in [-1, 1]
        grid = make_grid(images, nrow=self.nrow, normalize=True, value_range=(-1, 1))  # (C, H', W') in [0, 1]
        # Only real TensorBoard loggers: under fast_dev_run Lightning swaps in a dummy and nothing is written.
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(self.tag, grid, global_step=step)
                if self.save_png:
                    out = Path(logger.log_dir) / "samples"
                    out.mkdir(parents=True, exist_ok=True)
                    save_image(grid, out / f"{self.tag}_{step:07d}.png")
        return grid

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if pl_module.iteration % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_grid(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"fixed_noise": self.fixed_noise}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fixed_noise = state_dict.get("fixed_noise")


class GANCheckpoint(ModelCheckpoint):
    """Writes `checkpoints/last.ckpt` every `every_n_iterations`, after the final iteration, and on SIGINT/SIGTERM.

    Every save happens at the end of a whole iteration, never between the D and the G update, and before
    Lightning closes the epoch, so the checkpoint records the data loader mid-epoch and resumes exactly. The
    first Ctrl-C (or SIGTERM) finishes the current iteration, saves and stops; a second Ctrl-C aborts at once.
    """

    def __init__(self, every_n_iterations: int = 1000, dirpath: str | Path | None = None) -> None:
        if every_n_iterations < 1:
            raise ConfigError(f"every_n_iterations must be positive, got {every_n_iterations}")
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0)
        self.every_n_iterations = every_n_iterations
        self.stop_requested = False
        self._previous_handlers: dict[int, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stop_requested = False
        if threading.current_thread() is threading.main_thread():  # signal handlers only work there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[sig] = signal.signal(sig, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts immediately

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        iteration = pl_module.iteration
        final = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        stop = self.stop_requested or trainer.received_sigterm
        if not (final or stop or iteration % self.every_n_iterations == 0):
            return
        if stop:
            trainer.should_stop = True
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Epoch-limited runs end here; the loader's state then says "start the next epoch".
        if trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs > 0:
            if not self._should_skip_saving_checkpoint(trainer):
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pass  # checkpoints follow iterations only

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # Write then rename: a run killed mid-write leaves the previous last.ckpt intact, never a truncated one.
        partial = f"{filepath}.partial"
        trainer.save_checkpoint(partial, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)


class IterationProgressBar(TQDMProgressBar):
    """A TQDM bar whose total counts iterations (generator updates), not Lightning's optimizer steps."""

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps > 0:
            per_iteration = getattr(trainer.lightning_module, "steps_per_iteration", 1)
            return min(trainer.num_training_batches, (trainer.max_steps - trainer.global_step) // per_iteration)
        return trainer.num_training_batches
