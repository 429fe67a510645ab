"""Resampling an image batch through one inverse 2D transform per image, as StyleGAN2-ADA's `AugmentPipe` executes
its geometric augmentations (NVlabs stylegan2-ada-pytorch `training/augment.py`): reflect-pad by the margin the
transformed corners need, 2x upsample with the sym6 wavelet's low-pass filter, bilinear sampling, low-pass 2x
downsample and crop. The padding keeps every sample inside a mirrored copy of the image, so a transformed image
fills its frame instead of showing black corners; the wavelet pair makes the round trip of an untransformed image
the identity up to rounding and keeps rotations and fractional shifts from aliasing. Images whose transform only
permutes pixels (flips, quarter turns, integer shifts) can be moved exactly instead (`blit`).

Everything here is differentiable w.r.t. the image to any order: the bilinear sampling is four gathers weighted by
constants (torch's grid_sample has no double backward, which R1 through the augmentation needs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# Daubechies symlet-6 low-pass decomposition filter (as listed in the reference's `wavelets`)
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633, 0.4910559419267466,
        0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
        0.0017677118642428036, -0.007800708325034148)  # fmt: skip


def lowpass_filter() -> Tensor:
    """The geometric ops' separable up/downsampling filter (12,), normalised to unit DC gain, float32."""
    f = torch.tensor(SYM6, dtype=torch.float32)
    return f / f.sum()


def matrix(*rows: tuple[Tensor | float, ...], like: Tensor) -> Tensor:
    """Per-image matrices (*like.shape, R, C) from rows whose entries are tensors shaped like `like` or numbers."""
    entries = [e if isinstance(e, Tensor) else torch.full_like(like, e) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(*like.shape, len(rows), -1)


def constant(rows: list[list[float]], device: torch.device) -> Tensor:
    """One float32 matrix (R, C) on `device`."""
    return torch.tensor(rows, dtype=torch.float32, device=device)


def translate2d(tx: Tensor | float, ty: Tensor | float, like: Tensor) -> Tensor:
    """Homogeneous 2D translations (B, 3, 3)."""
    return matrix((1, 0, tx), (0, 1, ty), (0, 0, 1), like=like)


def scale2d(sx: Tensor | float, sy: Tensor | float, like: Tensor) -> Tensor:
    """Homogeneous 2D scalings (B, 3, 3)."""
    return matrix((sx, 0, 0), (0, sy, 0), (0, 0, 1), like=like)


def rotate2d(theta: Tensor) -> Tensor:
    """Homogeneous 2D rotations (B, 3, 3) by `theta` radians (x right, y down: clockwise on screen)."""
    return matrix((theta.cos(), (-theta).sin(), 0), (theta.sin(), theta.cos(), 0), (0, 0, 1), like=theta)


def translate2d_inv(tx: Tensor | float, ty: Tensor | float, like: Tensor) -> Tensor:
    """The inverses (B, 3, 3) of translations by (tx, ty)."""
    return translate2d(-tx, -ty, like)


def scale2d_inv(sx: Tensor | float, sy: Tensor | float, like: Tensor) -> Tensor:
    """The inverses (B, 3, 3) of scalings by (sx, sy)."""
    return scale2d(1 / sx, 1 / sy, like)


def rotate2d_inv(theta: Tensor) -> Tensor:
    """The inverses (B, 3, 3) of rotations by `theta`."""
    return rotate2d(-theta)


def upsample2x(x: Tensor, f: Tensor) -> Tensor:
    """Images (B, C, H, W) -> (B, C, 2H, 2W): zeros inserted, then the separable filter `f` (K taps, K a multiple
    of 4) at gain 4, as the reference's `upfirdn2d.upsample2d`; computed per output phase, so the inserted zeros
    cost nothing."""
    b, c, h, w = x.shape
    taps = (f * 2).flip(0).to(x.dtype)  # flipped: a convolution; x2 per axis keeps the mean after zero insertion
    x = _upsample_width(x.reshape(b * c, 1, h, w), taps)  # (B*C, 1, H, 2W)
    x = _upsample_width(x.transpose(2, 3), taps).transpose(2, 3)  # (B*C, 1, 2H, 2W)
    return x.reshape(b, c, 2 * h, 2 * w)  # (B, C, 2H, 2W)


def _upsample_width(x: Tensor, taps: Tensor) -> Tensor:
    """(N, 1, H, W) -> (N, 1, H, 2W): output 2q reads the even taps, 2q + 1 the odd ones, of the zero-inserted input
    padded by K/2 before (the reference's upsample padding)."""
    n, _, h, w = x.shape
    half = taps.numel() // 2
    x = F.pad(x, [half // 2, half // 2])  # (N, 1, H, W + K/2)
    even = F.conv2d(x[..., : w + half - 1], taps[0::2].view(1, 1, 1, half))  # (N, 1, H, W)
    odd = F.conv2d(x[..., 1:], taps[1::2].view(1, 1, 1, half))  # (N, 1, H, W)
    return torch.stack([even, odd], dim=-1).reshape(n, 1, h, 2 * w)  # (N, 1, H, 2W)


def downsample2x(x: Tensor, f: Tensor, crop: int) -> Tensor:
    """Images (B, C, H, W) -> (B, C, (H - 2 crop) / 2, (W - 2 crop) / 2): correlation with `f`, every second
    sample, `crop` input pixels dropped at each border (the reference's `upfirdn2d.downsample2d`)."""
    b, c, h, w = x.shape
    k = f.numel()
    x = F.pad(x.reshape(b * c, 1, h, w), [(k - 1) // 2 - crop, (k - 2) // 2 - crop] * 2)  # negative: a crop
    taps = f.to(x.dtype)
    x = F.conv2d(x, taps.view(1, 1, 1, k), stride=(1, 2))  # (B*C, 1, H - 1 - 2 crop, W/2 - crop)
    x = F.conv2d(x, taps.view(1, 1, k, 1), stride=(2, 1))  # (B*C, 1, H/2 - crop, W/2 - crop)
    return x.reshape(b, c, x.shape[-2], x.shape[-1])  # (B, C, H/2 - crop, W/2 - crop)


def bilinear_sample(x: Tensor, grid: Tensor) -> Tensor:
    """`F.grid_sample(x, grid)` (bilinear, zeros outside, align_corners=False) as gathers: twice differentiable.

    x (B, C, H, W), grid (B, Ho, Wo, 2) of (x, y) in [-1, 1] -> (B, C, Ho, Wo)."""
    b, c, h, w = x.shape
    ix = ((grid[..., 0] + 1) * w - 1) / 2  # (B, Ho, Wo): input pixel coordinates, as grid_sample unnormalises
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    flat = x.reshape(b, c, h * w)
    out = torch.zeros(b, c, grid.shape[1] * grid.shape[2], dtype=x.dtype, device=x.device)  # (B, C, Ho*Wo)
    for yi, wy in ((y0, y0 + 1 - iy), (y0 + 1, iy - y0)):
        for xi, wx in ((x0, x0 + 1 - ix), (x0 + 1, ix - x0)):
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)  # corners outside read zero
            index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().view(b, 1, -1).expand(b, c, -1)
            weight = (wx * wy * inside).view(b, 1, -1).to(x.dtype)  # (B, 1, Ho*Wo)
            out = out + flat.gather(2, index) * weight  # (B, C, Ho*Wo)
    return out.view(b, c, grid.shape[1], grid.shape[2])  # (B, C, Ho, Wo)


def reflect_index(i: Tensor, n: int) -> Tensor:
    """Integer positions `i` folded into [0, n) by mirroring at the end pixels (F.pad's "reflect")."""
    if n == 1:
        return torch.zeros_like(i)
    i = i.remainder(2 * (n - 1))
    return torch.where(i >= n, 2 * (n - 1) - i, i)


def blit(images: Tensor, g_inv: Tensor) -> tuple[Tensor, Tensor]:
    """Images (B, C, H, W) moved through `g_inv` as whole-pixel permutations of their reflect-padded selves, and
    (B,) whether each image's `g_inv` is one (a signed permutation mapping pixel centres onto pixel centres:
    flips, quarter turns of a square image, integer shifts); exact, with no resampling."""
    b, c, h, w = images.shape
    near = lambda v: (v - v.round()).abs() < 1e-4  # noqa: E731 -- cos(pi/2) is -4e-8 in float32
    linear = g_inv[:, :2, :2]
    permutes = near(linear).all(dim=2).all(dim=1) & (linear.round().abs().sum(dim=1) == 1).all(dim=1)  # (B,)
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device), torch.arange(w, device=images.device),
                            indexing="ij")  # fmt: skip
    centred = torch.stack([xs - (w - 1) / 2, ys - (h - 1) / 2, torch.ones_like(xs)]).view(3, -1).float()  # (3, H*W)
    source = (g_inv @ centred)[:, :2] + torch.tensor([(w - 1) / 2, (h - 1) / 2], device=images.device).view(1, 2, 1)
    permutes = permutes & near(source[:, :, 0]).all(dim=1)  # one pixel suffices once the linear part permutes
    source = source.round().long()  # (B, 2, H*W)
    index = reflect_index(source[:, 1], h) * w + reflect_index(source[:, 0], w)  # (B, H*W)
    moved = images.reshape(b, c, h * w).gather(2, index.view(b, 1, -1).expand(b, c, -1))  # (B, C, H*W)
    return moved.view(b, c, h, w), permutes


def resample(images: Tensor, g_inv: Tensor, f: Tensor, exact_blit: bool = True) -> Tensor:
    """Images (B, C, H, W) resampled through per-image inverse transforms `g_inv` (B, 3, 3) (output pixel ->
    input pixel, centred coordinates), as the reference executes them.

    An image whose `g_inv` is the identity is returned as it was (the reference's wavelet round trip reproduces it
    up to rounding), and with `exact_blit` one whose `g_inv` only permutes pixels (`blit`) is moved exactly: the
    reference resamples those too, and its sym6 filter is not symmetric, so there a mirrored or quarter-turned
    image comes out shifted by about 0.1 pixel, its finest detail filtered. A batch with nothing left to resample
    is not resampled."""
    b, c, h, w = images.shape
    device, eye = images.device, torch.eye(3, device=images.device)
    pad = f.numel() // 4
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # the margin each side needs so that every transformed corner, plus the filter's reach, lands inside the
    # padded image: one margin for the whole batch
    corners = g_inv @ constant([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device).t()  # (B, 3, 4)
    margin = corners[:, :2, :].permute(1, 0, 2).flatten(1)  # (2, B*4)
    margin = torch.cat([-margin, margin]).max(dim=1).values  # (4,): x0, y0, x1, y1
    margin = margin + constant([[pad * 2 - cx, pad * 2 - cy] * 2], device)[0]
    margin = margin.max(torch.zeros(4, device=device)).min(constant([[w - 1, h - 1] * 2], device)[0])
    touched = (g_inv != eye).flatten(1).any(dim=1)  # (B,)
    out = images
    if exact_blit:
        moved, blitted = blit(images, g_inv)
        out = torch.where(blitted.view(-1, 1, 1, 1), moved, images)  # (B, C, H, W)
        touched = touched & ~blitted
    # one host sync for all: F.pad needs the margins as numbers, as in the reference
    mx0, my0, mx1, my1, any_touched = torch.cat([margin.ceil(), touched.any().view(1)]).tolist()
    if not any_touched:
        return out
    mx0, my0, mx1, my1 = int(mx0), int(my0), int(mx1), int(my1)
    x = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")  # (B, C, H+my0+my1, W+mx0+mx1)
    like = torch.ones(b, device=device)
    g = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, like) @ g_inv
    x = upsample2x(x, f)  # (B, C, 2(H+my0+my1), 2(W+mx0+mx1))
    g = scale2d(2, 2, like) @ g @ scale2d_inv(2, 2, like)
    g = translate2d(-0.5, -0.5, like) @ g @ translate2d_inv(-0.5, -0.5, like)
    shape = [b, c, (h + pad * 2) * 2, (w + pad * 2) * 2]
    # pixel units -> affine_grid's normalised units on both sides
    g = scale2d(2 / x.shape[3], 2 / x.shape[2], like) @ g @ scale2d_inv(2 / shape[3], 2 / shape[2], like)
    grid = F.affine_grid(g[:, :2, :], shape, align_corners=False)  # (B, 2(H+2 pad), 2(W+2 pad), 2)
    x = bilinear_sample(x, grid)  # (B, C, 2(H+2 pad), 2(W+2 pad))
    x = downsample2x(x, f, crop=pad * 2)  # (B, C, H, W)
    return torch.where(touched.view(-1, 1, 1, 1), x, out)  # (B, C, H, W)
