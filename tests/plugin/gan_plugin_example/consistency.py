"""Consistency regularization on reals (Zhang et al. 2020, "Consistency Regularization for GANs"): D should say the
same of an image and of its transformed copy, lambda E[(D(T(x)) - D(x))^2], in the D phase."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gan_lightning.augment import TRANSFORMS
from gan_lightning.core.options import Option
from gan_lightning.regularizers import REGULARIZERS, PhaseContext, Regularizer, Term


@REGULARIZERS.register("example_cr")
class ConsistencyRegularization(Regularizer):
    """lambda E[(D(T(x)) - D(x))^2] over the real batch, T a registered augmentation transform."""

    options = (
        Option("example_cr", 0.0, "consistency regularization weight lambda (Zhang et al. 2020), e.g. 10",
               minimum=0, metavar="LAMBDA", schedule="weight"),
        Option("example_cr_transform", "translation", "the transform T of consistency regularization",
               choices=lambda: TRANSFORMS.names()),
    )  # fmt: skip

    def __init__(self, weight: float, transform: str = "translation") -> None:
        super().__init__()
        self.weight, self.transform = weight, transform

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ConsistencyRegularization | None:
        """On when its weight is positive."""
        return cls(options["example_cr"], options["example_cr_transform"]) if options["example_cr"] else None

    def d_term(self, ctx: PhaseContext) -> Term:
        """D on the transformed reals against its (live) logits on the reals."""
        reals = ctx.real_images.detach()  # (B, C, H, W)
        transformed = TRANSFORMS.get(self.transform)(reals, ctx.rng)
        gap = (ctx.discriminate(transformed, ctx.real.labels).logits - ctx.real_logits).square().mean()
        return Term(self.weight * gap, {"example_cr": gap})
