"""The run's Lightning Trainer: devices, the multi-process strategy, its callbacks, and quieting its notices."""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException

from gan_lightning.callbacks import DirectCheckpointIO, GANCheckpoint
from gan_lightning.commands.train.cluster import cluster_plugins, requeue, slurm_job_id
from gan_lightning.core.errors import ConfigError
from gan_lightning.data import DATASETS, default_data_dir


def parse_devices(devices: str) -> int | str | list[int]:
    """`--devices` as Lightning takes it: auto, a count (-1 for all) or a list of ids."""
    if devices == "auto":
        return devices
    try:
        if "," in devices:
            ids = [int(x) for x in devices.split(",") if x.strip()]
            if not ids or min(ids) < 0:
                raise ValueError
            return ids
        value = int(devices)
    except ValueError:
        raise ConfigError(f"--devices must be auto, a count or a list like 0,1; got {devices!r}") from None
    if value == 0 or value < -1:
        raise ConfigError(f"--devices must be positive (or -1 for all), got {value}")
    return value


def default_strategy(devices: int | str | list[int], accelerator: str, num_nodes: int) -> str:
    """`ddp_per_network` whenever the run spans several processes, else Lightning's auto.

    Each phase's backward reaches only one network: D's loss gives G no gradient (fakes are detached and G is
    frozen), G's loss gives D's parameters none. One DDP wrapper around both needs find_unused_parameters and
    all-reduces the idle network's gradients as zeros in every phase; `PerNetworkDDPStrategy` (strategy.py) wraps
    G and D separately, so each phase all-reduces only its own (`--strategy ddp_find_unused_parameters_true`
    restores the single wrapper).
    """
    if isinstance(devices, list):
        many = len(devices) > 1
    elif isinstance(devices, int) and devices > 1:
        many = True
    else:  # "auto" or -1: all visible GPUs when on GPU
        many = accelerator in ("auto", "gpu", "cuda") and torch.cuda.device_count() > 1
    return "ddp_per_network" if many or num_nodes > 1 else "auto"


class LightningNotices(logging.Filter):
    """Drops Lightning's notices that say nothing to this command's user (an advertising tip, accelerators that
    are not used, the distributed banner, why `fit` stopped), so the project's own lines stay readable; its
    warnings are left alone."""

    DROPPED = ("💡 Tip", "GPU available:", "TPU available:", "HPU available:", "`Trainer.fit` stopped:",
               "Initializing distributed:", "LOCAL_RANK:")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep warnings and every notice not in `DROPPED`."""
        if record.levelno >= logging.WARNING:
            return True
        text = record.getMessage().strip()
        return not (text.startswith(self.DROPPED) or "All distributed processes registered" in text)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Filter the handlers Lightning writes its notices through, for the duration of the block."""
        handlers = [h for name in ("lightning.pytorch", "lightning.fabric") for h in logging.getLogger(name).handlers]
        for handler in handlers:
            handler.addFilter(self)
        try:
            yield
        finally:
            for handler in handlers:
                handler.removeFilter(self)


def quiet_expected_warnings() -> None:
    """Ignore Lightning's warnings that every run of this command triggers by design."""
    # Expected under manual optimization: not actionable for the user.
    warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # Logging every N iterations carries on across epochs (Lightning counts steps, not batches of one epoch).
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def checkpoint_callback(
    cfg: argparse.Namespace,
    config: Mapping[str, Any],
    used_plugins: Mapping[str, str | None] | None = None,
    dirpath: Path | None = None,
    signalled_before: Callable[[], bool] | None = None,
) -> GANCheckpoint:
    """The run's checkpoint writer into `dirpath` (the run directory's `checkpoints/`, whichever loggers run),
    recording the dataset, its resolved directory, the run's `config` and the plugins its components come from."""
    data_dir = str(Path(cfg.data_dir or default_data_dir()).resolve())
    run_info = {"dataset": cfg.dataset, "data_dir": data_dir, "config": config, "plugins": dict(used_plugins or {})}
    if getattr(cfg, "prepared", None):  # resolved, as data_dir: evaluation reads it from wherever it runs
        run_info["prepared"] = str(Path(cfg.prepared).resolve())
    return GANCheckpoint(every_n_iterations=cfg.checkpoint_every, keep=cfg.keep_checkpoints, run_info=run_info,
                         dirpath=dirpath, requeue=requeue if slurm_job_id() else None,
                         signalled_before=signalled_before)  # fmt: skip


def evaluation_callbacks(cfg: argparse.Namespace) -> list[pl.Callback]:
    """The sample-quality scorer `--eval-every` asks for, or none; sets `cfg.classifier` to the cached one when
    the dataset's metric needs a classifier and none was given."""
    if not cfg.eval_every:
        return []
    from gan_lightning.metrics import SampleQuality, build_extractor, default_extractor_weights

    if cfg.classifier is None and DATASETS.get(cfg.dataset).extractor is not None:
        # No manual step: the MNIST classifier is trained once per MNIST copy and reused from the cache.
        cfg.classifier = default_extractor_weights(cfg.dataset, cfg.data_dir or default_data_dir())
    # Loaded before the logger exists: a wrong path fails without writing anything.
    extractor = build_extractor(
        cfg.channels,
        classifier=cfg.classifier,
        fid_weights=cfg.fid_weights,
        dataset=cfg.dataset,
        fid_weights_unchecked=cfg.fid_weights_unchecked,
        extractor=cfg.extractor,
        extractor_weights=cfg.extractor_weights,
        extractor_resize=cfg.extractor_resize,
    )
    if extractor is None:  # metrics are off, and build_extractor said why in one line
        return []
    return [
        SampleQuality(
            extractor, every_n_steps=cfg.eval_every, num_samples=cfg.eval_samples, reference=f"{cfg.dataset}/val"
        )
    ]


def build_trainer(
    cfg: argparse.Namespace,
    devices: int | str | list[int],
    model: Any,
    logger: Any,
    callbacks: Sequence[pl.Callback],
    root_dir: Path | None = None,
) -> pl.Trainer:
    """The Trainer for `model` on `devices` (`parse_devices`) as the flags configure it, its root directory the run
    directory `root_dir`; a machine that cannot run it is a one-line ConfigError."""
    strategy = cfg.strategy if cfg.strategy != "auto" else default_strategy(devices, cfg.accelerator, cfg.num_nodes)
    try:
        cluster = cluster_plugins()
    except RuntimeError as err:  # Lightning's SLURMEnvironment refusing the launch (e.g. srun --ntasks alone)
        raise ConfigError(f"cannot run under this Slurm allocation: {str(err).splitlines()[0]}") from None
    try:
        return pl.Trainer(
            accelerator=cfg.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=strategy,
            sync_batchnorm=cfg.sync_batchnorm,
            precision=cfg.precision,
            plugins=[DirectCheckpointIO(), *cluster],
            max_steps=model.optimizer_steps(cfg.max_steps) if cfg.max_steps else -1,
            max_epochs=cfg.max_epochs,
            logger=logger,
            default_root_dir=root_dir,
            callbacks=list(callbacks),
            log_every_n_steps=cfg.log_every,
            fast_dev_run=cfg.fast_dev_run,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
    except (MisconfigurationException, ValueError, ImportError) as err:  # bad --accelerator/--devices/--strategy
        raise ConfigError(f"cannot set up training on this machine: {str(err).splitlines()[0]}") from None
