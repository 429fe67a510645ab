"""The train command's argument parser: flags generated from the declared options; a run's recorded flags (`--config
FILE`, or the config.yaml of the run `--ckpt-path` continues) as the defaults that explicit flags override."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_lightning.commands.base import Parser
from gan_lightning.commands.train.options import option_groups
from gan_lightning.commands.train.presets import PRESETS, preset_help
from gan_lightning.commands.train.resume import resumed_run_dir
from gan_lightning.commands.train.runconfig import CONFIG_FILE, load_config, recorded_paths
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import RESET, Options


class TrainParser(Parser):
    """The train command's parser: `--config FILE` supplies every flag's value, and so does the config.yaml of the
    run that `--ckpt-path` resumes; explicit flags still win, an explicit `--preset` over the recorded recipe."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """Parse once to find the recorded flags, then again with them as the defaults."""
        cfg = super().parse_args(args, namespace)
        if cfg.config and cfg.ckpt_path == "auto" and not cfg.name:
            self.error("--ckpt-path auto with --config: pass --name for this run (under the replayed run's own name "
                       "auto would resume that run)")  # fmt: skip
        source, flag, run_dir = cfg.config, "--config", None
        if not source and cfg.ckpt_path:
            explicit = {k: None if v is RESET else v for k, v in vars(cfg).items()}
            run_dir = resumed_run_dir(cfg.ckpt_path, explicit["log_dir"], explicit["name"], explicit["preset"],
                                      explicit["model"])  # fmt: skip
            source, flag = (run_dir / CONFIG_FILE if run_dir else None), "--ckpt-path"
        if not source:
            return cfg
        try:
            values = load_config(source, known=set(vars(cfg)), flag=flag)
        except ConfigError as err:
            self.error(str(err))
        if run_dir is not None:  # continue the run where it was found, its relative paths as it started
            values |= {"log_dir": str(run_dir.parent.parent), "name": run_dir.parent.name,
                       **recorded_paths(source, values, ("data_dir", "prepared"))}  # fmt: skip
        if cfg.preset and cfg.preset != values.get("preset"):
            # a preset named now replaces the recorded one's recipe; values the run set itself, over its preset, stay
            for key, value in PRESETS.get(values.get("preset") or "", {}).items():
                if values.get(key) == value:
                    del values[key]
            values |= {**PRESETS.get(cfg.preset, {}), "preset": cfg.preset}
        self.set_defaults(**values)
        resolved = super().parse_args(args, namespace)
        resolved.config = str(Path(source))  # already resolved: `resolve` does not apply the preset again
        return resolved


def resumed_configs(argv: Sequence[str]) -> list[Path]:
    """The config.yaml of the run `--ckpt-path last` or `auto` continues in `argv` (its plugins load first)."""
    scan = argparse.ArgumentParser(add_help=False)
    for flag in ("--ckpt-path", "--config", "--log-dir", "--name", "--preset", "--model"):
        scan.add_argument(flag)
    known, _ = scan.parse_known_args(argv)
    if known.config or known.ckpt_path not in ("last", "auto"):
        return []  # --config and checkpoint files name what holds their plugins themselves
    run_dir = resumed_run_dir(known.ckpt_path, known.log_dir, known.name, known.preset, known.model)
    return [run_dir / CONFIG_FILE] if run_dir else []


def build_parser() -> Parser:
    """The train command's argument parser, generated from the declared options."""
    p = TrainParser(
        prog="train.py",
        description="Train a GAN with PyTorch Lightning; watch it with `tensorboard --logdir lightning_logs`.",
        epilog=preset_help(),
    )
    groups = option_groups()
    Options(*(group for _, group in groups))  # a name declared differently by two groups is refused in one line
    added: set[str] = set()
    for title, group in groups:
        arguments = p.add_argument_group(title)
        for option in group:
            if option.name not in added:  # declared the same way by two groups: one flag
                option.add_to(arguments, resettable=True)
                added.add(option.name)
    return p
