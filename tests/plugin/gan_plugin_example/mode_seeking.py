"""Mode-seeking regularization (Mao et al. 2019), a G-phase term: nearby latents should not give the same image,
weight / (E|G(z1) - G(z2)| / E|z1 - z2| + eps), with z2 a perturbation of z1 drawn from the run's noise stream."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from gan_lightning.core.options import Option
from gan_lightning.regularizers import REGULARIZERS, PhaseContext, Regularizer, Term


@REGULARIZERS.register("mode_seeking")
class ModeSeeking(Regularizer):
    """The G phase's weight / (image distance / latent distance + 1e-5), every `every` G updates."""

    options = (
        Option("mode_seeking", 0.0, "mode-seeking regularization weight (Mao et al. 2019), e.g. 0.1", minimum=0,
               metavar="WEIGHT"),
        Option("mode_seeking_every", 1, "mode seeking: apply it every N G updates, scaled by N", positive=True),
    )  # fmt: skip

    def __init__(self, weight: float, every: int = 1) -> None:
        super().__init__()
        self.weight, self.every = weight, every

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ModeSeeking | None:
        """On when its weight is positive."""
        return cls(options["mode_seeking"], options["mode_seeking_every"]) if options["mode_seeking"] else None

    def interval(self, phase: str) -> int:
        """Lazy in the G phase."""
        return self.every if phase == "g" else 1

    def g_term(self, ctx: PhaseContext) -> Term:
        """G on perturbed latents against this phase's (live) fakes."""
        z = ctx.latents.z
        dz = 0.1 * torch.randn(z.shape, generator=ctx.rng, device=ctx.rng.device).to(z)  # (B, dim)
        near = dataclasses.replace(ctx.latents, z=z + dz, input=ctx.latents.input.clone())
        near.input[:, : z.shape[1]] += dz
        ratio = (ctx.generate(near) - ctx.fake_images).abs().mean() / dz.abs().mean()
        return Term(self.weight / (ratio + 1e-5), {"mode_seeking_ratio": ratio})
