"""Sample grids from fixed inputs, comparable across epochs and across a resume."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchvision.utils import make_grid, save_image

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.files import atomic_write, write_text
from gan_lightning.loggers import file_name, log_image, log_text, run_dir


class SampleGrid(Callback):
    """Logs grids of samples from fixed inputs every `every_n_steps` generator updates and at the end of training.

    The inputs (noise, and the class rows of a conditional GAN or the code sweeps of an InfoGAN, from
    `LatentSpace.grid`) are drawn once from their own seed and stored in the checkpoint, so grids stay
    comparable across epochs and across a resume. Sampling runs in eval mode, without gradients, from the EMA
    generator when there is one, on global rank zero only. Grids go to every logger of the run (`gan_lightning.loggers`)
    under the image tag `tag` (plus `tag/codeJ` for further InfoGAN codes) and, with `save_png`, to the run
    directory's `samples/`. When the classes of
    a conditional GAN have names, the first grid of each process also writes which class each row shows: a text
    summary `tag/rows` on the loggers and `samples/<tag>_rows.txt` (one name per line, top row first) beside the PNGs.
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
        self.last_logged = -1
        self.rows_named = False

    def latents_for(self, pl_module: LightningModule) -> dict[str, torch.Tensor]:
        """The grids' fixed inputs for `pl_module`, by tag suffix: a checkpoint's, else drawn once from `seed`."""
        rng = torch.Generator(pl_module.device).manual_seed(self.seed)
        grids = {k: (v.input, nrow) for k, (v, nrow) in pl_module.latents.grid(self.num_samples, rng).items()}
        self.nrow = {suffix: nrow for suffix, (_, nrow) in grids.items()}
        if self.fixed_latents is None:  # a checkpoint's latents win over freshly drawn ones
            self.fixed_latents = {suffix: latents.cpu() for suffix, (latents, _) in grids.items()}
        return self.fixed_latents

    def log_grid(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, torch.Tensor] | None:
        """Sample the fixed inputs and write the grids (rank zero only); returns them on rank zero."""
        step = pl_module.iteration
        fixed = self.latents_for(pl_module)  # every rank, so the state in every rank's checkpoint agrees
        if not trainer.is_global_zero or step == self.last_logged:
            return None
        self.last_logged = step
        grids = {}
        for suffix, latents in fixed.items():
            images = pl_module.sample(latents=latents).float().cpu()  # (N, C, H, W) in [-1, 1]
            grid = make_grid(images, nrow=self.nrow[suffix], normalize=True, value_range=(-1, 1))  # (C, H', W')
            grids[self.tag + suffix] = grid
            log_image(trainer, self.tag + suffix, grid, step)  # every logger of the run, none under fast_dev_run
            folder = run_dir(trainer)
            if self.save_png and folder is not None:
                path = folder / "samples" / file_name(self.tag + suffix, step, "png")
                atomic_write(path, lambda p, grid=grid: save_image(grid, p, format="png"), "the sample grid")
        if not self.rows_named:
            self.rows_named = True
            self._name_rows(trainer, pl_module, step)
        return grids

    def _name_rows(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        # The names live in a sidecar and a text summary, not in the PNG names: a folder's class names can be long,
        # many or hold any character, and the grids' file names stay `<tag>_<step>.png` for every run.
        names = pl_module.latents.class_names if pl_module.latents.num_classes else None
        if not names:
            return
        rows = "| row (label) | class |\n|---|---|\n" + "\n".join(f"| {i} | {name} |" for i, name in enumerate(names))
        log_text(trainer, f"{self.tag}/rows", rows, step)  # a markdown table: the trackers render it
        folder = run_dir(trainer)
        if self.save_png and folder is not None:
            text = "".join(f"{name}\n" for name in names)
            write_text(folder / "samples" / f"{self.tag}_rows.txt", text, "the grid's row names")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if pl_module.iteration % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_grid(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"fixed_latents": self.fixed_latents}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fixed_latents = state_dict.get("fixed_latents")
