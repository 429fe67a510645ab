"""Weights & Biases (`pip install -e ".[wandb]"`): one W&B run per run directory, resumed with it.

W&B reads its own environment: `WANDB_MODE=offline` keeps the run on disk (`wandb sync` uploads it later),
`WANDB_PROJECT` / `WANDB_ENTITY` say where it goes (project `gan_lightning` unless set).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, WandbLogger

from gan_lightning.loggers.base import LOGGERS, RunLocation, Tracker


def run_id(run: RunLocation) -> str:
    """A W&B run id that is the same at every restart of one run directory and differs between directories."""
    digest = hashlib.sha1(str(run.run_dir.resolve()).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", run.name)[:48]
    return f"{name}-v{run.version}-{digest}"


@LOGGERS.register("wandb")
class WandbTracker(Tracker):
    """W&B: scalars against `trainer/global_step`, grids as `wandb.Image`, texts as one-cell tables."""

    logger_class = WandbLogger
    requires = "wandb"
    extra = "wandb"

    def build(self, run: RunLocation, config: Mapping[str, Any]) -> Logger:
        """A WandbLogger writing under the run directory, its id fixed by the directory (restarts resume it)."""
        project = os.environ.get("WANDB_PROJECT", "gan_lightning")
        name = f"{run.name}/version_{run.version}"
        return WandbLogger(name=name, save_dir=str(run.run_dir), id=run_id(run), project=project)

    def image(self, logger: Logger, tag: str, grid: torch.Tensor, step: int) -> None:
        """`log_image` of the grid, (C, H, W) in [0, 1] as W&B expects a tensor."""
        logger.log_image(key=tag, images=[grid], step=step)

    def text(self, logger: Logger, tag: str, text: str, step: int) -> None:
        """`log_text`: a one-column table holding the markdown."""
        logger.log_text(key=tag, columns=["text"], data=[[text]], step=step)

    def finished(self, logger: Logger) -> None:
        """`finish` the W&B run: Lightning leaves it open until the process exits, so a second run in one process
        (a notebook, a resume in the same job) would otherwise log into the first."""
        import wandb

        if wandb.run is not None:
            wandb.run.finish()
