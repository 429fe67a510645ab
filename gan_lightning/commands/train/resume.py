"""Resuming a run: the checkpoint `--ckpt-path` names, the flags it was trained with, and the command that resumes."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from gan_lightning.commands.base import recorded_doc
from gan_lightning.commands.train.cluster import slurm_job_id, slurm_restart
from gan_lightning.commands.train.options import train_options
from gan_lightning.commands.train.presets import PRESETS
from gan_lightning.commands.train.runconfig import (
    CONFIG_FILE,
    checkpoint_config,
    compare_for_resume,
    read_training_checkpoint,
    recorded_config,
    trained_d_steps,
)
from gan_lightning.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Resume:
    """Where a run starts: the checkpoint it resumes from (None for a fresh run), the logger version it continues,
    the training flags changed since the checkpoint ({flag: (old, new)}) and Lightning's step count there."""

    checkpoint: str | None = None
    version: int | None = None
    changes: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)
    global_step: int = 0


def latest_version_dir(log_dir: str, name: str, job: str | None = None) -> Path | None:
    """The newest `LOG_DIR/NAME/version_N` holding `checkpoints/last.ckpt`; with a Slurm `job`, the newest of those
    this job wrote last (its config.yaml's `slurm_job`)."""
    root = Path(log_dir) / name
    versions = [p for p in root.glob("version_*") if p.name[8:].isdigit() and (p / "checkpoints/last.ckpt").is_file()]
    if job is not None:
        # not a run recording no job (started outside Slurm) either: array tasks restarting together would all take
        # the same one, and nothing tells them apart
        versions = [p for p in versions if recorded_job(p) == job]
    return max(versions, key=lambda p: int(p.name[8:]), default=None)


def recorded_job(version_dir: Path) -> str | None:
    """The Slurm job that last wrote the run's config.yaml (`slurm_job`), or None (none recorded, or no config)."""
    config = version_dir / CONFIG_FILE
    job = recorded_doc(config).get("slurm_job") if config.is_file() else None
    return str(job) if job is not None else None


def auto_version_dir(log_dir: str, name: str, notice: bool = False) -> Path | None:
    """The run `--ckpt-path auto` resumes: the newest run of --name with a checkpoint. Inside a Slurm job, only a run
    this job wrote (a requeued job continues its own run): another job's run (an array sibling, a second submission
    under the same --name) may be live, and two processes writing one run directory would corrupt it. A new job
    that should continue an older job's run names its checkpoint (or `last`); with `notice`, starting anew beside
    another job's run says so."""
    job = slurm_job_id()
    found = latest_version_dir(log_dir, name, job)
    if notice and job is not None and found is None and (other := latest_version_dir(log_dir, name)) is not None:
        owner = f"job {other_job}'s" if (other_job := recorded_job(other)) else "a run started outside Slurm"
        rank_zero_warn(f"--ckpt-path auto: Slurm job {job} has no run under {Path(log_dir) / name} yet, so this is "
                       f"a new run; {other.name} there is {owner} (to continue it instead: --ckpt-path "
                       f"{other / 'checkpoints' / 'last.ckpt'})")  # fmt: skip
    return found


def continued_version_dir(ckpt_path: str, log_dir: str, name: str, notice: bool = False) -> Path | None:
    """The run `--ckpt-path last` or `auto` (`ckpt_path`) continues under LOG_DIR/NAME. `auto`: `auto_version_dir`.
    `last`: the newest run with a checkpoint, except in a restarted Slurm job: the run this job records (the one its
    first start resumed or began), as a newer run may be another job's, live, and resuming it would take it over."""
    if ckpt_path == "auto":
        return auto_version_dir(log_dir, name, notice)
    return latest_version_dir(log_dir, name, slurm_job_id() if slurm_restart() else None)


def resumed_run_dir(ckpt_path: str, log_dir: str | None, name: str | None, preset: str | None,
                    model: str | None) -> Path | None:  # fmt: skip
    """The run directory whose recorded flags (its config.yaml) a `--ckpt-path` resume takes, or None.

    For `last` and `auto`: the newest run of --name with a checkpoint under --log-dir (given, else its default),
    --name defaulting to the preset, else the model; for `last` with a preset and no --name, also a run of that
    same preset written under its model's name (older versions named a preset's runs so). For a checkpoint in a run's
    `checkpoints/` folder: that run. None when there is no such run or it records no config.yaml (the flags given
    are then the run's flags)."""
    if ckpt_path not in ("last", "auto"):
        path = Path(ckpt_path)
        run = path.parent.parent
        return run if path.parent.name == "checkpoints" and path.is_file() and (run / CONFIG_FILE).is_file() else None
    log_dir = log_dir or train_options()["log_dir"].default
    model = model or PRESETS.get(preset or "", {}).get("model") or train_options()["model"].default
    candidates = [(name, None)] if name else [(preset or model, None)]
    if not name and preset and ckpt_path == "last":
        candidates.append((model, preset))  # only a run of this preset: another run of the model is not this one
    for candidate, required_preset in candidates:
        version_dir = continued_version_dir(ckpt_path, log_dir, candidate)
        if version_dir is None or not (version_dir / CONFIG_FILE).is_file():
            continue
        recorded = recorded_doc(version_dir / CONFIG_FILE).get("args") or {}
        if required_preset is None or recorded.get("preset") == required_preset:
            return version_dir
    return None


def resume_target(cfg: argparse.Namespace) -> tuple[str | None, int | None]:
    """(checkpoint path, logger version to continue) for `--ckpt-path`, failing early when it does not exist; for
    `auto`, the newest run of --name when it has a checkpoint, else (None, None): a fresh run."""
    if not cfg.ckpt_path:
        return None, None
    if cfg.ckpt_path in ("last", "auto"):
        version_dir = continued_version_dir(cfg.ckpt_path, cfg.log_dir, cfg.name, notice=True)
        if version_dir is None and cfg.ckpt_path == "auto":  # nothing to resume yet: the job's first start
            return None, None
        if version_dir is None and (newest := latest_version_dir(cfg.log_dir, cfg.name)) is not None:
            # a restart whose first start failed before writing its run: the newest run may be another job's
            raise ConfigError(f"--ckpt-path last: Slurm job {slurm_job_id()} is a restart and no run under "
                              f"{newest.parent} records it, so the run it continues is unknown; pass that run's "
                              f"checkpoint instead (the newest: {newest / 'checkpoints' / 'last.ckpt'})")  # fmt: skip
        if version_dir is None:
            raise ConfigError(f"--ckpt-path last: no {cfg.log_dir}/{cfg.name}/version_*/checkpoints/last.ckpt; "
                              "check --log-dir and --name")  # fmt: skip
        return str(version_dir / "checkpoints/last.ckpt"), int(version_dir.name[8:])
    path = Path(cfg.ckpt_path)
    if path.is_dir():
        raise ConfigError(f"--ckpt-path {path} is a directory; pass a checkpoint file (checkpoints/last.ckpt) or last")
    if not path.is_file():
        raise ConfigError(f"--ckpt-path {path}: no such checkpoint file")
    # Continue logging in the run the checkpoint came from when it lives in the standard layout.
    version_dir = path.parent.parent
    same_run = (
        path.parent.name == "checkpoints" and version_dir.resolve().parent == (Path(cfg.log_dir) / cfg.name).resolve()
    )
    return str(path), int(version_dir.name[8:]) if same_run and version_dir.name[8:].isdigit() else None


def resume_from(cfg: argparse.Namespace, config: Mapping[str, Any]) -> Resume:
    """The run's starting point: `--ckpt-path`'s checkpoint checked against the resolved `config`, whose network-
    defining flags must match it (one ConfigError lists every difference), and for `auto` its training flags too."""
    ckpt_path, version = resume_target(cfg)
    if ckpt_path is None:
        return Resume(version=version)
    ckpt = read_training_checkpoint(ckpt_path)
    trained = checkpoint_config(ckpt)
    changes = compare_for_resume(trained, config, ckpt_path, trained_d_steps(ckpt))
    # `auto` reruns a job's unchanged command: other training flags mean another run, not this one's restart. A
    # recorded config leaves out the options of components that were off (their defaults); a checkpoint without one
    # (an older release's) is read from its hyperparameters, whose missing flags say nothing: those are not compared
    recorded = recorded_config(ckpt) is not None
    if cfg.ckpt_path == "auto" and (differ := [f"--{k.replace('_', '-')} {o} -> {n}" for k, (o, n) in changes.items()
                                               if recorded or k in trained]):  # fmt: skip
        raise ConfigError(f"--ckpt-path auto: {Path(ckpt_path).parent.parent} was trained with other flags "
                          f"({', '.join(differ)}), so this is not its restart; for a new run pass another --name, to "
                          f"continue it with these flags --ckpt-path last or --ckpt-path {ckpt_path}")  # fmt: skip
    global_step = int(ckpt.get("global_step", 0))
    del ckpt  # Lightning reads it again; holding two copies of a large checkpoint helps nobody
    return Resume(ckpt_path, version, changes, global_step)


def resume_command(checkpoint: str) -> str:
    """The command line that continues this run from `checkpoint`: the one that started it, with --ckpt-path."""
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == "--ckpt-path" or arg.startswith("--ckpt-path="):
            skip = arg == "--ckpt-path"
            continue
        argv.append(arg)
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else "scripts/train.py"
    return shlex.join(["python", script, *argv, "--ckpt-path", checkpoint])
