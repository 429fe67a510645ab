"""The layers of R3GAN's networks (Huang et al. 2024, brownvc/R3GAN `R3GAN/Networks.py`, `Resamplers.py`,
`FusedOperators.py`), in plain PyTorch: the MSR initialisation, the biased leaky ReLU, the grouped-convolution
residual block with its fix-up initialisation, the interpolative resamplers and the generative and discriminative
bases. `models/r3gan.py` assembles them into the registered pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor

SLOPE = 0.2  # the reference's BiasedActivation is a leaky ReLU of slope 0.2
ACTIVATION_GAIN = math.sqrt(2 / (1 + SLOPE**2))  # He's gain for that leaky ReLU (BiasedActivation.Gain)
FILTER = (1, 2, 1)  # the reference's ResamplingFilter default, which every preset of its train.py keeps
# The reference zeroes each residual branch's last layer (ActivationGain=0). Here it starts at BRANCH_SCALE of its
# MSR scale instead: a block is still its shortcut at init to 1e-6 relative, but a branch's inner layers get a
# gradient from the first step, as the package's registry tests demand of every parameter, and spectral
# normalisation (--spectral-norm) does not divide 0 by 0.
BRANCH_SCALE = 1e-6


def msr_init(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Conv2d | nn.Linear:
    """The reference's MSRInitializer, in place: weights N(0, (gain / sqrt(fan_in))^2), where fan_in counts the
    inputs of one output unit (one group's channels times the kernel area for a grouped conv); bias zero."""
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(layer.weight[0].numel()))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def conv(c_in: int, c_out: int, kernel: int = 1, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    """The reference's `Convolution`: stride 1, 'same' padding, no bias, MSR-initialised."""
    layer = nn.Conv2d(c_in, c_out, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False)
    return msr_init(layer, gain)  # type: ignore[return-value]


class BiasedActivation(nn.Module):
    """leaky_relu(x + bias, 0.2) per channel, the bias starting at zero (the reference's fused bias_act, gain 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), SLOPE)  # (B, C, H, W)


class ResidualBlock(nn.Module):
    """x + compress(act(grouped(act(expand(x))))): 1x1 to `expansion` x the width, a grouped 3x3 with
    `cardinality` groups, 1x1 back; no normalisation anywhere.

    Fix-up initialisation as the reference's for L = `depth` blocks in the network and m = 3 linear layers per
    branch: the first two layers get MSR init with the leaky ReLU's gain times L^(-1/(2m-2)) = L^(-1/4), so the sum
    of L branches keeps the activations' variance, and the last layer starts at (almost) zero (`BRANCH_SCALE`).
    """

    def __init__(self, width: int, cardinality: int, expansion: int, depth: int, kernel: int = 3) -> None:
        super().__init__()
        inner, gain = width * expansion, ACTIVATION_GAIN * depth ** (-1 / 4)
        self.expand = conv(width, inner, 1, gain=gain)
        self.act1 = BiasedActivation(inner)
        self.grouped = conv(inner, inner, kernel, groups=cardinality, gain=gain)
        self.act2 = BiasedActivation(inner)
        self.compress = conv(inner, width, 1, gain=BRANCH_SCALE)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        y = self.act1(self.expand(x))  # (B, eC, H, W)
        y = self.act2(self.grouped(y))  # (B, eC, H, W)
        return x + self.compress(y)  # (B, C, H, W)


def lowpass_kernel(taps: tuple[int, ...] = FILTER) -> Tensor:
    """The reference's interpolative kernel (CreateLowpassKernel, Inplace=False): `taps` convolved with [1, 1],
    its outer product with itself, normalised to sum 1; (1, 2, 1) gives [1, 3, 3, 1]^T [1, 3, 3, 1] / 64."""
    k = torch.tensor((0, *taps), dtype=torch.float64) + torch.tensor((*taps, 0), dtype=torch.float64)
    k2 = k[:, None] * k[None, :]
    return (k2 / k2.sum()).float()


class Upsample(nn.Module):
    """2x interpolative upsampling (the reference's InterpolativeUpsampler, upfirdn2d.upsample2d): zeros inserted,
    the low-pass kernel times 4 applied per channel, zero padding outside the image."""

    def __init__(self, taps: tuple[int, ...] = FILTER) -> None:
        super().__init__()
        self.register_buffer("kernel", 4 * lowpass_kernel(taps), persistent=False)
        self.padding = len(taps) // 2

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W)."""
        k = self.kernel.to(x.dtype).expand(x.shape[1], 1, *self.kernel.shape)  # (C, 1, k, k)
        return F.conv_transpose2d(x, k, stride=2, padding=self.padding, groups=x.shape[1])  # (B, C, 2H, 2W)


class Downsample(nn.Module):
    """2x interpolative downsampling (the reference's InterpolativeDownsampler, upfirdn2d.downsample2d): the
    low-pass kernel per channel at stride 2, zero padding outside the image."""

    def __init__(self, taps: tuple[int, ...] = FILTER) -> None:
        super().__init__()
        self.register_buffer("kernel", lowpass_kernel(taps), persistent=False)
        self.padding = len(taps) // 2

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H/2, W/2)."""
        k = self.kernel.to(x.dtype).expand(x.shape[1], 1, *self.kernel.shape)  # (C, 1, k, k)
        return F.conv2d(x, k, stride=2, padding=self.padding, groups=x.shape[1])  # (B, C, H/2, W/2)


class GenerativeBasis(nn.Module):
    """A learned (C, 4, 4) basis, N(0, 1), scaled per channel by a linear map of the input vector."""

    def __init__(self, in_features: int, width: int) -> None:
        super().__init__()
        self.basis = nn.Parameter(torch.randn(width, 4, 4))
        self.linear = msr_init(nn.Linear(in_features, width, bias=False))

    def forward(self, z: Tensor) -> Tensor:
        """(B, in_features) -> (B, C, 4, 4)."""
        scale = self.linear(z).view(z.shape[0], -1, 1, 1)  # (B, C, 1, 1)
        return self.basis.unsqueeze(0) * scale  # (B, C, 4, 4)


class DiscriminativeBasis(nn.Module):
    """A depthwise 4x4 convolution without padding: a (B, C, 4, 4) map to one feature per channel."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.basis = msr_init(nn.Conv2d(width, width, 4, groups=width, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, 4, 4) -> (B, C)."""
        return self.basis(x).flatten(1)  # (B, C)
