"""Differentiable augmentation of what D sees: registered transforms (`transforms.py`, and any file here or in a
plugin that registers more) and the DiffAugment policy that applies them (`diffaugment.py`); StyleGAN2-ADA's
pipeline of registered ops (`pipeline.py`: `ada_geometric.py`, `ada_color.py`, `ada_image.py`); and ADA's
controller tuning either one's probability (`ada.py`). The same kind of transform is applied to real and fake
images, before D, in both phases, so D cannot tell real from fake by the augmentation; per-image randomness comes
from the caller's `rng` only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gan_lightning.augment.ada import AdaptiveAugment
from gan_lightning.augment.diffaugment import DiffAugment
from gan_lightning.augment.pipeline import PIPELINE_OPS, POLICIES, AugmentPipe, pipeline_op
from gan_lightning.augment.transforms import TRANSFORMS, Transform, color, cutout, translation
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.registry import import_submodules

__all__ = ["PIPELINE_OPS", "POLICIES", "TRANSFORMS", "AdaptiveAugment", "AugmentPipe", "DiffAugment", "Transform",
           "build_augment", "color", "cutout", "pipeline_op", "translation"]  # fmt: skip


def build_augment(options: Mapping[str, Any]) -> AdaptiveAugment | AugmentPipe | DiffAugment | None:
    """The augmentation the declared `options` ask for: adaptive with `--ada-target` (on `--augpipe`'s pipeline or
    `--diffaug`'s policy), else `--augpipe`'s or `--diffaug`'s at a fixed p, or None."""
    if options.get("diffaug") and options.get("augpipe"):
        raise ConfigError("--diffaug and --augpipe both augment what D sees; pass one of them")
    if options.get("augpipe_resample_blits") and not options.get("augpipe"):
        raise ConfigError("--augpipe-resample-blits changes --augpipe's pipeline; add --augpipe POLICY or drop it")
    adaptive = AdaptiveAugment.from_options(options)
    return adaptive or AugmentPipe.from_options(options) or DiffAugment.from_options(options)


import_submodules(__name__)  # every transform file in this package registers itself
