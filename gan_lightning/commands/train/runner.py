"""The train command itself: `run(cfg)` trains a resolved configuration step by step; `main` is its entry point."""

from __future__ import annotations

import argparse
import os
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from gan_lightning.callbacks import GANCheckpoint, RankWatch, RunProgress, SampleGrid, TrainingHealth
from gan_lightning.callbacks.checkpoint import training_complete
from gan_lightning.commands.base import CommandStopped, recorded_plugins, run_command
from gan_lightning.commands.train.cluster import slurm_job_id, time_limit_signal_outside_training
from gan_lightning.commands.train.fit import fit
from gan_lightning.commands.train.parser import build_parser, resumed_configs
from gan_lightning.commands.train.resolution import resolve
from gan_lightning.commands.train.resume import Resume, resume_from
from gan_lightning.commands.train.runconfig import (
    CONFIG_FILE,
    ResumeWithChanges,
    record_changes,
    run_config,
    warn_changes,
    write_config,
)
from gan_lightning.commands.train.trainer import (
    LightningNotices,
    build_trainer,
    checkpoint_callback,
    evaluation_callbacks,
    parse_devices,
    quiet_expected_warnings,
)
from gan_lightning.core import notes, plugins
from gan_lightning.core.files import check_writable_dir, claim_version, data_lock, remove_empty_dirs
from gan_lightning.data import DATASETS
from gan_lightning.loggers import LOGGERS, RunLocation, build_loggers, finish_trackers, start_trackers
from gan_lightning.loggers.base import logger_names
from gan_lightning.metrics import EXTRACTORS
from gan_lightning.metrics.extractors.resizers import RESIZES
from gan_lightning.models.heads import check_spectral_norm
from gan_lightning.training.accumulate import check_batchnorm_micro_batches
from gan_lightning.training.gan import GAN


def run(cfg: argparse.Namespace, callbacks: Sequence[pl.Callback] = ()) -> dict[str, str]:
    """Train a resolved config (`resolve`) plus any extra `callbacks`; returns the log dir and last checkpoint path."""
    with LightningNotices().installed(), time_limit_signal_outside_training() as outside:
        return _run(cfg, callbacks, outside.take)


def _run(
    cfg: argparse.Namespace, callbacks: Sequence[pl.Callback], signalled_before: Callable[[], bool]
) -> dict[str, str]:
    """`run`'s steps, ordered so that every check of the input precedes the first file written."""
    quiet_expected_warnings()
    devices = parse_devices(cfg.devices)
    if not cfg.fast_dev_run:
        check_writable_dir(cfg.log_dir, "--log-dir")
    config = run_config(cfg)
    resume = resume_from(cfg, config)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    with warnings.catch_warnings():  # said in the one line below instead; a resumed run continues as it was trained
        warnings.filterwarnings("ignore", message="spectral_norm leaves")
        model = GAN(**GAN.declared_options().pick(vars(cfg)))
    if cfg.spectral_norm and not resume.checkpoint:
        check_spectral_norm(model.discriminator)
    networks = {"G": model.generator, "D": model.discriminator}
    check_batchnorm_micro_batches(networks, cfg.batch_size, cfg.accumulate)
    datamodule = prepared_datamodule(cfg, model.d_steps)
    used_plugins = run_plugins(cfg, model, datamodule)
    with torch.random.fork_rng(devices=[]):  # building (or training) the metric's network draws from the global RNG
        scoring = evaluation_callbacks(cfg)
    extra = [*callbacks, *([ResumeWithChanges()] if resume.checkpoint else []), *scoring]
    version, claimed = run_version(cfg, resume)
    try:
        resumed_at = resume.global_step // model.steps_per_iteration if resume.checkpoint else None
        location = RunLocation(Path(cfg.log_dir), cfg.name, version, resumed_at)
        # under fast_dev_run Lightning swaps every logger for a dummy: only TensorBoard's is built, and writes nothing
        loggers = build_loggers("tensorboard", location, config) if cfg.fast_dev_run else False
        if cfg.fast_dev_run:  # TensorBoard's own next version, for the paths printed (nothing is written)
            location = RunLocation(location.log_dir, location.name, loggers[0].version)
        checkpoint = checkpoint_callback(cfg, config, used_plugins, location.run_dir / "checkpoints", signalled_before)
        watch = RankWatch()
        standard = [SampleGrid(every_n_steps=cfg.sample_every), checkpoint, RunProgress(), TrainingHealth(), watch]
        trainer = build_trainer(cfg, devices, model, loggers, [*standard, *extra], root_dir=location.run_dir)
        datamodule.check_batches(trainer.world_size)  # per process, now that the number of processes is known
        if not cfg.fast_dev_run:  # after the checks: a tracker's client may create its store (MLflow's database)
            trainer.loggers = loggers = build_loggers(cfg.logger, location, config)
    except BaseException:
        remove_empty_dirs(claimed)  # refused: the claimed version directory goes, as nothing was written in it
        raise
    paths = {"log_dir": str(location.run_dir), "checkpoint": str(location.run_dir / "checkpoints" / "last.ckpt")}
    notes.release()  # the input is checked: what was inferred from it is worth saying now
    if trainer.is_global_zero and not cfg.fast_dev_run:
        # Everything that could be wrong with the input has been checked by now: the run directory may appear.
        record_config(paths["log_dir"], config, resume, model.steps_per_iteration, used_plugins)
    os.environ[VERSION_ENV] = str(location.version)  # the DDP processes Lightning starts for the other ranks read it
    started = False
    try:
        if trainer.is_global_zero and not cfg.fast_dev_run:
            start_trackers(loggers, location, config)  # e.g. the config as a tracker's parameters
        started = True
        fit(trainer, model, datamodule, resume.checkpoint, checkpoint, watch)
    finally:
        os.environ.pop(VERSION_ENV, None)
        if trainer.is_global_zero and not cfg.fast_dev_run:
            finish_trackers(loggers, failed=not started)  # those that started too, when another could not
            if not started and claimed:  # a new run whose tracker could not start (no W&B login): it leaves nothing
                shutil.rmtree(claimed[0], ignore_errors=True)  # the version directory this process created
                remove_empty_dirs(claimed[1:])
    if trainer.is_global_zero and not cfg.fast_dev_run:
        print(f"logs:       {paths['log_dir']}\ncheckpoint: {paths['checkpoint']}")
    _raise_if_signalled(trainer, checkpoint, model)
    return paths


VERSION_ENV = "GAN_LIGHTNING_RUN_VERSION"


def launching_process() -> bool:
    """Whether this process starts the run: not one Lightning's DDP launcher or a cluster started for another rank."""
    return all(os.environ.get(key, "0") == "0" for key in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


def run_version(cfg: argparse.Namespace, resume: Resume) -> tuple[int | str | None, list[Path]]:
    """The logger version of this run and the directories claimed for it: a resumed run's own; for a new run, the
    next `version_N` created exclusively by the launching process (so runs started together with one --name never
    share a directory), which the other ranks' processes read from it."""
    if resume.version is not None or cfg.fast_dev_run:
        return resume.version, []
    if launching_process():
        return claim_version(Path(cfg.log_dir) / cfg.name)
    return (int(os.environ[VERSION_ENV]) if os.environ.get(VERSION_ENV) else None), []


def prepared_datamodule(cfg: argparse.Namespace, d_steps: int) -> pl.LightningDataModule:
    """The dataset's DataModule, its data found and readable: one iteration consumes `d_steps` real minibatches,
    one per D update."""
    options = {k: v for k, v in vars(cfg).items() if k != "data_dir"}
    datamodule = DATASETS.get(cfg.dataset)(cfg.data_dir, **{**options, "batch_size": cfg.batch_size * d_steps})
    # every process of the run, one at a time (srun starts them together): the first downloads or extracts what is
    # missing, the others find it complete; missing data fails here, before any directory is created
    with data_lock(getattr(datamodule, "data_dir", cfg.data_dir)):  # the folder it resolved ($GAN_DATA_DIR, ./data)
        datamodule.prepare_data()
    datamodule.setup("fit")  # only reads: unreadable data fails here too (Lightning's own call later finds it done)
    return datamodule


def run_plugins(cfg: argparse.Namespace, model: GAN, datamodule: pl.LightningDataModule) -> dict[str, str | None]:
    """The plugins this run's components come from: the GAN's, the dataset's, the extractor's and its resize's,
    the trackers'."""
    origins = [DATASETS.origin(cfg.dataset), *(LOGGERS.origin(name) for name in logger_names(cfg.logger))]
    if cfg.extractor:
        origins.append(EXTRACTORS.origin(cfg.extractor))
    if cfg.extractor_resize:
        origins.append(RESIZES.origin(cfg.extractor_resize))
    named = plugins.versions(origins)
    return {**model.plugins(), **named, **plugins.owners([datamodule])}


def record_config(run_dir: str, config: Mapping[str, Any], resume: Resume, steps_per_iteration: int,
                  used_plugins: Mapping[str, str | None]) -> None:  # fmt: skip
    """Write `config.yaml` (with the plugins the run's components come from) for a new run, or for a resume (which
    it records; changed flags are also warned about and appended to the run's `config_changes.yaml`)."""
    iteration = resume.global_step // steps_per_iteration
    resumed_from = (
        {"checkpoint": str(Path(resume.checkpoint).resolve()), "iteration": iteration} if resume.checkpoint else None
    )
    if resumed_from:  # a plugin upgraded between a run's start and its resume may change what it computes
        before = recorded_plugins(Path(run_dir) / CONFIG_FILE)
        for module, version in used_plugins.items():
            if module in before and before[module] != version:
                notes.note(f"the plugin {module} is {version} now; this run was last written with {before[module]} "
                           "(config.yaml records each resume's plugins)")  # fmt: skip
    if resumed_from or not (Path(run_dir) / CONFIG_FILE).is_file():
        write_config(run_dir, config, resumed_from, used_plugins)
    if resume.changes:
        warn_changes(resume.changes, iteration)
        record_changes(run_dir, iteration, resume.changes, resumed_from["checkpoint"])


def _raise_if_signalled(trainer: pl.Trainer, checkpoint: GANCheckpoint, model: GAN) -> None:
    """Exit status 130 when a signal ended training early (after SIGUSR1 in a Slurm job, rank zero has requeued it
    as soon as last.ckpt was written, and says so)."""
    if not (checkpoint.stop_requested or trainer.received_sigterm):
        return
    if training_complete(trainer):
        return  # the signal came in the last iteration or after it (the final evaluation): the run is complete
    if checkpoint.requeue_message is not None:
        message = f"stopped after iteration {model.iteration} ahead of the time limit; {checkpoint.requeue_message}"
        raise CommandStopped(message, status=130)
    if slurm_job_id():
        how = "a requeued job resumes with --ckpt-path auto"
    else:
        how = "resume with the same flags and --ckpt-path last"
    message = f"stopped by a signal after iteration {model.iteration}; {how}"
    raise CommandStopped(message if trainer.is_global_zero else "", status=130)  # one line per run, not per rank


def _resolve_and_run(cfg: argparse.Namespace) -> None:
    """The train command's `run`: fill in presets and defaults, then train (the paths are printed, not returned)."""
    run(resolve(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/train.py`: 0 on success, 2 bad input or data, 3 non-finite loss, 130 signal."""
    return run_command(build_parser, _resolve_and_run, argv, recorded_runs=resumed_configs)
