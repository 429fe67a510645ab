"""CSV: scalars in `csv/version_K/metrics.csv` inside the run directory, grids as PNG files and texts in a CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from torchvision.utils import save_image

from gan_lightning.core.files import append_text, atomic_write
from gan_lightning.loggers.base import LOGGERS, RunLocation, Tracker, file_name


@LOGGERS.register("csv")
class CSVTracker(Tracker):
    """Plain files any tool reads. Lightning's CSVLogger rewrites `metrics.csv` when its folder exists, so each
    start and each resume of a run writes the next `csv/version_K` (concatenate them in order for the whole run; after a
    hard kill a segment holds rows past the checkpoint the next one resumed from: keep those below its first step)."""

    logger_class = CSVLogger

    def build(self, run: RunLocation, config: Mapping[str, Any]) -> Logger:
        """A CSVLogger in the run directory's `csv/version_K`, K the next free one."""
        return CSVLogger(str(run.run_dir), name="csv")

    def image(self, logger: Logger, tag: str, grid: torch.Tensor, step: int) -> None:
        """`images/<tag>_<step>.png` in the logger's folder."""
        path = Path(logger.log_dir) / "images" / file_name(tag, step, "png")
        atomic_write(path, lambda p: save_image(grid, p, format="png"), "the CSV logger's sample grid")

    def text(self, logger: Logger, tag: str, text: str, step: int) -> None:
        """A `step,tag,text` row of `texts.csv` in the logger's folder."""
        path = Path(logger.log_dir) / "texts.csv"
        row = io.StringIO()
        if not path.is_file():
            csv.writer(row).writerow(["step", "tag", "text"])
        csv.writer(row).writerow([step, tag, text])
        append_text(path, row.getvalue(), "the CSV logger's texts")
