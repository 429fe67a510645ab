"""Differentiable augmentation of what D sees (DiffAugment, Zhao et al. 2020), chosen by a policy string.

The same kind of transform is applied to real and fake images, before D, in both phases; it is differentiable,
so G learns through it, and D cannot tell real from fake by the augmentation. One short function per transform;
per-sample random parameters come from the caller's `rng`, never the global RNG, so a resumed run draws exactly
what the uninterrupted one did. Images are in [-1, 1], as everywhere in this project.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.options import Option

Tensor = torch.Tensor


def _uniform(x: Tensor, rng: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    """Per-sample U(low, high) of shape (B, *shape), drawn on `rng`'s device, in x's dtype and device."""
    u = torch.rand(x.shape[0], *shape, generator=rng, device=rng.device)
    return (low + (high - low) * u).to(device=x.device, dtype=x.dtype)


def color(x: Tensor, rng: torch.Generator) -> Tensor:
    """Brightness + U(-0.5, 0.5); saturation x U(0, 2) around the pixel's channel mean; contrast x U(0.5, 1.5)."""
    x = x + _uniform(x, rng, -0.5, 0.5, 1, 1, 1)  # (B, C, H, W)
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    x = (x - mean) * _uniform(x, rng, 0.0, 2.0, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * _uniform(x, rng, 0.5, 1.5, 1, 1, 1) + mean


def translation(x: Tensor, rng: torch.Generator, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size in x and y (integer pixels), filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # (B, H, 1): source row of each output row
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx  # (B, 1, W)
    # index a zero-padded copy: sources outside the image land on the padding
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C, H+2, W+2)
    rows, cols = rows.clamp(-1, h) + 1, cols.clamp(-1, w) + 1
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(x: Tensor, rng: torch.Generator, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` x the image size per image, centred anywhere (clipped at the borders)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= cy - ch // 2) & (rows < cy - ch // 2 + ch) & (cols >= cx - cw // 2) & (cols < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)  # (B, C, H, W)


AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def _check_policy(policy: str) -> None:
    DiffAugment(policy)


class DiffAugment(nn.Module):
    """The transforms of a policy such as "color,translation,cutout", applied in that order."""

    # fmt: off
    options = (
        Option("diffaug", None, "DiffAugment on every image D sees: a comma list of " + ", ".join(AUGMENTATIONS),
               type=str, metavar="POLICY", default_text="none", check=_check_policy),
    )
    # fmt: on

    @classmethod
    def from_options(cls, options: dict) -> DiffAugment | None:
        """The augmentation the declared `options` ask for, or None."""
        return cls(options["diffaug"]) if options["diffaug"] else None

    def __init__(self, policy: str) -> None:
        super().__init__()
        names = [name.strip() for name in policy.split(",")]
        choices = ", ".join(AUGMENTATIONS)
        if not all(names) or any(name not in AUGMENTATIONS for name in names):
            raise ConfigError(f"--diffaug {policy!r}: use a comma list of {choices}")
        if len(set(names)) != len(names):
            raise ConfigError(f"--diffaug {policy!r} names a transform twice; use each of {choices} at most once")
        self.policy = ",".join(names)
        self._transforms = [AUGMENTATIONS[name] for name in names]

    def init_options(self) -> dict[str, str]:
        """The constructor options that rebuild this augmentation."""
        return {"policy": self.policy}

    def forward(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """Augmented images (B, C, H, W), differentiable w.r.t. x; randomness from `rng` only."""
        for transform in self._transforms:
            x = transform(x, rng)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})"
