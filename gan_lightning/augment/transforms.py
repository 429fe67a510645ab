"""Augmentation transforms by name: DiffAugment's (Zhao et al. 2020) color, translation and cutout.

A transform is `f(x, rng) -> x'` on images (B, C, H, W) in [-1, 1]: differentiable w.r.t. x, so G learns through
it, with every per-image random parameter drawn from `rng` (never the global RNG, so a resumed run draws exactly
what the uninterrupted one did). Registered in `TRANSFORMS`, a transform can be named in any policy
(`--diffaug color,translation`, ADA's); a new family is one file in this package or in a plugin.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gan_lightning.core.registry import Registry

Tensor = torch.Tensor
Transform = Callable[[Tensor, torch.Generator], Tensor]

TRANSFORMS: Registry[Transform] = Registry("augmentation transform")


def _uniform(x: Tensor, rng: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    """Per-sample U(low, high) of shape (B, *shape), drawn on `rng`'s device, in x's dtype and device."""
    u = torch.rand(x.shape[0], *shape, generator=rng, device=rng.device)
    return (low + (high - low) * u).to(device=x.device, dtype=x.dtype)


@TRANSFORMS.register("color")
def color(x: Tensor, rng: torch.Generator) -> Tensor:
    """Brightness + U(-0.5, 0.5); saturation x U(0, 2) around the pixel's channel mean; contrast x U(0.5, 1.5)."""
    x = x + _uniform(x, rng, -0.5, 0.5, 1, 1, 1)  # (B, C, H, W)
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    x = (x - mean) * _uniform(x, rng, 0.0, 2.0, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * _uniform(x, rng, 0.5, 1.5, 1, 1, 1) + mean


@TRANSFORMS.register("translation")
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


@TRANSFORMS.register("cutout")
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
