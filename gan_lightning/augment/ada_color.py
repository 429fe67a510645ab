"""The colour ops of StyleGAN2-ADA's pipeline (`pipeline.py`), as NVlabs stylegan2-ada-pytorch
`training/augment.py` draws them: brightness, contrast, lumaflip, hue, saturation. Each returns its factor of the
image's 4x4 homogeneous colour matrix (RGB in -> RGB out); the pipe composes them and applies the product once.
Hue and saturation rotate and scale around the luma axis (1, 1, 1) / sqrt(3): they do not exist for greyscale
images, and draw nothing there, as in the reference."""

from __future__ import annotations

import math

import torch

from gan_lightning.augment.pipeline import ColorOp, Draws, pipeline_op
from gan_lightning.augment.resample import matrix
from gan_lightning.core.options import Option

Tensor = torch.Tensor


def luma_axis(device: torch.device) -> Tensor:
    """The unit luma axis (4,) of homogeneous RGB colours."""
    return (torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(3)).to(device, torch.float32)


def translate3d(t: Tensor) -> Tensor:
    """Homogeneous colour offsets (n, 4, 4) adding `t` (n,) to every channel."""
    return matrix((1, 0, 0, t), (0, 1, 0, t), (0, 0, 1, t), (0, 0, 0, 1), like=t)


def scale3d(s: Tensor) -> Tensor:
    """Homogeneous colour scalings (n, 4, 4) multiplying every channel by `s` (n,)."""
    return matrix((s, 0, 0, 0), (0, s, 0, 0), (0, 0, s, 0), (0, 0, 0, 1), like=s)


def rotate3d(v: Tensor, theta: Tensor) -> Tensor:
    """Homogeneous colour rotations (n, 4, 4) by `theta` (n,) radians around the unit axis `v` (4,)."""
    vx, vy, vz = v[0], v[1], v[2]
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return matrix((vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0),
                  (vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0),
                  (vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0),
                  (0, 0, 0, 1), like=theta)  # fmt: skip


@pipeline_op("brightness")
class Brightness(ColorOp):
    """Add N(0, brightness_std^2) to every channel."""

    positions = (0.0,)
    params = (Option("brightness_std", 0.2, "standard deviation of brightness", minimum=0),)

    def matrix(self, draws: Draws, channels: int) -> Tensor | None:
        """Its factor (n, 4, 4) of each image's colour matrix."""
        b = draws.randn() * self.brightness_std
        b = torch.where(draws.hit(self.multiplier), b, torch.zeros_like(b))
        return translate3d(b)


@pipeline_op("contrast")
class Contrast(ColorOp):
    """Scale every channel by 2^N(0, contrast_std^2) (about 0, the middle of [-1, 1])."""

    positions = (1.0,)
    params = (Option("contrast_std", 0.5, "log2 standard deviation of contrast", minimum=0),)

    def matrix(self, draws: Draws, channels: int) -> Tensor | None:
        """Its factor (n, 4, 4) of each image's colour matrix."""
        c = torch.exp2(draws.randn() * self.contrast_std)
        c = torch.where(draws.hit(self.multiplier), c, torch.ones_like(c))
        return scale3d(c)


@pipeline_op("lumaflip")
class LumaFlip(ColorOp):
    """Reflect colours through the plane orthogonal to the luma axis: i in {0, 1} uniform (Householder I - 2i vv')."""

    positions = (2.0,)

    def matrix(self, draws: Draws, channels: int) -> Tensor | None:
        """Its factor (n, 4, 4) of each image's colour matrix."""
        v = luma_axis(draws.device)
        i = torch.floor(draws.rand(1, 1) * 2)  # (n, 1, 1)
        i = torch.where(draws.hit(self.multiplier, 1, 1), i, torch.zeros_like(i))
        return torch.eye(4, device=draws.device) - 2 * v.outer(v) * i


@pipeline_op("hue")
class Hue(ColorOp):
    """Rotate colours around the luma axis by a uniform angle up to `hue_max` x 180 degrees either way."""

    positions = (3.0,)
    params = (Option("hue_max", 1.0, "range of hue rotation, 1 = full circle", minimum=0),)

    def matrix(self, draws: Draws, channels: int) -> Tensor | None:
        """Its factor (n, 4, 4) of each image's colour matrix; None for greyscale."""
        if channels == 1:
            return None
        theta = (draws.rand() * 2 - 1) * math.pi * self.hue_max
        theta = torch.where(draws.hit(self.multiplier), theta, torch.zeros_like(theta))
        return rotate3d(luma_axis(draws.device), theta)


@pipeline_op("saturation")
class Saturation(ColorOp):
    """Scale the colours' distance from the luma axis by 2^N(0, saturation_std^2)."""

    positions = (4.0,)
    params = (Option("saturation_std", 1.0, "log2 standard deviation of saturation", minimum=0),)

    def matrix(self, draws: Draws, channels: int) -> Tensor | None:
        """Its factor (n, 4, 4) of each image's colour matrix; None for greyscale."""
        if channels == 1:
            return None
        v = luma_axis(draws.device)
        s = torch.exp2(draws.randn(1, 1) * self.saturation_std)  # (n, 1, 1)
        s = torch.where(draws.hit(self.multiplier, 1, 1), s, torch.ones_like(s))
        return v.outer(v) + (torch.eye(4, device=draws.device) - v.outer(v)) * s
