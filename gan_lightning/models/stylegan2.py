"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") as `--model stylegan2`:
G and D as NVlabs' stylegan2-ada-pytorch `training/networks.py` builds them, in plain PyTorch (layers in
`stylegan2_layers.py`). G: the mapping network (z normalised, a conditional G's label embedding concatenated,
FC layers at learning-rate multiplier 0.01, the tracked W average and truncation in W) and the 'skip' synthesis
network (a learned 4x4 constant, modulated/demodulated 3x3 convolutions with [1, 3, 3, 1] FIR upsampling, noise
inputs, one ToRGB per resolution summed into the upsampled image). D: 'resnet' (default), 'orig' (the reference's
cifar configuration) or 'skip' blocks with FIR downsampling, then the epilogue: minibatch standard deviation,
a 3x3 conv and an FC layer.

Fitted to the package's contracts:
- G takes the latent space's input (B, latent_dim) whose last `num_classes` columns are one-hot labels; every other
  column is z (InfoGAN's codes included), so z_dim = latent_dim - num_classes.
- G's images are tanh of the reference's synthesis output, in [-1, 1] as every generator of the package gives (the
  reference's G is unbounded and clamps only when it writes images); `synthesis()` is the reference's output, as
  path length needs. A clamp would not do: a hard one gives out-of-range pixels no gradient, and a straight-through
  one never pulls an out-of-range background back, so it can drift without bound.
- D's `body` is everything up to and including the epilogue's FC layer (B, C4), its `head` the epilogue's `out`
  layer to one logit: the reference's unconditional D. A conditional run gets the package's projection head on
  the body's features instead of the reference's, which maps the labels through a mapping network of its own and
  projects `out`'s C4-dimensional output on it: this D builds no such mapping network.
- Randomness (noise inputs, style mixing) only from the `rng` passed in; without one the noise is the constant
  buffers (the reference's noise_mode 'const') and no style mixing happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option
from gan_lightning.models.base import Discriminator
from gan_lightning.models.cbn import split_input
from gan_lightning.models.registry import MODELS, WIDTHS, describe
from gan_lightning.models.stylegan2_discriminator import ARCHITECTURES, StyleGAN2Discriminator
from gan_lightning.models.stylegan2_layers import (
    FullyConnectedLayer,
    SynthesisLayer,
    ToRGBLayer,
    channels_at,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

Tensor = torch.Tensor
IMAGE_SIZES = tuple(2**i for i in range(3, 11))  # 8 ... 1024


class MappingNetwork(nn.Module):
    """z (and an embedded label) -> w, broadcast to `num_ws` copies; tracks the average w for truncation."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = w_dim if c_dim else 0
        features = [z_dim + embed_features] + [w_dim] * num_layers
        if c_dim:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Tensor,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = True,
    ) -> Tensor:
        """z (B, z_dim), c (B, c_dim) or None -> ws (B, num_ws, w_dim); w_avg moves in training mode."""
        parts = []
        if self.z_dim:
            parts.append(normalize_2nd_moment(z.float()))  # (B, z_dim)
        if self.c_dim:
            parts.append(normalize_2nd_moment(self.embed(c.float())))  # (B, w_dim)
        x = torch.cat(parts, dim=1)  # (B, z_dim + embed)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)  # (B, w_dim)
        if self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # (B, num_ws, w_dim)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            head = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)  # (B, cutoff, w_dim): toward the average w
            ws = torch.cat([head, ws[:, cutoff:]], dim=1)  # (B, num_ws, w_dim)
        return ws


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' synthesis network: (the 4x4 constant, or 2x upsampling conv0), conv1, ToRGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", setup_filter(), persistent=False)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, rng: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Features (B, in, r/2, r/2) (None at 4x4), image so far (B, C, r/2, r/2) (None at 4x4) and this block's ws
        (B, num_conv + 1, w_dim) -> features (B, out, r, r) and image (B, C, r, r)."""
        w = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)  # (B, out, 4, 4)
        else:
            x = self.conv0(x, next(w), rng)  # (B, out, r, r)
        x = self.conv1(x, next(w), rng)  # (B, out, r, r)
        y = self.torgb(x, next(w))  # (B, C, r, r)
        img = y if img is None else upsample2d(img, self.resample_filter) + y  # (B, C, r, r)
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, C, S, S): a block per resolution from 4 up to S."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        self.num_ws = 1  # the last ToRGB's
        for res in self.block_resolutions:
            c_in = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            c_out = channels_at(res, channel_base, channel_max)
            block = SynthesisBlock(c_in, c_out, w_dim, res, img_channels, conv_clamp)
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv

    def forward(self, ws: Tensor, rng: torch.Generator | None = None) -> Tensor:
        """ws (B, num_ws, w_dim) -> images (B, C, S, S), unclamped; each ToRGB reads the w of the next conv."""
        x = img = None
        index = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, index, block.num_conv + 1).float(), rng)  # (B, C, res, res)
            index += block.num_conv
        return img


class StyleGAN2Generator(nn.Module):
    """StyleGAN2's G: mapping network then synthesis network; inputs (B, latent_dim), last c_dim columns one-hot."""

    takes_rng = True  # the training step passes its seeded torch.Generator as `rng`
    truncates_in_w = True  # sampling passes `truncation_psi` instead of truncating z

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        w_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 32768,
        channel_max: int = 512,
        style_mixing: float = 0.9,
        conv_clamp: float | None = None,
        mixing_latent: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.image_shape = (img_channels, img_resolution, img_resolution)
        self.style_mixing = style_mixing
        # style mixing's second z: `mixing_latent(z, rng)`, the run's (its noise prior, z's InfoGAN codes kept),
        # else N(0, I) as the reference's
        self.mixing_latent = mixing_latent
        # `mapping(z, c, truncation_psi, truncation_cutoff)` and `synthesis(ws, rng)` are the two networks themselves
        # (path length differentiates between them), named as the reference's, whose state dicts map by name.
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, mapping_layers)

    def split(self, inputs: Tensor) -> tuple[Tensor, Tensor | None]:
        """(z (B, z_dim), one-hot labels (B, c_dim) or None) of generator inputs (B, latent_dim)."""
        return split_input(inputs, self.c_dim)

    def mix_styles(self, ws: Tensor, z: Tensor, c: Tensor | None, rng: torch.Generator) -> Tensor:
        """The reference's `StyleGAN2Loss.run_G` style mixing: with probability `style_mixing`, the ws from a random
        cutoff in [1, num_ws) on come from a second z; drawn from `rng` without a host sync."""
        device = rng.device
        cutoff = torch.randint(1, self.num_ws, (), generator=rng, device=device)
        mixed = torch.rand((), generator=rng, device=device) < self.style_mixing
        cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, self.num_ws)).to(ws.device)
        if self.mixing_latent is None:
            z2 = torch.randn(z.shape, generator=rng, device=device).to(z.device)  # (B, z_dim)
        else:
            z2 = self.mixing_latent(z, rng)  # (B, z_dim)
        ws2 = self.mapping(z2, c, update_w_avg=False)  # (B, num_ws, w_dim)
        second = torch.arange(self.num_ws, device=ws.device) >= cutoff  # (num_ws,)
        return torch.where(second[None, :, None], ws2, ws)  # (B, num_ws, w_dim)

    def forward(
        self,
        inputs: Tensor,
        rng: torch.Generator | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> Tensor:
        """Inputs (B, latent_dim) whose last c_dim columns are one-hot labels -> images (B, C, H, W) in [-1, 1].

        Without `rng`: the constant noise inputs (deterministic, the reference generate.py's default). With `rng`:
        random noise from it, and in training mode style mixing with probability `style_mixing`.
        """
        z, c = self.split(inputs)  # (B, z_dim), (B, c_dim) or None
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)  # (B, num_ws, w_dim)
        if rng is not None and self.training and self.style_mixing > 0:
            ws = self.mix_styles(ws, z, c, rng)  # (B, num_ws, w_dim)
        return torch.tanh(self.synthesis(ws, rng))  # (B, C, H, W) in [-1, 1]


def _fraction(value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"--style-mixing is a probability in [0, 1], got {value}")


# fmt: off
OPTIONS = (
    *WIDTHS,
    Option("w_dim", 512, "stylegan2: width of the intermediate latent W (and of the mapping network's layers)",
           positive=True, resume="refuse"),
    Option("mapping_layers", 8, "stylegan2: FC layers of the mapping network z -> w (the reference's cifar: 2)",
           positive=True, resume="refuse"),
    Option("channel_base", 32768, "stylegan2: feature maps at resolution r are min(channel_base // r, ngf) in G and "
           "min(channel_base // r, ndf) in D", positive=True, resume="refuse"),
    Option("mbstd_group", 4, "stylegan2: samples per minibatch-standard-deviation group in D (the reference's cifar: "
           "32; a batch it does not divide uses the largest group size below that does)", positive=True,
           resume="refuse"),
    Option("mbstd_channels", 1, "stylegan2: feature maps the minibatch standard deviation adds in D (0: none)",
           minimum=0, type=int, resume="refuse"),
    Option("d_architecture", "resnet", "stylegan2: D blocks: resnet (residual), orig (plain, the reference's "
           "cifar) or skip (the image read again at every resolution)", choices=ARCHITECTURES, resume="refuse"),
    Option("style_mixing", 0.9, "stylegan2: probability that a training batch mixes the styles of two z at a "
           "random layer (the reference's cifar: 0)", minimum=0, check=_fraction),
    Option("conv_clamp", None, "stylegan2: clamp every convolution's output to +-X (the reference's mixed-precision "
           "configs: 256)", type=float, positive=True, resume="refuse", default_text="no clamping"),
)
# fmt: on


@MODELS.register("stylegan2")
@describe(options=OPTIONS, image_sizes=IMAGE_SIZES)
def stylegan2(
    *,
    latent_dim: int,
    channels: int,
    image_size: int,
    num_classes: int = 0,
    ngf: int = 64,
    ndf: int = 64,
    w_dim: int = 512,
    mapping_layers: int = 8,
    channel_base: int = 32768,
    mbstd_group: int = 4,
    mbstd_channels: int = 1,
    d_architecture: str = "resnet",
    style_mixing: float = 0.9,
    conv_clamp: float | None = None,
    mixing_latent: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    **_: object,
) -> tuple[nn.Module, Discriminator]:
    """StyleGAN2's G and D; ngf and ndf are their channel_max. At the reference's cifar configuration (3x32x32,
    z = w = 512, channel_base 32768, channel_max 512, 2 mapping layers, D 'orig', mbstd group 32): G 19,947,539
    parameters unconditional (20,215,315 with 10 classes), D 20,720,641 (the reference's counts)."""
    if image_size not in IMAGE_SIZES:
        raise ConfigError(f"stylegan2 builds powers of two from 8 to 1024 px; got image_size={image_size} (pad "
                          "28 px data to 32)")  # fmt: skip
    if ngf < 1 or ndf < 1:
        raise ConfigError(f"stylegan2 needs ngf >= 1 and ndf >= 1 (got ngf={ngf}, ndf={ndf})")
    if channel_base < image_size:
        raise ConfigError(f"--channel-base {channel_base} leaves no feature maps at {image_size} px "
                          f"(channel_base // {image_size} = 0); use at least {image_size}")  # fmt: skip
    z_dim = latent_dim - num_classes
    if z_dim < 1:
        raise ConfigError(f"stylegan2 needs noise columns beside the {num_classes} labels; got latent_dim={latent_dim}")
    c4 = channels_at(4, channel_base, ndf)
    if mbstd_channels and c4 % mbstd_channels:
        raise ConfigError(f"--mbstd-channels {mbstd_channels} must divide D's {c4} feature maps at 4x4")
    G = StyleGAN2Generator(z_dim, num_classes, image_size, channels, w_dim, mapping_layers, channel_base, ngf,
                           style_mixing, conv_clamp, mixing_latent)  # fmt: skip
    D = StyleGAN2Discriminator(image_size, channels, d_architecture, channel_base, ndf, mbstd_group, mbstd_channels,
                               conv_clamp)  # fmt: skip
    return G, D
