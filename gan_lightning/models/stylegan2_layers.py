"""StyleGAN2's layers in plain PyTorch, as NVlabs' stylegan2-ada-pytorch computes them (`training/networks.py` with
the ops of `torch_utils/ops/`: `upfirdn2d`, `conv2d_resample`, `bias_act`, `fma`), without its custom CUDA kernels.

Equalised learning rate everywhere: weights are stored N(0, 1) (divided by the learning-rate multiplier) and scaled
at run time by lr_multiplier / sqrt(fan_in), so Adam's per-weight step is the same relative change in every layer.
Attribute names are the reference's (`weight`, `bias`, `affine`, `noise_const`, `noise_strength`), so its state
dicts map onto these modules by name; the FIR filters are non-persistent buffers, rebuilt at construction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
LRELU_GAIN = math.sqrt(2)  # bias_act's def_gain for 'lrelu': keeps the activations' second moment at 1
ACT_GAIN = {"linear": 1.0, "lrelu": LRELU_GAIN}


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at `resolution`: min(channel_base // resolution, channel_max)."""
    return min(channel_base // resolution, channel_max)


def setup_filter(taps: tuple[float, ...] = (1, 3, 3, 1)) -> Tensor:
    """The reference's `setup_filter`: a short 1-D filter as its normalised 2-D outer product (f_h, f_w)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.outer(f)  # fewer than 8 taps: the reference filters in 2-D, not separably
    return f / f.sum()


def upfirdn2d(
    x: Tensor, f: Tensor, up: int = 1, down: int = 1, padding: tuple[int, int] = (0, 0), gain: float = 1.0
) -> Tensor:
    """Upsample by zero insertion, pad (padding = (before, after), both axes; negative crops), FIR-filter with `f`
    (a true convolution, flipped), keep every `down`-th pixel: (B, C, H, W) -> (B, C, H', W')."""
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])  # (B, C, H, up, W, up)
        x = x.reshape(b, c, h * up, w * up)  # (B, C, H up, W up): each pixel followed by up - 1 zeros
    p0, p1 = padding
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])  # (B, C, H'', W'')
    x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    weight = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)  # (C, 1, f_h, f_w)
    return F.conv2d(x, weight, stride=down, groups=c)  # (B, C, H', W'): stride = filter, then keep every down-th


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x FIR upsampling (B, C, H, W) -> (B, C, 2H, 2W), the DC gain kept (`upfirdn2d.upsample2d`)."""
    fw = f.shape[-1]
    return upfirdn2d(x, f, up=2, padding=((fw + 1) // 2, (fw - 2) // 2), gain=4)  # (B, C, 2H, 2W)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x FIR downsampling (B, C, H, W) -> (B, C, H/2, W/2) (`upfirdn2d.downsample2d`)."""
    fw = f.shape[-1]
    return upfirdn2d(x, f, down=2, padding=((fw - 1) // 2, (fw - 2) // 2))  # (B, C, H/2, W/2)


def conv2d_resample(
    x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1, padding: int = 0
) -> Tensor:
    """Convolution with optional 2x FIR up- or downsampling, padded once (the reference's `conv2d_resample` for
    the cases its networks use: correlation at up = 1, the unflipped transposed convolution at up = 2)."""
    kw = w.shape[-1]
    fw = 1 if f is None else f.shape[-1]
    p0 = p1 = padding
    if up > 1:
        p0, p1 = p0 + (fw + up - 1) // 2, p1 + (fw - up) // 2
    if down > 1:
        p0, p1 = p0 + (fw - down + 1) // 2, p1 + (fw - down) // 2
    if down > 1 and kw == 1:  # 1x1: filter and subsample first, then the cheap convolution
        return F.conv2d(upfirdn2d(x, f, down=down, padding=(p0, p1)), w)  # (B, O, H/2, W/2)
    if down > 1:  # filter, then a strided convolution
        return F.conv2d(upfirdn2d(x, f, padding=(p0, p1)), w, stride=down)  # (B, O, H/2, W/2)
    if up > 1:  # a strided transposed convolution, then the filter
        p0, p1 = p0 - (kw - 1), p1 - (kw - up)
        pt = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=up, padding=pt)  # (B, O, 2H + k - 2 - 2pt, ...)
        return upfirdn2d(x, f, padding=(p0 + pt, p1 + pt), gain=up**2)  # (B, O, 2H, 2W)
    return F.conv2d(x, w, padding=padding)  # (B, O, H, W)


def bias_act(
    x: Tensor, b: Tensor | None = None, act: str = "linear", gain: float | None = None, clamp: float | None = None
) -> Tensor:
    """Add the bias (along dim 1), apply `act` ('linear' or leaky ReLU 0.2 'lrelu'), scale by `gain` (default: the
    activation's, sqrt(2) for lrelu) and clamp to +-`clamp` (`bias_act.bias_act`'s reference implementation)."""
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    gain = ACT_GAIN[act] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Each row (B, F) scaled to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer with bias and activation; `lr_multiplier` slows it (the mapping's 0.01)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_features) -> (B, out_features)."""
        w = self.weight.to(x.dtype) * self.weight_gain  # (out, in)
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias_gain != 1 else self.bias.to(x.dtype)  # (out,)
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())  # (B, out)
        return bias_act(x.matmul(w.t()), b, act=self.activation)  # (B, out)


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution with optional 2x FIR resampling, bias, activation and output clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(), persistent=False)
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """(B, in, H, W) -> (B, out, H * up / down, W * up / down); `gain` scales the output (and the clamp)."""
        w = (self.weight * self.weight_gain).to(x.dtype)  # (out, in, k, k)
        x = conv2d_resample(x, w, self.resample_filter, self.up, self.down, self.padding)  # (B, out, H', W')
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, act=self.activation, gain=ACT_GAIN[self.activation] * gain, clamp=clamp)


def runs_in_fp16(x: Tensor) -> bool:
    """Whether a convolution of `x` computes in float16: `x` is, or autocast casts to it."""
    device = x.device.type
    autocast = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
    return x.dtype == torch.float16 or autocast


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
) -> Tensor:
    """StyleGAN2's modulated convolution (B, I, H, W) -> (B, O, H up, W up): input channels scaled by `styles`
    (B, I), one shared convolution, outputs scaled back to unit variance (demodulation), then `noise` added.

    This is the reference's `fused_modconv=False` path (scale the activations, not per-sample weights), which it
    trains with; its grouped-convolution path gives the same values. The demodulation coefficients
    1/sqrt(sum_{i,k} (w_oik s_i)^2) are computed as (s^2) @ sum_k w^2, without the (B, O, I, k, k) weight tensor.
    """
    b = x.shape[0]
    if demodulate and runs_in_fp16(x):
        # as the reference: fp16 overflows on large weights or styles; scaling each output's weights and each
        # sample's styles to a max of 1 changes nothing after demodulation, which divides any such scale out
        weight = weight * (weight[0].numel() ** -0.5 / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    x = x * styles.to(x.dtype).reshape(b, -1, 1, 1)  # (B, I, H, W)
    x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)  # (B, O, H', W')
    if demodulate:
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (B, O)
        x = x * dcoefs.to(x.dtype).reshape(b, -1, 1, 1)  # (B, O, H', W')
    if noise is not None:
        x = x + noise.to(x.dtype)  # (B, O, H', W')
    return x


class SynthesisLayer(nn.Module):
    """A modulated 3x3 conv (optionally 2x FIR-upsampling), per-pixel noise with a learned strength, bias, lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.register_buffer("resample_filter", setup_filter(), persistent=False)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)  # styles start at 1: plain convolution
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))  # the deterministic noise
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, rng: torch.Generator | None = None, gain: float = 1.0) -> Tensor:
        """(B, in, r / up, r / up) and w (B, w_dim) -> (B, out, r, r); noise from `rng`, else the constant noise."""
        styles = self.affine(w)  # (B, in)
        if rng is None:
            noise = self.noise_const * self.noise_strength  # (r, r): the reference's noise_mode 'const'
        else:
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            noise = torch.randn(shape, generator=rng, device=rng.device).to(x.device) * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise, self.up, 1, self.resample_filter)  # (B, out, r, r)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=LRELU_GAIN * gain, clamp=clamp)  # (B, out, r, r)


class ToRGBLayer(nn.Module):
    """A modulated 1x1 conv to image channels, not demodulated (the image's scale is free), plus bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """(B, in, r, r) and w (B, w_dim) -> (B, C, r, r)."""
        styles = self.affine(w) * self.weight_gain  # (B, in): the equalised-lr gain folded into the styles
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)  # (B, C, r, r)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)  # (B, C, r, r)


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation across groups of samples, averaged over channels and pixels, as
    `num_channels` extra feature maps: D sees how varied a batch is, which penalises mode collapse."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C + num_channels, H, W)."""
        n, c, h, w = x.shape
        g = min(self.group_size or n, n)
        # The reference needs B divisible by the group size; a batch that is not (a last uneven D-step chunk) uses
        # the largest group size below that divides it, rather than failing.
        g = max(d for d in range(1, g + 1) if n % d == 0)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # (G, n, F, c, H, W): sample i is in group i mod n
        y = y - y.mean(dim=0)  # (G, n, F, c, H, W)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # (n, F, c, H, W): standard deviation over each group
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)  # (n, F, 1, 1)
        y = y.repeat(g, 1, h, w)  # (B, F, H, W)
        return torch.cat([x, y], dim=1)  # (B, C + F, H, W)
