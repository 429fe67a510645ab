"""A horizontal-flip augmentation transform: each image mirrored with probability 1/2, drawn from the run's stream."""

from __future__ import annotations

import torch

from gan_lightning.augment import TRANSFORMS


@TRANSFORMS.register("hflip")
def hflip(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Images (B, C, H, W), each mirrored left-right with probability 1/2."""
    mirror = torch.rand(x.shape[0], generator=rng, device=rng.device).to(x.device) < 0.5  # (B,)
    return torch.where(mirror.view(-1, 1, 1, 1), x.flip(3), x)
