"""The train command's argument parser: flags generated from the declared options; a run's recorded flags (`--config
FILE`, or the config.yaml of the run `--ckpt-path` continues) as the defaults that explicit flags override."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_lightning.commands.base import Parser
from gan_lightning.commands.train.options import option_groups, train_options
from gan_lightning.commands.train.presets import PRESETS, preset_help
from gan_lightning.commands.train.resume import recorded_run_config
from gan_lightning.commands.train.runconfig import load_config
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import RESET


def run_name_candidates(cfg: argparse.Namespace) -> list[str]:
    """The --name a run given these flags has: the explicit one; else its preset's, then (where runs were once
    named so) its model's."""
    name, preset, model = (None if v is RESET else v for v in (cfg.name, cfg.preset, cfg.model))
    if name:
        return [name]
    return [n for n in (preset, model or train_options()["model"].default) if n]


class TrainParser(Parser):
    """The train command's parser: `--config FILE` supplies every flag's value, and so does the config.yaml of the
    run that `--ckpt-path` resumes; explicit flags still win, an explicit `--preset` over the recorded flags."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """Parse once to find the recorded flags, then again with them as the defaults."""
        cfg = super().parse_args(args, namespace)
        source, flag = cfg.config, "--config"
        if not source and cfg.ckpt_path:
            log_dir = cfg.log_dir or train_options()["log_dir"].default
            source, flag = recorded_run_config(cfg.ckpt_path, log_dir, run_name_candidates(cfg)), "--ckpt-path"
        if not source:
            return cfg
        try:
            values = load_config(source, known=set(vars(cfg)), flag=flag)
        except ConfigError as err:
            self.error(str(err))
        if cfg.preset and cfg.preset != values.get("preset"):
            values |= PRESETS.get(cfg.preset, {})  # a preset named now overrides the recorded recipe
        self.set_defaults(**values)
        resolved = super().parse_args(args, namespace)
        resolved.config = str(Path(source))  # already resolved: `resolve` does not apply the preset again
        return resolved


def build_parser() -> Parser:
    """The train command's argument parser, generated from the declared options."""
    p = TrainParser(
        prog="train.py",
        description="Train a GAN with PyTorch Lightning; watch it with `tensorboard --logdir lightning_logs`.",
        epilog=preset_help(),
    )
    for title, group in option_groups():
        arguments = p.add_argument_group(title)
        for option in group:
            option.add_to(arguments, resettable=True)
    return p
