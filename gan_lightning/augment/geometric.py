"""Pixel-blitting geometric transforms of ADA (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data"): `xflip` and `rotate90`, as NVlabs' stylegan2-ada-pytorch `training/augment.py` draws them.

There, `xflip` draws i in {0, 1} per image and mirrors x when i = 1 (an x-scale of 1 - 2i), and `rotate90` draws
i in {0, 1, 2, 3} per image and rotates by i x 90 degrees; the pipeline's probability p only gates whether an image
is touched at all, which here is the policy's job (`DiffAugment(p=...)`, ADA's adaptive p). Both are exact pixel
permutations: no resampling blur, and the gradient reaches every pixel.

They are not in ADA's default policy here: with p near 1 (a plain `--diffaug xflip`) every orientation is equally
likely among D's inputs, so D cannot penalise G for mirrored or rotated images. The ADA paper (section 2.2) keeps
such transforms from leaking into G by applying them with p below about 0.8; for data whose orientation carries
meaning (digits) use them not at all.
"""

from __future__ import annotations

import torch

from gan_lightning.augment.transforms import TRANSFORMS

Tensor = torch.Tensor


def _per_image_ints(x: Tensor, rng: torch.Generator, high: int) -> Tensor:
    """One integer in [0, high) per image (B,), drawn on `rng`'s device, returned on x's device."""
    return torch.randint(0, high, (x.shape[0],), generator=rng, device=rng.device).to(x.device)


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per image: `a` where `mask` (B,) is true, else `b`; differentiable w.r.t. both."""
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


@TRANSFORMS.register("xflip")
def xflip(x: Tensor, rng: torch.Generator) -> Tensor:
    """Images (B, C, H, W), each mirrored left-right with probability 1/2 (ADA's 'xflip')."""
    mirror = _per_image_ints(x, rng, 2) == 1  # (B,): ADA's i = 1
    return _where(mirror, x.flip(3), x)  # (B, C, H, W)


@TRANSFORMS.register("rotate90")
def rotate90(x: Tensor, rng: torch.Generator) -> Tensor:
    """Square images (B, C, H, H), each rotated by k x 90 degrees, k uniform in {0, 1, 2, 3} (ADA's 'rotate90')."""
    if x.shape[-1] != x.shape[-2]:
        # a quarter turn would swap H and W: D's input shape must not depend on the draw
        raise ValueError(f"rotate90 needs square images, got {tuple(x.shape[-2:])}")
    k = _per_image_ints(x, rng, 4)  # (B,)
    # rot90 by k = a half turn when k >= 2, then a quarter turn when k is odd: two selections, not four copies.
    # torch.rot90(x, 1, (2, 3)) (= x.flip(3).transpose(2, 3)) samples output (r, c) at input (c, W-1-r), the same
    # quarter turn as ADA's rotate2d_inv(-pi/2) in its centred x-right, y-down pixel coordinates
    x = _where(k >= 2, x.flip(2, 3), x)  # (B, C, H, W)
    return _where(k % 2 == 1, x.flip(3).transpose(2, 3), x)  # (B, C, H, W)
