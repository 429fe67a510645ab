"""The train command's argument parser: flags generated from the declared options, `--config FILE` as defaults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gan_lightning.commands.base import Parser
from gan_lightning.commands.train.options import option_groups
from gan_lightning.commands.train.presets import preset_help
from gan_lightning.commands.train.runconfig import load_config
from gan_lightning.core.errors import ConfigError


class TrainParser(Parser):
    """The train command's parser: `--config FILE` supplies every flag's value, explicit flags still win."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """Parse once to find `--config`, then again with its values as the defaults."""
        cfg = super().parse_args(args, namespace)
        if not cfg.config:
            return cfg
        try:
            values = load_config(cfg.config, known=set(vars(cfg)))
        except ConfigError as err:
            self.error(str(err))
        self.set_defaults(**values)
        return super().parse_args(args, namespace)


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
            option.add_to(arguments)
    return p
