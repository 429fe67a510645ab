"""TensorBoard, the default tracker, with the GAN up front: a custom-scalars layout and no `epoch` chart."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from gan_lightning.loggers.base import LOGGERS, RunLocation, Tracker

# The first screen of TensorBoard's custom-scalars tab: the GAN's own charts, several curves per chart.
# TensorBoard matches these with Python's `re`: everything under train/ but the charts above it.
OTHER_TRAIN_STATS = r"train/(?!(d_loss|g_loss|p_real|p_fake|grad_norm_d|grad_norm_g|amp_skipped_steps)$).+"
CUSTOM_SCALARS = {
    "GAN": {
        "D and G losses": ["Multiline", [r"train/d_loss$", r"train/g_loss$"]],
        "D(x) and D(G(z))": ["Multiline", [r"train/p_real$", r"train/p_fake$"]],
        "gradient norms": ["Multiline", [r"train/grad_norm_d$", r"train/grad_norm_g$"]],
        # every other statistic a component returns (R1, R2, InfoGAN's terms, a regularizer's own), no list to edit
        "regularizers and component statistics": ["Multiline", [OTHER_TRAIN_STATS]],
    },
    "val": {
        "FID and KID": ["Multiline", [r"val/(fid|kid)$"]],
        "precision, recall, density, coverage": ["Multiline", [r"val/(precision|recall|density|coverage)$"]],
        "modes": ["Multiline", [r"val/(modes|mode_kl|class_kl)$"]],
    },
}


def layout_for(metrics: dict[str, Any]) -> dict[str, dict[str, list]]:
    """`CUSTOM_SCALARS` without the chart of other statistics when the first logged step has none (no regularizer,
    schedule or adaptive augmentation: the chart would stay empty)."""
    if any(re.fullmatch(OTHER_TRAIN_STATS, key) for key in metrics):
        return CUSTOM_SCALARS
    gan = {title: chart for title, chart in CUSTOM_SCALARS["GAN"].items() if chart[1] != [OTHER_TRAIN_STATS]}
    return {**CUSTOM_SCALARS, "GAN": gan}


class GANLogger(TensorBoardLogger):
    """TensorBoard with the GAN up front: the custom-scalars layout above, and no `epoch` scalar.

    Lightning adds the epoch to every logged step; TensorBoard sorts tags by name, so an `epoch` chart would
    open the dashboard ahead of the losses while telling a GAN user nothing the iteration axis does not.
    """

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Write the scalars without Lightning's `epoch`; with the first training scalars, the custom-scalars layout."""
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        # with the first training scalars: a score logged before them would leave out the component statistics
        if any(k.startswith("train/") for k in metrics) and not getattr(self, "layout_written", False):
            self.experiment.add_custom_scalars(layout_for(metrics))
            self.layout_written = True
        if metrics:
            super().log_metrics(metrics, step)


@LOGGERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    """TensorBoard (the default): the run directory is its version folder; grids and texts as its own summaries."""

    logger_class = TensorBoardLogger

    def build(self, run: RunLocation, config: Mapping[str, Any]) -> Logger:
        """`GANLogger` in `log_dir/name/version_N`; a resumed run first purges the events logged after its checkpoint's
        iteration (a run killed without a final checkpoint logged past it, and would show those iterations twice).
        A new run marks its start too (purge_step 0 purges nothing): TensorBoard's Python loader takes a run's first
        start marker for its start, and only a later one for a restart."""
        purge_step = run.resumed_at + 1 if run.resumed_at is not None else 0
        return GANLogger(str(run.log_dir), name=run.name, version=run.version, default_hp_metric=False,
                         purge_step=purge_step)  # fmt: skip

    def image(self, logger: Logger, tag: str, grid: torch.Tensor, step: int) -> None:
        """`add_image` of the (C, H, W) grid."""
        logger.experiment.add_image(tag, grid, global_step=step)

    def text(self, logger: Logger, tag: str, text: str, step: int) -> None:
        """`add_text`: TensorBoard renders the markdown."""
        logger.experiment.add_text(tag, text, global_step=step)

    def started(self, logger: Logger, run: RunLocation, config: Mapping[str, Any]) -> None:
        """Nothing: the run's config.yaml sits in TensorBoard's own folder, and the module's hparams.yaml beside it."""
