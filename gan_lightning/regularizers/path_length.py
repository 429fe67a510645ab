"""Path-length regularization (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", section
3.2), as NVlabs' stylegan2-ada-pytorch `training/loss.py` (`StyleGAN2Loss`, phase "Greg") computes it.

For a style-based G (one with `split(inputs) -> (z, c)`, `mapping(z, c)` and `synthesis(ws, rng)`, e.g. `--model
stylegan2`; its style mixing applies as in the reference's `run_G`), G phase, on the first 1/`pl_batch_shrink` of the
batch:

    y ~ N(0, I) / sqrt(H W)                                      (one random image-space direction per image)
    l_i = sqrt( mean_over_ws || d(sum G(w_i) * y_i) / d w_i ||^2 )  (the Jacobian-vector length J_w^T y)
    a <- a + pl_decay (mean_i l_i - a)                            (a running mean, a buffer)
    loss = pl_weight * mean_i (l_i - a)^2

lazily, every `pl_every` G updates with the loss times `pl_every` (StyleGAN2's G_reg_interval 4). It makes a fixed
step in W change the image by a fixed amount wherever it is taken: smoother, better-conditioned generators.

Where the reference moves a per micro-batch and per GPU, here a moves once per G update by the mean over every
micro-batch (`--accumulate`) and device (all-reduced), so all ranks hold the same a and a resumed run continues
exactly. The penalty's a is the update's starting a moved by this micro-batch's mean over the devices (the
reference: its GPU's a, already moved by earlier micro-batches, moved by its GPU's mean): the same with one micro-batch
on one device, within O(decay^2) otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, Options
from gan_lightning.regularizers.base import REGULARIZERS, PhaseContext, Regularizer, Term

Tensor = torch.Tensor


def _check_decay(decay: float) -> None:
    if not 0 < decay <= 1:
        raise ConfigError(f"--pl-decay is a fraction in (0, 1], got {decay}")


def style_based(G: nn.Module) -> bool:
    """Whether `G` exposes StyleGAN's mapping / synthesis split that path-length regularization differentiates (and
    `split`, its inputs into z and one-hot labels)."""
    return all(callable(getattr(G, name, None)) for name in ("mapping", "synthesis", "split"))


def path_lengths(images: Tensor, ws: Tensor, direction: Tensor) -> Tensor:
    """l_i = sqrt(mean over ws of ||d(sum images_i * direction_i)/d ws_i||^2), (B,); keeps the graph for G's update.

    `images` (B, C, H, W) must come from `ws` (B, num_ws, w_dim); `direction` is y, shaped like `images`.
    """
    (grads,) = torch.autograd.grad((images.float() * direction).sum(), ws, create_graph=True)  # (B, num_ws, w_dim)
    return grads.float().square().sum(2).mean(1).sqrt()  # (B,)


@REGULARIZERS.register("path_length")
class PathLength(Regularizer):
    """StyleGAN2's path-length penalty pl_weight E[(||J_w^T y|| - a)^2], G phase, every `every` updates."""

    # fmt: off
    options = (
        Option("pl_weight", 0.0, "path-length regularization (StyleGAN2) of a style-based G (--model stylegan2): "
               "weight of E[(|J_w^T y| - a)^2], e.g. 2 (StyleGAN2's)", minimum=0, metavar="WEIGHT",
               schedule="weight"),
        Option("pl_every", 4, "path-length regularization: every N G updates, scaled by N (StyleGAN2's 4)",
               positive=True, metavar="N"),
        Option("pl_decay", 0.01, "path-length regularization: the running mean a moves this fraction toward each "
               "batch's mean length", positive=True, check=_check_decay, metavar="DECAY"),
        Option("pl_batch_shrink", 2, "path-length regularization on the first 1/N of the batch (StyleGAN2's 2)",
               positive=True, metavar="N"),
    )
    # fmt: on

    def __init__(self, weight: float, every: int = 4, decay: float = 0.01, batch_shrink: int = 2) -> None:
        super().__init__()
        Options(self.options).validate(pl_weight=weight, pl_every=every, pl_decay=decay, pl_batch_shrink=batch_shrink)
        self.weight, self.every, self.decay, self.batch_shrink = float(weight), int(every), float(decay), batch_shrink
        self.register_buffer("pl_mean", torch.zeros(()))  # a: resumed with the run
        # this G update's sum of lengths and their count, over micro-batches and devices: zero between updates
        self.register_buffer("pending", torch.zeros(2), persistent=False)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PathLength | None:
        """On when `--pl-weight` is positive."""
        if not options["pl_weight"]:
            return None
        return cls(options["pl_weight"], options["pl_every"], options["pl_decay"], options["pl_batch_shrink"])

    def init_options(self) -> dict[str, Any]:
        """The constructor options that rebuild it."""
        return {"weight": self.weight, "every": self.every, "decay": self.decay, "batch_shrink": self.batch_shrink}

    def check_models(self, G: nn.Module, D: nn.Module) -> None:
        """One-line ConfigError unless G is style-based."""
        if not style_based(G):
            raise ConfigError(f"--pl-weight needs a style-based generator with mapping and synthesis networks "
                              f"(--model stylegan2); {type(G).__name__} has none: drop --pl-weight")  # fmt: skip

    def interval(self, phase: str) -> int:
        """`pl_every` in the G phase."""
        return self.every

    def g_term(self, ctx: PhaseContext) -> Term:
        """The penalty on a fresh G forward of the first 1/`batch_shrink` of the phase's latents."""
        if not self.weight:  # a schedule may reach 0
            return Term(None, {})
        G, inputs = ctx.G, ctx.latents.input
        n = max(1, inputs.shape[0] // self.batch_shrink)
        z, c = G.split(inputs[:n])  # (n, z_dim), (n, c_dim) or None
        ws = G.mapping(z, c)  # (n, num_ws, w_dim)
        if G.training and getattr(G, "style_mixing", 0) > 0:  # as the reference's run_G, which the penalty calls
            ws = G.mix_styles(ws, z, c, ctx.rng)  # (n, num_ws, w_dim)
        images = G.synthesis(ws, ctx.rng)  # (n, C, H, W)
        y = torch.randn(images.shape, generator=ctx.rng, device=ctx.rng.device).to(images.device)  # (n, C, H, W)
        lengths = path_lengths(images, ws, y / math.sqrt(images.shape[2] * images.shape[3]))  # (n,)
        # as the reference: the penalty's a is the updated mean, graph included (its gradient reaches this batch's l)
        pl_mean = self.pl_mean.lerp(self._batch_mean(lengths), self.decay)
        penalty = (lengths - pl_mean).square().mean()
        return Term(self.weight * penalty, {"pl_penalty": penalty, "pl_mean": pl_mean.detach()})

    def _batch_mean(self, lengths: Tensor) -> Tensor:
        """The mean length over every device's batch (the gradient through this device's), counted in `pending`."""
        sums = torch.stack([lengths.detach().sum(), lengths.new_tensor(len(lengths))])
        mean = lengths.mean()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)  # every rank's lengths count: all ranks then hold the same a
            mean = mean + (sums[0] / sums[1] - mean).detach()
        self.pending += sums.detach()
        return mean

    @torch.no_grad()
    def end_g_update(self, step: int) -> None:
        """After G update `step` (all its micro-batches): move a once, by the whole update's mean length (not on
        updates where the penalty was not due)."""
        count = self.pending[1]
        moved = self.pl_mean.lerp(self.pending[0] / count.clamp(min=1), self.decay)
        self.pl_mean.copy_(torch.where(count > 0, moved, self.pl_mean))  # no device sync to read the count
        self.pending.zero_()
