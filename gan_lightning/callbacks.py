"""Callbacks: sample grids from a fixed noise batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
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
