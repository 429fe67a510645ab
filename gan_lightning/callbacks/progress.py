"""One progress bar over the whole run, counted in iterations."""

from __future__ import annotations

import datetime
import math
import sys
import time
from typing import Any, TextIO

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar

from gan_lightning.core.errors import ConfigError


class RunProgress(ProgressBar):
    """One progress bar over the whole run, counted in iterations (generator updates), on global rank zero.

    On a terminal: a tqdm bar with current/total, it/s, ETA and the latest losses. Otherwise (a log file, a job
    scheduler): one plain line every `line_every` iterations (default: about 20 lines per run), never
    carriage-return frames. Losses are read only on logging iterations, when they have just been computed.
    """

    def __init__(self, refresh_rate: int = 10, line_every: int | None = None, stream: TextIO | None = None) -> None:
        super().__init__()
        if refresh_rate < 1 or (line_every is not None and line_every < 1):
            raise ConfigError(f"refresh_rate and line_every must be positive, got {refresh_rate}, {line_every}")
        self.refresh_rate = refresh_rate
        self.line_every = line_every
        self.stream = stream
        self.enabled = True
        self.bar: Any = None
        self.losses: dict[str, float] = {}

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    @property
    def is_enabled(self) -> bool:
        return self.enabled

    def total_iterations(self, trainer: Trainer, pl_module: LightningModule) -> int | None:
        """The iteration the run ends at, or None when only an epoch limit bounds it and the loader has no length."""
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return trainer.max_steps // pl_module.steps_per_iteration
        batches = trainer.num_training_batches
        if trainer.max_epochs is not None and trainer.max_epochs > 0 and math.isfinite(batches):
            return int(trainer.max_epochs * batches)
        return None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            self.disable()
        if not self.is_enabled:
            return
        self.out = self.stream or sys.stdout
        self.total = self.total_iterations(trainer, pl_module)
        self.first = pl_module.iteration
        self.t0 = time.perf_counter()
        self.log_every = max(1, trainer.log_every_n_steps)
        if self.out.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.first, unit="it", desc="training", file=self.out,
                             dynamic_ncols=True, smoothing=0.05)  # fmt: skip
        elif self.line_every is None:
            # about every 5% of the run; a line shows the losses of the latest logged step
            self.line_every = max(1, math.ceil((self.total or 2000) / 20))

    def read_losses(self, trainer: Trainer) -> None:
        metrics = trainer.callback_metrics
        self.losses = {k[6:]: float(metrics[k]) for k in ("train/d_loss", "train/g_loss") if k in metrics}

    def line(self, iteration: int) -> str:
        done, elapsed = iteration - self.first, time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total} ({100 * iteration / self.total:.0f}%)" if self.total else ""
        eta = ""
        if self.total and rate > 0:
            eta = f", ETA {datetime.timedelta(seconds=round((self.total - iteration) / rate))}"
        losses = "".join(f", {k} {v:.4g}" for k, v in self.losses.items())
        return f"iteration {iteration}{total}, {rate:.2f} it/s{eta}{losses}"

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self.is_enabled:
            return
        iteration = pl_module.iteration
        if iteration % self.log_every == 0:
            self.read_losses(trainer)
        if self.bar is not None:
            if iteration % self.refresh_rate == 0:
                self.bar.update(iteration - self.bar.n)
                if self.losses:
                    self.bar.set_postfix(self.losses, refresh=False)
        elif iteration % self.line_every == 0:
            print(self.line(iteration), file=self.out, flush=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.is_enabled:
            return
        if self.bar is not None:
            self.bar.update(pl_module.iteration - self.bar.n)
            self.bar.close()
            self.bar = None
        elif pl_module.iteration % self.line_every:
            print(self.line(pl_module.iteration), file=self.out, flush=True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
