"""Weights & Biases (`pip install -e ".[wandb]"`): one W&B run per run directory, resumed with it.

W&B reads its own environment: `WANDB_MODE=offline` keeps the run on disk (`wandb sync` uploads it later),
`WANDB_PROJECT` / `WANDB_ENTITY` say where it goes (project `gan_lightning` unless set).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, WandbLogger

from gan_lightning.loggers.base import LOGGERS, RunLocation, Tracker, record_run_id, recorded_run_id

RUN_ID_FILE = "wandb_run_id"  # in the run directory: a restart continues the same W&B run


def run_id(run: RunLocation) -> str:
    """The W&B run id of this run directory: the one it recorded, else a new one (random: a deleted and recreated
    `version_N`, or the same path on another machine, must not append to an old W&B run)."""
    recorded = recorded_run_id(run, RUN_ID_FILE)
    if recorded is not None:
        return recorded
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", run.name)[:40]
    return f"{name}-v{run.version}-{uuid.uuid4().hex[:8]}"


@LOGGERS.register("wandb")
class WandbTracker(Tracker):
    """W&B: scalars against `trainer/global_step`, grids as `wandb.Image`, texts as one-cell tables."""

    logger_class = WandbLogger
    requires = "wandb"
    extra = "wandb"

    def build(self, run: RunLocation, config: Mapping[str, Any]) -> Logger:
        """A WandbLogger writing under the run directory, its id the one the directory recorded (a restart resumes
        the W&B run) or a new one."""
        project = os.environ.get("WANDB_PROJECT", "gan_lightning")
        name = f"{run.name}/version_{run.version}"
        return WandbLogger(name=name, save_dir=str(run.run_dir), id=run_id(run), project=project)

    def image(self, logger: Logger, tag: str, grid: torch.Tensor, step: int) -> None:
        """`log_image` of the grid, (C, H, W) in [0, 1] as W&B expects a tensor."""
        logger.log_image(key=tag, images=[grid], step=step)

    def text(self, logger: Logger, tag: str, text: str, step: int) -> None:
        """`log_text`: a one-column table holding the markdown."""
        logger.log_text(key=tag, columns=["text"], data=[[text]], step=step)

    def started(self, logger: Logger, run: RunLocation, config: Mapping[str, Any]) -> None:
        """Record the W&B run's id in the run directory, and hand W&B the run's config."""
        record_run_id(run, RUN_ID_FILE, logger.version)
        super().started(logger, run, config)

    def finished(self, logger: Logger) -> None:
        """`finish` the W&B run: Lightning leaves it open until the process exits, so a second run in one process
        (a notebook, a resume in the same job) would otherwise log into the first."""
        import wandb

        if wandb.run is not None:
            wandb.run.finish()
