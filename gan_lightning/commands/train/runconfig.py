"""A run's resolved configuration: `config.yaml` in its directory, replay with `--config`, and resuming with
changed flags (network-defining ones refused, training ones continued with a warning and recorded)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from gan_lightning.commands.base import recorded_doc
from gan_lightning.commands.train.cluster import slurm_job_id
from gan_lightning.commands.train.options import options_in_use, train_options
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.core.files import append_text, load_weights_file, write_text

CONFIG_FILE = "config.yaml"
CHANGES_FILE = "config_changes.yaml"


def flags_with(rule: str) -> list[str]:
    """The train command's options whose declared resume rule is `rule` (see `gan_lightning.core.options`)."""
    return train_options().names(resume=rule)


def run_config(cfg: argparse.Namespace) -> dict[str, Any]:
    """The flags of a resolved configuration that belong to the components it uses (`options_in_use`), minus the
    per-invocation ones (resume rule "transient"): what `config.yaml` and the checkpoints record."""
    values = vars(cfg)
    return {o.name: values[o.name] for o in sorted(options_in_use(values), key=lambda o: o.name)
            if o.resume != "transient"}  # fmt: skip


def _git_commit() -> str | None:
    """The commit of the checkout this package runs from, or None outside a git checkout."""
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Package versions and the git commit, for a run's record."""
    import lightning
    import torch
    import torchmetrics
    import torchvision

    from gan_lightning import __version__

    return {
        "gan_lightning": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        # str(): torch's version is a str subclass that YAML's safe dumper refuses
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "lightning": str(lightning.__version__),
        "torchmetrics": str(torchmetrics.__version__),
    }


def write_config(
    run_dir: str | Path,
    config: Mapping[str, Any],
    resumed_from: Mapping[str, Any] | None = None,
    plugins: Mapping[str, str | None] | None = None,
) -> Path:
    """Write `config.yaml` (the flags under `args`, the plugins the run's components come from under `plugins`,
    versions and commit under `environment`, and for a resumed run the checkpoint and iteration it continued from
    under `resumed_from`, appended to the run's earlier ones under `resumes`) into `run_dir`."""
    written = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    previous = recorded_doc(Path(run_dir) / CONFIG_FILE) if resumed_from else {}
    doc: dict[str, Any] = {"args": dict(config)}
    if plugins:
        doc["plugins"] = dict(plugins)
    # the run's first start keeps its provenance; each resume records its own beside it. `cwd` makes the relative
    # paths among the flags (--data-dir) mean the same when the run is resumed from elsewhere
    doc |= {"environment": previous.get("environment") or environment(), "cwd": previous.get("cwd") or os.getcwd(),
            "written": previous.get("written") or written}  # fmt: skip
    # the job writing the run now (a resume outside Slurm keeps the recorded one): `--ckpt-path auto` inside a job
    # resumes only that job's runs
    if (job := slurm_job_id() or previous.get("slurm_job")) is not None:
        doc["slurm_job"] = str(job)
    if resumed_from:
        doc["resumed_from"] = dict(resumed_from)
        # every resume of this run directory, oldest first: how often and from where a (requeued) job continued
        resumes = previous.get("resumes")
        earlier = [r for r in resumes if isinstance(r, dict)] if isinstance(resumes, list) else []
        resume = {**resumed_from, "written": written, "environment": environment()}
        doc["resumes"] = [*earlier, {**resume, **({"plugins": dict(plugins)} if plugins else {})}]
    text = "# Replay: python scripts/train.py --config THIS_FILE [flags that override it]\n" + yaml.safe_dump(
        doc, sort_keys=False
    )
    return write_text(Path(run_dir) / CONFIG_FILE, text, "the run's config")


def recorded_paths(path: Path, values: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The paths under `keys` (`data_dir`, `prepared`) of the `values` a run's config.yaml records, relative ones
    joined to the directory the run started in."""
    cwd = recorded_doc(path).get("cwd")
    joined = {}
    for key in keys:
        value = values.get(key)
        relative = value is not None and not Path(value).is_absolute() and isinstance(cwd, str)
        joined[key] = os.path.join(cwd, value) if relative else value
    return joined


def load_config(path: str | Path, known: set[str], flag: str = "--config") -> dict[str, Any]:
    """The `args` of a `config.yaml` (or of `RUN_DIR/config.yaml`), checked against the flags in `known`; errors
    name `flag`, the option that led to the file."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file (a run directory's {CONFIG_FILE}, or the file itself)")
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{flag}: {path} is not readable YAML ({first})") from None
    args = doc.get("args") if isinstance(doc, dict) else None
    if not isinstance(args, dict):
        raise ConfigError(f"{flag}: {path} has no `args:` mapping; pass a config.yaml written by a training run")
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"{flag}: {path} has unknown flags {', '.join(unknown)} (written by another version?)")
    transient = flags_with("transient")
    return {k: v for k, v in args.items() if k not in transient}


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint's dict, read without unpickling code; one-line errors for anything else."""
    ckpt = load_weights_file(path, "checkpoint", "pass a gan_lightning checkpoints/last.ckpt to --ckpt-path, or `last`")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt.get("hyper_parameters", {}):
        raise DataError(f"--ckpt-path {path} is not a gan_lightning training checkpoint (no model hyperparameters)")
    if "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise DataError(f"--ckpt-path {path} holds weights only (no optimizer or loop state): it cannot resume "
                        "training; sample from it with sample.py instead")  # fmt: skip
    return ckpt


def recorded_config(ckpt: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config a checkpoint's run recorded (every flag in use), or None (an older release's checkpoint)."""
    return ckpt.get("gan_lightning_run", {}).get("config") or None


def checkpoint_config(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The flags a checkpoint was trained with: the recorded config, else what its hyperparameters say."""
    recorded = recorded_config(ckpt)
    if recorded:
        return dict(recorded)
    hp = dict(ckpt.get("hyper_parameters", {}))
    keys = (*flags_with("refuse"), *flags_with("warn"))
    return {k: hp[k] for k in keys if k in hp}


def _effective_d_steps(config: Mapping[str, Any]) -> int:
    from gan_lightning.training.objectives import OBJECTIVES

    d_steps = config.get("d_steps")
    return int(d_steps) if d_steps else OBJECTIVES.get(config.get("loss") or "bce").default_d_steps


def trained_d_steps(ckpt: Mapping[str, Any]) -> int | None:
    """D updates per G update as the checkpoint's Adam step counts record them (None before any update)."""
    counts = []
    for state in ckpt.get("optimizer_states", [])[:2]:
        steps = [int(s["step"]) for s in state.get("state", {}).values() if "step" in s]
        counts.append(max(steps, default=0))
    if len(counts) != 2 or counts[0] == 0:
        return None
    return counts[1] // counts[0]  # optimizers are (G, D)


def compare_for_resume(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, old_d_steps: int | None = None
) -> dict[str, tuple[Any, Any]]:
    """The training flags that differ between a checkpoint's run and this one, as {flag: (old, new)}.

    Raises one ConfigError listing every network-defining difference, and a change of D steps per iteration
    (`old_d_steps`, else what `old` implies), which would change how Lightning's step counter maps to iterations.
    """
    # an option one side does not record belongs to a component it did not use: it holds its declared default there
    defaults = train_options().defaults()
    old, new = ({k: side.get(k, defaults.get(k)) for k in {*old, *new}} for side in (old, new))
    refused = [f"--{k.replace('_', '-')} {old[k]} -> {new.get(k)}" for k in flags_with("refuse")
               if k in old and old[k] != new.get(k)]  # fmt: skip
    before = old_d_steps if old_d_steps is not None else (_effective_d_steps(old) if "loss" in old else None)
    if before is not None and before != _effective_d_steps(new):
        refused.append(f"D steps per iteration {before} -> {_effective_d_steps(new)}")
    if refused:
        raise ConfigError(f"cannot resume {path} with different networks or data shape: {'; '.join(refused)}. "
                          "Use the flags it was trained with (its run's config.yaml) or start a new run")  # fmt: skip
    return {k: (old[k], new.get(k)) for k in flags_with("warn") if k in old and old[k] != new.get(k)}


def record_changes(
    run_dir: str | Path, iteration: int, changes: Mapping[str, tuple[Any, Any]], checkpoint: str
) -> Path:
    """Append a resume's flag changes, and the checkpoint it resumed from, to `config_changes.yaml` in the run
    directory (created when the resume starts a new one)."""
    entry = {"iteration": iteration, "checkpoint": checkpoint,
             "changes": {k: {"old": o, "new": n} for k, (o, n) in changes.items()}}  # fmt: skip
    text = yaml.safe_dump([entry], sort_keys=False)
    return append_text(Path(run_dir) / CHANGES_FILE, text, "the run's config changes")


class ResumeWithChanges(Callback):
    """Makes changed optimizer options take effect on resume: the checkpoint's param-group settings (learning
    rate, betas, weight decay, whatever the optimizers' component declares) would otherwise overwrite the new ones
    when Lightning restores the optimizer states. The new settings are read from optimizers the module configures
    afresh, so no list of optimizer options is kept here; the optimizers' state (Adam's moments) is kept."""

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # Called before Lightning restores the optimizers from this same dict.
        fresh = pl_module.configure_optimizers()
        for state, optimizer in zip(checkpoint.get("optimizer_states", []), fresh, strict=False):
            for group, new in zip(state.get("param_groups", []), optimizer.param_groups, strict=False):
                group.update({k: v for k, v in new.items() if k != "params"})


def warn_changes(changes: Mapping[str, tuple[Any, Any]], iteration: int) -> None:
    """One warning naming every changed training flag."""
    text = ", ".join(f"--{k.replace('_', '-')} {o} -> {n}" for k, (o, n) in changes.items())
    note = ""
    if "batch_size" in changes:
        note = ("; the data order continues in the same epoch's permutation from the first new-size batch after "
                "the images already seen")  # fmt: skip
    rank_zero_warn(f"resuming at iteration {iteration} with changed training flags: {text}{note}")
