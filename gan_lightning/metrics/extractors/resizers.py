"""The resizes that bring images to a feature extractor's input size, by name (`RESIZES`): each takes uint8 RGB
images (B, 3, H, W) as they are saved to PNG and returns float images (B, 3, S, S) on the 0..255 scale.

Which resize feeds an extractor moves its scores (clean-fid, Parmar et al. 2022: FID 14.2 against 21.7 for one
model), so the name is part of every score's protocol. Three are the ones the field's tools use:

- `tf_bilinear`: TensorFlow 1's bilinear resize without antialiasing (torch-fidelity's port), as the FID of the
  papers and torch-fidelity's DINOv2 and CLIP extractors feed their networks;
- `pil_bicubic`: Pillow's bicubic resize of the uint8 image, its result uint8 again, as torchvision's `Resize` of a
  PIL image does it (dgm-eval's FD-DINOv2); square images (every generator's) batched on the images' device, bit
  for bit as Pillow's fixed-point code;
- `clean`: Pillow's bicubic resize per channel on float images (mode "F"), antialiased when shrinking, not
  quantised (clean-fid's `clean` mode, dgm-eval's `clean_resize`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from gan_lightning.core.registry import Registry

Tensor = torch.Tensor

# Pillow's fixed-point weights of 8-bit images (libImaging/Resample.c: PRECISION_BITS = 32 - 8 - 2)
PRECISION_BITS = 22


@dataclass(frozen=True)
class Resize:
    """A named resize: `fn(uint8 images (B, 3, H, W), size)` -> float images (B, 3, size, size) on 0..255."""

    fn: Callable[[Tensor, int], Tensor]
    description: str

    def __call__(self, images: Tensor, size: int) -> Tensor:
        """The images (B, 3, H, W) uint8 resized to (B, 3, size, size), float on 0..255."""
        return self.fn(images, size)


RESIZES: Registry[Resize] = Registry("resize")


def _bicubic(x: float) -> float:
    """Pillow's bicubic kernel (a = -0.5; torch's bicubic uses a = -0.75)."""
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=32)  # the same few sizes at every batch; callers copy them to their device
def pil_weights(in_size: int, out_size: int) -> torch.Tensor:
    """Pillow's bicubic resampling weights (out_size, in_size), float64, each row summing to one: its
    `precompute_coeffs` for the box (0, in_size), support widened by the scale when shrinking (antialiasing)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero
        hi = min(int(center + support + 0.5), in_size)
        row = [_bicubic((j - center + 0.5) / filterscale) for j in range(lo, hi)]
        total = sum(row)
        weights[i, lo:hi] = torch.tensor([w / total if total != 0.0 else w for w in row], dtype=torch.float64)
    return weights


def _fixed_point(weights: Tensor) -> Tensor:
    """Pillow's 8-bit weights: scaled by 2**22 and rounded half away from zero (kept as float64, exact)."""
    scaled = weights * (1 << PRECISION_BITS)
    return torch.where(scaled < 0, torch.ceil(scaled - 0.5), torch.floor(scaled + 0.5))


def _separable(x: Tensor, rows: Tensor, cols: Tensor, between: Callable[[Tensor], Tensor]) -> Tensor:
    """Pillow's two passes: horizontal (W) first, then vertical (H), `between` applied after each pass."""
    x = between(torch.einsum("bchw,vw->bchv", x, cols))  # (B, C, H, S)
    return between(torch.einsum("bchv,uh->bcuv", x, rows)).contiguous()  # (B, C, S, S)


def _with_pillow(images: Tensor, size: int, mode: str) -> Tensor:
    """Pillow itself, image by image and channel by channel (mode "L" or "F"), for what the batched path does not
    cover: the order of Pillow's two passes for non-square images differs between its versions."""
    from PIL import Image

    def resize(channel: Tensor) -> Tensor:
        image = Image.fromarray(channel.numpy() if mode == "L" else channel.float().numpy(), mode=mode)
        return torch.from_numpy(np.array(image.resize((size, size), Image.BICUBIC), dtype=np.float64))

    out = torch.stack([torch.stack([resize(c) for c in image]) for image in images.cpu()])  # (B, C, S, S)
    return out.to(images.device)


def _pillow_bicubic(images: Tensor, size: int, mode: str) -> Tensor:
    """Pillow's `resize((size, size), BICUBIC)` of each channel in `mode` ("L": uint8, its fixed-point weights and
    rounding after each pass; "F": float32, double sums stored as float32 after each pass), as float64 0..255:
    batched for square images (horizontal pass, then vertical), Pillow itself for others."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images.double()
    if h != w:
        return _with_pillow(images, size, mode)
    rows, cols = (pil_weights(n, size).to(images.device) for n in (h, w))
    if mode == "F":
        return _separable(images.double(), rows, cols, _as_float32)
    # uint8 values times 2**22-scale integers sum below 2**53: float64 holds mode "L" exactly
    return _separable(images.double(), _fixed_point(rows), _fixed_point(cols), _clip8)


def _as_float32(acc: Tensor) -> Tensor:
    """Mode "F" between passes: double sums stored as float32."""
    return acc.float().double()


def _clip8(acc: Tensor) -> Tensor:
    """Pillow's `clip8` between passes of mode "L": round by the half offset, shift out the fixed point, clamp."""
    return torch.floor((acc + float(1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


def pil_bicubic(images: Tensor, size: int) -> Tensor:
    """Pillow's `Image.resize((size, size), BICUBIC)` of uint8 images (B, C, H, W), bit for bit, as float64 0..255."""
    return _pillow_bicubic(images, size, "L")


def clean(images: Tensor, size: int) -> Tensor:
    """clean-fid's resize: Pillow's bicubic per channel on float32 images (mode "F"), clipped to 0..255 (batched, to
    float32 rounding: Pillow sums each pixel's taps in another order)."""
    return _pillow_bicubic(images, size, "F").float().clamp_(0, 255)


def tf_bilinear(images: Tensor, size: int) -> Tensor:
    """TensorFlow 1's bilinear resize (no antialiasing, half-pixel centres off), torch-fidelity's port."""
    x = images.float()
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)


RESIZES.register("tf_bilinear")(Resize(tf_bilinear, "TF1 bilinear resize without antialiasing (torch-fidelity's)"))
RESIZES.register("pil_bicubic")(Resize(pil_bicubic, "Pillow bicubic resize of the uint8 image, uint8 again "
                                       "(torchvision Resize on PIL images; dgm-eval's default)"))  # fmt: skip
RESIZES.register("clean")(Resize(clean, "Pillow bicubic resize per channel in float, antialiased, unquantised "
                                 "(clean-fid's clean mode)"))  # fmt: skip
