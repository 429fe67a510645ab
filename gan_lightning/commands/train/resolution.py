"""Resolving the train command's flags: the preset, the dataset's and the model's declarations, then the declared
defaults, validated against each other and the dataset before any work."""

from __future__ import annotations

import argparse
from typing import Any

from gan_lightning.commands.train.options import check_regularizer_options, check_switched_options, train_options
from gan_lightning.commands.train.presets import PRESETS
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import RESET, check_seed
from gan_lightning.data import DATASETS, dataset_options
from gan_lightning.models import default_image_size
from gan_lightning.training.accumulate import check_divisible
from gan_lightning.training.schedules import check_run_length, scheduled_targets


def resolve(cfg: argparse.Namespace) -> argparse.Namespace:
    """Fill flags left unset from the preset, the dataset's and the model's declarations, then the declared
    defaults; validate everything before any work."""
    options = train_options()
    # what the user typed (a replayed or resumed run's recorded values are not: the run was made with them)
    typed = set() if getattr(cfg, "config", None) else {k for k, v in vars(cfg).items() if v is not None}
    # `--NAME none` asks for the declared default: neither the preset nor a recorded config fills it in
    reset = {key for key, value in vars(cfg).items() if value is RESET}
    for key in reset:
        setattr(cfg, key, None)
    # a replayed run's config.yaml is already resolved: what it does not record keeps its declared default, not
    # today's preset (a preset that gained options since would otherwise change an old run's recipe)
    preset = PRESETS.get(cfg.preset, {}) if cfg.preset and not getattr(cfg, "config", None) else {}
    for key, value in preset.items():
        if getattr(cfg, key) is None and key not in reset:
            setattr(cfg, key, value)
    for key in ("dataset", "model"):
        if getattr(cfg, key) is None:
            setattr(cfg, key, options[key].default)
        options[key].validate(getattr(cfg, key))
    spec = DATASETS.get(cfg.dataset)
    # classes found in the data (a folder's subfolders) are read now: they size the networks
    names = spec.class_names(cfg.data_dir, conditional=bool(cfg.conditional))
    num_classes = len(names) if names else spec.num_classes
    derived = {
        "image_size": default_image_size(cfg.model, spec.native_size),
        "channels": spec.channels_for(cfg.data_dir, cfg.channels, "training with"),
        "download": spec.download,
        "num_classes": num_classes,
        "class_names": names,
        "name": cfg.preset or cfg.model,
        "max_steps": 5000 if cfg.max_epochs is None else None,
    }
    for option in options:
        if getattr(cfg, option.name) is None:
            setattr(cfg, option.name, derived.get(option.name, option.default))
        option.validate(getattr(cfg, option.name))
    check_dataset(cfg, spec, names, num_classes)
    # the module checks these too, during training; here they fail before anything is written
    check_divisible(cfg.batch_size, cfg.accumulate)
    check_run_length(scheduled_targets(vars(cfg)), cfg.max_steps)
    check_regularizer_options(vars(cfg), typed)
    check_switched_options(vars(cfg), typed)
    check_seed(cfg.seed)
    return cfg


def check_dataset(cfg: argparse.Namespace, spec: Any, names: list[str] | None, num_classes: int) -> None:
    """What the dataset's declaration (and the class `names` found in its data, `num_classes` in all) rules out:
    other channels or classes, conditioning without labels, flags that do not apply to it."""
    if spec.channels is not None and cfg.channels != spec.channels:
        raise ConfigError(f"--dataset {cfg.dataset} images have {spec.channels} channel(s); drop --channels "
                          f"or pass --channels {spec.channels}")  # fmt: skip
    if cfg.conditional and not num_classes:
        raise ConfigError(f"--conditional needs class labels; --dataset {cfg.dataset} does not have them")
    found = f" (found in {cfg.data_dir})" if names else ""
    if cfg.num_classes is None:  # a dataset without classes: the option's own default, unused without labels
        cfg.num_classes = train_options()["num_classes"].default
    elif num_classes and cfg.num_classes != num_classes:
        raise ConfigError(f"--dataset {cfg.dataset} has {num_classes} classes{found}, not {cfg.num_classes}; drop "
                          "--num-classes")  # fmt: skip
    if names and cfg.class_names != names:
        raise ConfigError(f"--class-names {','.join(cfg.class_names)} differ from the classes of --dataset "
                          f"{cfg.dataset}{found}: {','.join(names)}; drop --class-names")  # fmt: skip
    if cfg.data_on_device and not spec.data_on_device:
        raise ConfigError(f"--data-on-device holds datasets in device memory; --dataset {cfg.dataset} streams "
                          "from disk")  # fmt: skip
    for option in dataset_options():
        value = getattr(cfg, option.name)
        if option.name != "dataset" and not spec.accepts(option.name) and value not in (None, False, option.default):
            raise ConfigError(f"{option.flag} does not apply to --dataset {cfg.dataset}; drop it")
