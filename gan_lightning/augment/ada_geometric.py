"""The geometric ops of StyleGAN2-ADA's pipeline (`pipeline.py`), as NVlabs stylegan2-ada-pytorch
`training/augment.py` draws them: pixel blitting (xflip, rotate90, xint) and general geometric transformations
(scale, rotate, aniso, xfrac). Each returns its factor of the image's inverse transform (output pixel -> input
pixel, in pixels from the image centre, x right, y down); the pipe composes them and resamples once.

These are not `TRANSFORMS`' exact-permutation xflip and rotate90 (`geometric.py`, DiffAugment's): here every
geometric op goes through the one resampling, as in the reference, so rotate90 is a resampled quarter turn (exact
up to rounding: cos(pi/2) is not 0 in float32).
"""

from __future__ import annotations

import math

import torch

from gan_lightning.augment.pipeline import Draws, GeometricOp, pipeline_op
from gan_lightning.augment.resample import rotate2d_inv, scale2d_inv, translate2d_inv
from gan_lightning.core.options import Option

Tensor = torch.Tensor


@pipeline_op("xflip")
class XFlip(GeometricOp):
    """Mirror left-right: i in {0, 1} uniform, x scaled by 1 - 2i (so half the hit images are unchanged)."""

    positions = (0.0,)

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform."""
        i = torch.floor(draws.rand() * 2)
        i = torch.where(draws.hit(self.multiplier), i, torch.zeros_like(i))
        return scale2d_inv(1 - 2 * i, 1, like=i)


@pipeline_op("rotate90")
class Rotate90(GeometricOp):
    """Rotate by i quarter turns, i in {0, 1, 2, 3} uniform."""

    positions = (1.0,)

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform."""
        i = torch.floor(draws.rand() * 4)
        i = torch.where(draws.hit(self.multiplier), i, torch.zeros_like(i))
        return rotate2d_inv(-math.pi / 2 * i)


@pipeline_op("xint")
class IntegerTranslation(GeometricOp):
    """Shift by whole pixels, up to `xint_max` of the image size in x and y, uniform."""

    positions = (2.0,)
    params = (Option("xint_max", 0.125, "range of integer translation, relative to the image size", minimum=0),)

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform."""
        t = (draws.rand(2) * 2 - 1) * self.xint_max  # (n, 2)
        t = torch.where(draws.hit(self.multiplier, 1), t, torch.zeros_like(t))
        return translate2d_inv(torch.round(t[:, 0] * size[1]), torch.round(t[:, 1] * size[0]), like=t[:, 0])


@pipeline_op("scale")
class IsotropicScaling(GeometricOp):
    """Scale by 2^N(0, scale_std^2) about the centre."""

    positions = (3.0,)
    params = (Option("scale_std", 0.2, "log2 standard deviation of isotropic scaling", minimum=0),)

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform."""
        s = torch.exp2(draws.randn() * self.scale_std)
        s = torch.where(draws.hit(self.multiplier), s, torch.ones_like(s))
        return scale2d_inv(s, s, like=s)


@pipeline_op("rotate")
class Rotation(GeometricOp):
    """Rotate by a uniform angle up to `rotate_max` x 180 degrees either way, before and again after aniso: each of
    the two with probability 1 - sqrt(1 - p x multiplier), so that an image is rotated at all with p x multiplier."""

    positions = (4.0, 6.0)  # around aniso (5): anisotropic scaling along a random axis
    params = (Option("rotate_max", 1.0, "range of arbitrary rotation, 1 = full circle", minimum=0),)

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform, pre- (position 0) or post-rotation (1)."""
        p_rot = 1 - torch.sqrt((1 - self.multiplier * draws.p).clamp(0, 1))  # P(pre or post) = p x multiplier
        theta = (draws.rand() * 2 - 1) * math.pi * self.rotate_max
        theta = torch.where(draws.rand() < p_rot, theta, torch.zeros_like(theta))
        return rotate2d_inv(-theta)


@pipeline_op("aniso")
class AnisotropicScaling(GeometricOp):
    """Scale x by s and y by 1/s, s = 2^N(0, aniso_std^2) (along a random axis when rotate surrounds it)."""

    positions = (5.0,)
    params = (Option("aniso_std", 0.2, "log2 standard deviation of anisotropic scaling", minimum=0),)

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform."""
        s = torch.exp2(draws.randn() * self.aniso_std)
        s = torch.where(draws.hit(self.multiplier), s, torch.ones_like(s))
        return scale2d_inv(s, 1 / s, like=s)


@pipeline_op("xfrac")
class FractionalTranslation(GeometricOp):
    """Shift by N(0, xfrac_std^2) of the image size in x and y (sub-pixel: resampled)."""

    positions = (7.0,)
    params = (Option("xfrac_std", 0.125, "standard deviation of fractional translation, relative to the image size",
                     minimum=0),)  # fmt: skip

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform."""
        t = draws.randn(2) * self.xfrac_std  # (n, 2)
        t = torch.where(draws.hit(self.multiplier, 1), t, torch.zeros_like(t))
        return translate2d_inv(t[:, 0] * size[1], t[:, 1] * size[0], like=t[:, 0])
