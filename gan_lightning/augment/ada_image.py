"""The image-space ops of StyleGAN2-ADA's pipeline (`pipeline.py`), as NVlabs stylegan2-ada-pytorch
`training/augment.py` draws them, applied after the geometric and colour stages: imgfilter (random gains of four
frequency bands), noise (additive Gaussian RGB noise) and cutout (a zeroed rectangle)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gan_lightning.augment.pipeline import Draws, ImageOp, pipeline_op
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option

Tensor = torch.Tensor

# Daubechies symlet-2 low-pass decomposition filter (as listed in the reference's `wavelets`)
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)


def filter_bank() -> Tensor:
    """The reference's bank of 4 band-pass filters (4, 43), low to high frequencies, built from sym2: band 0 is
    the repeated low-pass, band i the high-pass at octave i; they sum to the identity."""
    lo = np.asarray(SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)  # H(-z)
    lo2 = np.convolve(lo, lo[::-1]) / 2  # H(z) H(z^-1) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(4, 1)
    for i in range(1, bank.shape[0]):
        bank = np.dstack([bank, np.zeros_like(bank)]).reshape(bank.shape[0], -1)[:, :-1]  # upsample by 2
        bank = np.stack([np.convolve(row, lo2) for row in bank])
        start = (bank.shape[1] - hi2.size) // 2
        bank[i, start : start + hi2.size] += hi2
    return torch.as_tensor(bank, dtype=torch.float32)


def _check_bands(bands: tuple[float, ...]) -> None:
    if len(bands) != 4 or not all(b >= 0 for b in bands):
        raise ConfigError(f"imgfilter_bands: four probability multipliers >= 0 (low to high frequencies), got {bands}")


@pipeline_op("imgfilter")
class ImageFilter(ImageOp):
    """Amplify each of four frequency bands by 2^N(0, imgfilter_std^2), each with probability p x multiplier x its
    band's multiplier, renormalised to keep an expected 1/f image's power; the combined filter is applied once."""

    positions = (0.0,)
    params = (
        Option("imgfilter_bands", (1.0, 1.0, 1.0, 1.0), "probability multipliers of the four frequency bands",
               check=_check_bands),
        Option("imgfilter_std", 1.0, "log2 standard deviation of image-space filter amplification", minimum=0),
    )  # fmt: skip

    def __init__(self, **strengths: float) -> None:
        super().__init__(**strengths)
        self.imgfilter_bands = tuple(float(b) for b in self.imgfilter_bands)
        self.register_buffer("bank", filter_bank(), persistent=False)

    def apply(self, x: Tensor, draws: Draws) -> Tensor:
        """Images (B, C, H, W) filtered where any band was hit."""
        b, c, h, w = x.shape
        bands, taps = self.bank.shape
        pad = taps // 2
        if min(h, w) <= pad:
            raise ConfigError(f"imgfilter needs images larger than {pad} px (its {taps}-tap filter reflects at the "
                              f"borders), got {h}x{w}; drop imgfilter from --augpipe")  # fmt: skip
        power = torch.tensor([10.0, 1.0, 1.0, 1.0], dtype=torch.float64).div(13).to(x.device, torch.float32)  # 1/f
        gain = torch.ones(b, bands, device=x.device)
        hit_any = torch.zeros(b, dtype=torch.bool, device=x.device)
        for i, band in enumerate(self.imgfilter_bands):
            t_i = torch.exp2(draws.randn() * self.imgfilter_std)
            hit = draws.rand() < self.multiplier * draws.p * band
            t = torch.ones(b, bands, device=x.device)
            t[:, i] = torch.where(hit, t_i, torch.ones_like(t_i))
            t = t / (power * t.square()).sum(dim=-1, keepdim=True).sqrt()  # (B, 4): an expected image's power kept
            gain = gain * t
            hit_any = hit_any | hit
        kernel = (gain @ self.bank).unsqueeze(1).repeat(1, c, 1).reshape(b * c, 1, taps).to(x.dtype)  # (B*C, 1, T)
        y = F.pad(x.reshape(1, b * c, h, w), [pad] * 4, mode="reflect")  # (1, B*C, H+T-1, W+T-1)
        y = F.conv2d(y, kernel.unsqueeze(2), groups=b * c)  # (1, B*C, H+T-1, W)
        y = F.conv2d(y, kernel.unsqueeze(3), groups=b * c)  # (1, B*C, H, W)
        # an image no band hit keeps its exact pixels (the bank sums to the identity only up to rounding)
        return torch.where(hit_any.view(-1, 1, 1, 1), y.reshape(b, c, h, w), x)  # (B, C, H, W)


@pipeline_op("noise")
class Noise(ImageOp):
    """Add per-pixel N(0, sigma^2) noise, sigma = |N(0, noise_std^2)| per image."""

    positions = (1.0,)
    params = (Option("noise_std", 0.1, "standard deviation of additive RGB noise", minimum=0),)

    def apply(self, x: Tensor, draws: Draws) -> Tensor:
        """Images (B, C, H, W) with noise where hit."""
        sigma = draws.randn(1, 1, 1).abs() * self.noise_std  # (B, 1, 1, 1)
        sigma = torch.where(draws.hit(self.multiplier, 1, 1, 1), sigma, torch.zeros_like(sigma))
        return x + draws.randn(*x.shape[1:]).to(x.dtype) * sigma.to(x.dtype)  # (B, C, H, W)


@pipeline_op("cutout")
class Cutout(ImageOp):
    """Zero a rectangle of `cutout_size` x the image size centred uniformly anywhere (clipped at the borders)."""

    positions = (2.0,)
    params = (Option("cutout_size", 0.5, "size of the cutout rectangle, relative to the image size", minimum=0),)

    def apply(self, x: Tensor, draws: Draws) -> Tensor:
        """Images (B, C, H, W) with the rectangle zeroed where hit."""
        _, _, h, w = x.shape
        size = torch.full((draws.n, 2, 1, 1, 1), self.cutout_size, device=x.device)
        size = torch.where(draws.hit(self.multiplier, 1, 1, 1, 1), size, torch.zeros_like(size))  # (B, 2, 1, 1, 1)
        center = draws.rand(2, 1, 1, 1)  # (B, 2, 1, 1, 1): (x, y) in [0, 1)
        coord_x = torch.arange(w, device=x.device).reshape(1, 1, 1, -1)
        coord_y = torch.arange(h, device=x.device).reshape(1, 1, -1, 1)
        outside_x = ((coord_x + 0.5) / w - center[:, 0]).abs() >= size[:, 0] / 2  # (B, 1, 1, W)
        outside_y = ((coord_y + 0.5) / h - center[:, 1]).abs() >= size[:, 1] / 2  # (B, 1, H, 1)
        return x * (outside_x | outside_y).to(x.dtype)  # (B, C, H, W)
