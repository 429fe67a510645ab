"""Callbacks: sample grids from fixed inputs, resumable checkpoints, an iteration progress bar, health checks."""

from __future__ import annotations

import datetime
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from torchvision.utils import make_grid, save_image

from gan_lightning.errors import ConfigError


class SampleGrid(Callback):
    """Logs grids of samples from fixed inputs every `every_n_steps` generator updates and at the end of training.

    The inputs (noise, and the class rows of a conditional GAN or the code sweeps of an InfoGAN, from
    `LatentSpace.grid`) are drawn once from their own seed and stored in the checkpoint, so grids stay
    comparable across epochs and across a resume. Sampling runs in eval mode, without gradients, from the EMA
    generator when there is one, on global rank zero only. Grids go to TensorBoard under the image tag `tag`
    (plus `tag/codeJ` for further InfoGAN codes) and, with `save_png`, to `<log_dir>/samples/`.
    """

    def __init__(
        self,
        num_samples: int = 64,
        every_n_steps: int = 500,
        seed: int = 1234,
        tag: str = "samples",
        save_png: bool = True,
    ) -> None:
        if num_samples < 1 or every_n_steps < 1:
            raise ConfigError(f"num_samples and every_n_steps must be positive, got {num_samples}, {every_n_steps}")
        self.num_samples = num_samples
        self.every_n_steps = every_n_steps
        self.seed = seed
        self.tag = tag
        self.save_png = save_png
        self.fixed_latents: dict[str, torch.Tensor] | None = None
        self.nrow: dict[str, int] = {}
        self._last_logged = -1

    def _latents(self, pl_module: LightningModule) -> dict[str, torch.Tensor]:
        rng = torch.Generator(pl_module.device).manual_seed(self.seed)
        grids = {k: (v.input, nrow) for k, (v, nrow) in pl_module.latents.grid(self.num_samples, rng).items()}
        self.nrow = {suffix: nrow for suffix, (_, nrow) in grids.items()}
        if self.fixed_latents is None:  # a checkpoint's latents win over freshly drawn ones
            self.fixed_latents = {suffix: latents.cpu() for suffix, (latents, _) in grids.items()}
        return self.fixed_latents

    def log_grid(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, torch.Tensor] | None:
        """Sample the fixed inputs and write the grids (rank zero only); returns them on rank zero."""
        step = pl_module.iteration
        fixed = self._latents(pl_module)  # every rank, so the state in every rank's checkpoint agrees
        if not trainer.is_global_zero or step == self._last_logged:
            return None
        self._last_logged = step
        grids = {}
        for suffix, latents in fixed.items():
            images = pl_module.sample(latents=latents).float().cpu()  # (N, C, H, W) in [-1, 1]
            grid = make_grid(images, nrow=self.nrow[suffix], normalize=True, value_range=(-1, 1))  # (C, H', W')
            grids[self.tag + suffix] = grid
            # Only real TensorBoard loggers: under fast_dev_run Lightning swaps in a dummy and nothing is written.
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(self.tag + suffix, grid, global_step=step)
                    if self.save_png:
                        out = Path(logger.log_dir) / "samples"
                        out.mkdir(parents=True, exist_ok=True)
                        name = (self.tag + suffix).replace("/", "_")
                        save_image(grid, out / f"{name}_{step:07d}.png")
        return grids

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if pl_module.iteration % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_grid(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"fixed_latents": self.fixed_latents}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fixed_latents = state_dict.get("fixed_latents")


class GANCheckpoint(ModelCheckpoint):
    """Writes `checkpoints/last.ckpt` every `every_n_iterations`, after the final iteration, and on SIGINT/SIGTERM.

    Every save happens at the end of a whole iteration, never between the D and the G update, and before
    Lightning closes the epoch, so the checkpoint records the data loader mid-epoch and resumes exactly. The
    first Ctrl-C (or SIGTERM) finishes the current iteration, saves and stops; a second Ctrl-C aborts at once.
    """

    def __init__(
        self,
        every_n_iterations: int = 1000,
        dirpath: str | Path | None = None,
        keep: bool = False,
        run_info: dict[str, Any] | None = None,
    ) -> None:
        if every_n_iterations < 1:
            raise ConfigError(f"every_n_iterations must be positive, got {every_n_iterations}")
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0)
        self.every_n_iterations = every_n_iterations
        self.keep = keep
        self.run_info = dict(run_info or {})
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
        if trainer.world_size > 1:
            # A signal may reach one rank only, or ranks at different moments: all must agree, or one rank
            # would enter the checkpoint's collectives while the others run the next iteration's all-reduce.
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
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

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # What the module's hyperparameters do not say (which dataset, where): offline evaluation reads it.
        if self.run_info:
            checkpoint["gan_lightning_run"] = self.run_info

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # Write then rename: a run killed mid-write leaves the previous last.ckpt intact, never a truncated one.
        partial = f"{filepath}.partial"
        trainer.save_checkpoint(partial, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
            if self.keep:  # a copy per save, for `evaluate.py RUN_DIR` to score the run's history
                iteration = trainer.lightning_module.iteration
                kept = Path(filepath).with_name(f"iter_{iteration:07d}.ckpt")
                shutil.copyfile(filepath, f"{kept}.partial")
                os.replace(f"{kept}.partial", kept)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)


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
        self._enabled = True
        self._bar: Any = None
        self._losses: dict[str, float] = {}

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

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
        self._out = self.stream or sys.stdout
        self._total = self.total_iterations(trainer, pl_module)
        self._first = pl_module.iteration
        self._t0 = time.perf_counter()
        self._log_every = max(1, trainer.log_every_n_steps)
        if self._out.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, initial=self._first, unit="it", desc="training", file=self._out,
                             dynamic_ncols=True, smoothing=0.05)  # fmt: skip
        elif self.line_every is None:
            per_line = max(1, math.ceil((self._total or 2000) / 20))
            self.line_every = self._log_every * math.ceil(per_line / self._log_every)  # fresh losses on each line

    def _read_losses(self, trainer: Trainer) -> None:
        metrics = trainer.callback_metrics
        self._losses = {k[6:]: float(metrics[k]) for k in ("train/d_loss", "train/g_loss") if k in metrics}

    def _line(self, iteration: int) -> str:
        done, elapsed = iteration - self._first, time.perf_counter() - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        total = f"/{self._total} ({100 * iteration / self._total:.0f}%)" if self._total else ""
        eta = ""
        if self._total and rate > 0:
            eta = f", ETA {datetime.timedelta(seconds=round((self._total - iteration) / rate))}"
        losses = "".join(f", {k} {v:.4g}" for k, v in self._losses.items())
        return f"iteration {iteration}{total}, {rate:.2f} it/s{eta}{losses}"

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self.is_enabled:
            return
        iteration = pl_module.iteration
        if iteration % self._log_every == 0:
            self._read_losses(trainer)
        if self._bar is not None:
            if iteration % self.refresh_rate == 0:
                self._bar.update(iteration - self._bar.n)
                if self._losses:
                    self._bar.set_postfix(self._losses, refresh=False)
        elif iteration % self.line_every == 0:
            print(self._line(iteration), file=self._out, flush=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.is_enabled:
            return
        if self._bar is not None:
            self._bar.update(pl_module.iteration - self._bar.n)
            self._bar.close()
            self._bar = None
        elif pl_module.iteration % self.line_every:
            print(self._line(pl_module.iteration), file=self._out, flush=True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# The first screen of TensorBoard's custom-scalars tab: the GAN's own charts, several curves per chart.
CUSTOM_SCALARS = {
    "GAN": {
        "D and G losses": ["Multiline", [r"train/d_loss$", r"train/g_loss$"]],
        "D(x) and D(G(z))": ["Multiline", [r"train/p_real$", r"train/p_fake$"]],
        "gradient norms": ["Multiline", [r"train/grad_norm_d$", r"train/grad_norm_g$"]],
        "regularizers": ["Multiline", [r"train/(r1|r2|info_loss)$"]],
    },
    "val": {
        "FID and KID": ["Multiline", [r"val/(fid|kid)$"]],
        "precision, recall, density, coverage": ["Multiline", [r"val/(precision|recall|density|coverage)$"]],
        "modes": ["Multiline", [r"val/(modes|mode_kl|class_kl)$"]],
    },
}


class GANLogger(TensorBoardLogger):
    """TensorBoard with the GAN up front: the custom-scalars layout above, and no `epoch` scalar.

    Lightning adds the epoch to every logged step; TensorBoard sorts tags by name, so an `epoch` chart would
    open the dashboard ahead of the losses while telling a GAN user nothing the iteration axis does not.
    """

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Write the scalars without Lightning's `epoch`."""
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            super().log_metrics(metrics, step)

    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        """Lightning calls this once per fit, on rank zero, before the first step: the moment to add the layout."""
        super().log_hyperparams(params, metrics)
        if not getattr(self, "_layout_written", False):
            self.experiment.add_custom_scalars(CUSTOM_SCALARS)
            self._layout_written = True


def diagnose(history: list[dict[str, float]], chance_d_loss: float | None, window: int = 10) -> str | None:
    """A warning about the last `window` logged points of training, or None when they look healthy.

    Two signs of a failing GAN: D wins completely (D(x) ~ 1, D(G(z)) ~ 0: G's gradients vanish), and the cs231n
    warning sign, D's loss flat at its chance value while G's loss keeps falling (G is fooling a D that has
    stopped learning, usually by collapsing onto a few modes).
    """
    if len(history) < window:
        return None
    recent = history[-window:]
    if all(h["p_real"] > 0.99 and h["p_fake"] < 0.01 for h in recent):
        return (
            f"D wins completely: D(x) > 0.99 and D(G(z)) < 0.01 over the last {window} logged steps, so G's "
            "gradients vanish; try --loss lsgan, a lower --lr, or fewer --d-steps"
        )
    if chance_d_loss is not None:
        tolerance = 0.05 * max(chance_d_loss, 0.1)
        flat = all(abs(h["d_loss"] - chance_d_loss) < tolerance for h in recent)
        g = torch.tensor([h["g_loss"] for h in recent], dtype=torch.float64)
        t = torch.arange(window, dtype=torch.float64)
        slope = ((t - t.mean()) * (g - g.mean())).sum() / (t - t.mean()).square().sum()
        falling = slope * (window - 1) < -0.05 * g.abs().mean().clamp_min(0.1)  # fell >5% over the window
        if flat and falling:
            return (
                f"D's loss stays at its chance value {chance_d_loss:.3f} while G's loss keeps falling: D has "
                "stopped learning and G is likely collapsing; inspect the sample grids for repeated images"
            )
    return None


class TrainingHealth(Callback):
    """Watches the logged losses and D probabilities and warns once per kind of failure (see `diagnose`).

    Reads `trainer.callback_metrics` only when Lightning has just logged, so it adds no per-step host sync.
    The warning goes to the Python log and, as text under the tag `health`, to TensorBoard.
    """

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.history: list[dict[str, float]] = []
        self.warned: set[str] = set()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        every = max(1, trainer.log_every_n_steps)
        if not trainer.is_global_zero or pl_module.iteration % every:
            return
        keys = ("d_loss", "g_loss", "p_real", "p_fake")
        metrics = trainer.callback_metrics
        if not all(f"train/{k}" in metrics for k in keys):
            return
        self.history.append({k: float(metrics[f"train/{k}"]) for k in keys})
        del self.history[: -self.window]
        message = diagnose(self.history, pl_module.objective.chance_d_loss, self.window)
        kind = message.split(":")[0] if message else None
        if message is None or kind in self.warned:
            return
        self.warned.add(kind)
        text = f"iteration {pl_module.iteration}: {message}"
        rank_zero_warn(text)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("health", text, global_step=pl_module.iteration)
