"""Differentiable augmentation of what D sees: registered transforms (`transforms.py`, and any file here or in a
plugin that registers more), the DiffAugment policy that applies them (`diffaugment.py`) and its adaptive form,
ADA (`ada.py`). The same kind of transform is applied to real and fake images, before D, in both phases, so D
cannot tell real from fake by the augmentation; per-image randomness comes from the caller's `rng` only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gan_lightning.augment.ada import AdaptiveAugment
from gan_lightning.augment.diffaugment import DiffAugment
from gan_lightning.augment.transforms import TRANSFORMS, Transform, color, cutout, translation
from gan_lightning.core.registry import import_submodules

__all__ = ["TRANSFORMS", "AdaptiveAugment", "DiffAugment", "Transform", "build_augment", "color", "cutout",
           "translation"]  # fmt: skip


def build_augment(options: Mapping[str, Any]) -> DiffAugment | None:
    """The augmentation the declared `options` ask for: adaptive with `--ada-target`, else `--diffaug`'s, or None."""
    return AdaptiveAugment.from_options(options) or DiffAugment.from_options(options)


import_submodules(__name__)  # every transform file in this package registers itself
