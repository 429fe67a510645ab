"""R1 and R2 (Mescheder et al. 2018): zero-centred gradient penalties gamma/2 E||grad_x D(x)||^2 on reals (R1) and
on fakes (R2); R3GAN uses both. Lazy as StyleGAN2 applies R1: every `reg_every` D updates, scaled by it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gan_lightning.core.options import Option, Options
from gan_lightning.regularizers.base import REGULARIZERS, PhaseContext, Regularizer, Term

Tensor = torch.Tensor

REG_EVERY = Option("reg_every", 1, "lazy R1/R2: apply them every N D steps, scaled by N (StyleGAN2)", positive=True,
                   metavar="N")  # fmt: skip


def zero_centered_penalty(x: Tensor, logits: Tensor) -> Tensor:
    """E||grad_x D(x)||^2 over the batch; `x` must require grad and produce `logits`."""
    (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)  # (B, C, H, W)
    return grad.float().square().flatten(1).sum(1).mean()


def input_gradient_penalty(ctx: PhaseContext, x: Tensor, logits: Tensor, labels: Tensor | None) -> Tensor:
    """`zero_centered_penalty` of D at its input `x`, whose forward gave `logits`, in full precision."""
    if not torch.is_autocast_enabled(x.device.type):
        return zero_centered_penalty(x, logits)
    # fp16 input gradients underflow without the loss scale, and bf16 ones are coarse: the penalty gets its own
    # full-precision forward, and its backward too (with create_graph, autocast would cast the backward's ops);
    # differentiate w.r.t. an fp32 copy: G's fakes are bf16/fp16 under autocast, and so would be their gradient
    x32 = x.detach().float().requires_grad_(True)
    with torch.autocast(x.device.type, enabled=False):
        return zero_centered_penalty(x32, ctx.discriminate(x32, labels).logits)


class ZeroCentered(Regularizer):
    """gamma/2 E||grad_x D(x)||^2 at D's `side` input ("real": R1, "fake": R2), every `every` D updates."""

    side = ""

    def __init__(self, gamma: float, every: int = 1) -> None:
        super().__init__()
        Options(self.options).validate(**{self.name: gamma, "reg_every": every})
        self.gamma, self.every = float(gamma), int(every)

    @property
    def name(self) -> str:
        """The option, statistic and registry name: r1 or r2."""
        return "r1" if self.side == "real" else "r2"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ZeroCentered | None:
        """On when its gamma is positive."""
        gamma = options[cls.options[0].name]
        return cls(gamma, options["reg_every"]) if gamma else None

    def init_options(self) -> dict[str, Any]:
        """The constructor options that rebuild it."""
        return {"gamma": self.gamma, "every": self.every}

    def interval(self, phase: str) -> int:
        """`reg_every` in the D phase."""
        return self.every

    def d_term(self, ctx: PhaseContext) -> Term:
        """gamma/2 x the penalty at this phase's real (R1) or fake (R2) D input."""
        if not self.gamma:  # a gamma schedule may reach 0
            return Term(None, {})
        if self.side == "real":
            x, out, labels = ctx.real_images, ctx.real_out, ctx.real.labels
        else:
            x, out, labels = ctx.fake_images, ctx.fake_out, ctx.latents.labels
        penalty = input_gradient_penalty(ctx, x, out.logits, labels)
        return Term(self.gamma / 2 * penalty, {self.name: penalty})


@REGULARIZERS.register("r1")
class R1(ZeroCentered):
    """R1: the zero-centred penalty on reals."""

    side, input_grads = "real", ("real",)
    options = (
        Option("r1", 0.0, "R1 penalty gamma/2 E||grad D(x)||^2 on reals", minimum=0, metavar="GAMMA"),
        REG_EVERY,
    )


@REGULARIZERS.register("r2")
class R2(ZeroCentered):
    """R2: the zero-centred penalty on fakes."""

    side, input_grads = "fake", ("fake",)
    options = (
        Option("r2", 0.0, "R2 penalty gamma/2 E||grad D||^2 on fakes", minimum=0, metavar="GAMMA"),
        REG_EVERY,
    )
