"""Consistency regularization, CR (Zhang et al. 2020, "Consistency Regularization for Generative Adversarial
Networks", ICLR), and its balanced and latent forms, bCR and zCR (Zhao et al. 2021, "Improved Consistency
Regularization for GANs", AAAI), as PyTorch-StudioGAN trains them (`src/worker.py`, `LOSS.apply_cr`,
`LOSS.apply_bcr` / `LOSS.apply_zcr`; `src/utils/cr.py`; the `*-CR.yaml` and `*-ICR.yaml` configs).

CR (`--cr`, `--cr-transform`), D phase, on reals only (StudioGAN's CIFAR configs: lambda = 10):

    lambda * mean_i (D(T(x_i)) - D(x_i))^2

bCR (`--bcr-real`, `--bcr-fake`, `--bcr-transform`), D phase, T a transform policy:

    lambda_real * mean_i (D(T(x_i)) - D(x_i))^2  +  lambda_fake * mean_i (D(T(G(z_i))) - D(G(z_i)))^2

zCR (`--zcr-dis`, `--zcr-gen`, `--zcr-sigma`), dz_i ~ N(0, sigma^2 I) on the noise z only (labels and InfoGAN codes
unchanged), drawn from the iteration's `rng`:

    D phase:  lambda_dis * mean_i (D(G(z_i + dz_i)) - D(G(z_i)))^2
    G phase: -lambda_gen * mean_{i,c,h,w} (G(z_i + dz_i) - G(z_i))^2

Both sides of every square are live (D's two outputs in the D phase, G's two outputs in the G phase), as in StudioGAN;
in the D phase G is not trained, so G(z + dz) is computed without a graph, as the phase's own fakes are detached. The
G term is StudioGAN's `MSELoss`: a mean over every pixel, i.e. E||G(z + dz) - G(z)||^2 / (C H W); the weights
(StudioGAN's CIFAR configs: lambda_real = lambda_fake = 10, lambda_dis = 20, lambda_gen = 0.5, sigma = 0.05) are
meant on that scale.

Where this differs from StudioGAN, and why:

- T defaults to `translation` (DiffAugment's: up to 1/8 of the size, zero fill), not StudioGAN's random x-flip then
  translation (up to 1/8, reflection fill). bCR makes D give the same verdict on T(x) as on x for reals and fakes, so
  D stops penalising G for T-transformed images: a mirrored digit or letter is not data, while a digit shifted by
  3 pixels still is (`augment/geometric.py`: orientation-carrying data should not see flips). For flip-symmetric
  data (CIFAR-10, faces) `--bcr-transform xflip,translation` is StudioGAN's policy up to the fill.
- The consistency branches go through the run's augmentation (`ctx.discriminate`), as D's outputs on x and G(z) did
  in this phase; StudioGAN feeds T(x) and G(z + dz) to D without its DiffAugment (identical without `--diffaug`).
- Only D's logit is compared; StudioGAN adds its AC classifier or 2C embedding outputs. Here a conditional D's
  projection term is already part of the logit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from gan_lightning.augment import TRANSFORMS, DiffAugment
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, Options
from gan_lightning.regularizers.base import REGULARIZERS, PhaseContext, Regularizer, Term

if TYPE_CHECKING:
    from gan_lightning.training.latents import Latents

Tensor = torch.Tensor


def _check_policy(policy: str, flag: str = "--bcr-transform") -> None:
    """One-line ConfigError naming `flag` unless `policy` is a comma list of distinct transforms."""
    names = [name.strip() for name in policy.split(",")]
    if not all(names) or any(name not in TRANSFORMS for name in names) or len(set(names)) != len(names):
        raise ConfigError(f"{flag} {policy!r}: use a comma list of distinct transforms from "
                          f"{', '.join(TRANSFORMS)}")  # fmt: skip


def _mean_square(a: Tensor, b: Tensor) -> Tensor:
    """mean((a - b)^2) over every element, in fp32 (under autocast D's logits and G's images may be half)."""
    return (a.float() - b.float()).square().mean()


def consistency_gap(ctx: PhaseContext, transform: DiffAugment, images: Tensor, labels: Tensor | None,
                    logits: Tensor) -> Tensor:  # fmt: skip
    """mean_i (D(T(images_i)) - logits_i)^2: D on T of the phase's `images` against its `logits` on them."""
    # detached: an R1/R2 input that requires grad must not get a second path through this branch
    moved = transform(images.detach(), ctx.rng)  # (B, C, H, W)
    return _mean_square(ctx.discriminate(moved, labels).logits, logits)


@REGULARIZERS.register("cr")
class Consistency(Regularizer):
    """CR, D phase: lambda E[(D(T(x)) - D(x))^2] on reals (bCR with its fake side off)."""

    # fmt: off
    options = (
        Option("cr", 0.0, "consistency regularization (CR, Zhang et al. 2020) on reals: weight lambda of "
               "E[(D(T(x)) - D(x))^2], e.g. 10 (StudioGAN's CIFAR configs)", minimum=0, metavar="LAMBDA",
               schedule="weight"),
        Option("cr_transform", "translation", lambda: "CR: the transform T, a comma list of " + ", ".join(TRANSFORMS)
               + " (StudioGAN's is xflip,translation: for flip-symmetric data only)", type=str, metavar="POLICY",
               check=lambda policy: _check_policy(policy, "--cr-transform")),
    )
    # fmt: on

    def __init__(self, weight: float, transform: str = "translation") -> None:
        super().__init__()
        Options(self.options).validate(cr=weight, cr_transform=transform)
        self.weight, self.transform = float(weight), transform
        self.consistency_transform = DiffAugment(transform)  # p = 1: every image is transformed

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Consistency | None:
        """CR when `--cr` is positive, else None."""
        return cls(options["cr"], options["cr_transform"]) if options["cr"] else None

    def d_term(self, ctx: PhaseContext) -> Term:
        """D on T of the phase's reals against its logits on them."""
        if not self.weight:  # a schedule may reach 0
            return Term(None, {})
        gap = consistency_gap(ctx, self.consistency_transform, ctx.real_images, ctx.real.labels, ctx.real_logits)
        return Term(self.weight * gap, {"cr": gap})


@REGULARIZERS.register("bcr")
class BalancedConsistency(Regularizer):
    """bCR, D phase: lambda_real E[(D(T(x)) - D(x))^2] + lambda_fake E[(D(T(G(z))) - D(G(z)))^2]."""

    # fmt: off
    options = (
        Option("bcr_real", 0.0, "balanced consistency regularization (bCR, Zhao et al. 2021) on reals: weight "
               "lambda_real of E[(D(T(x)) - D(x))^2], e.g. 10", minimum=0, metavar="LAMBDA", schedule="real_weight"),
        Option("bcr_fake", 0.0, "bCR on fakes: weight lambda_fake of E[(D(T(G(z))) - D(G(z)))^2], e.g. 10", minimum=0,
               metavar="LAMBDA", schedule="fake_weight"),
        Option("bcr_transform", "translation", lambda: "bCR: the transform T, a comma list of " + ", ".join(TRANSFORMS)
               + " (StudioGAN's is xflip,translation: for flip-symmetric data only)", type=str, metavar="POLICY",
               check=_check_policy),
    )
    # fmt: on

    def __init__(self, real_weight: float, fake_weight: float, transform: str = "translation") -> None:
        super().__init__()
        Options(self.options).validate(bcr_real=real_weight, bcr_fake=fake_weight, bcr_transform=transform)
        self.real_weight, self.fake_weight, self.transform = float(real_weight), float(fake_weight), transform
        self.consistency_transform = DiffAugment(transform)  # p = 1: every image is transformed

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BalancedConsistency | None:
        """bCR when `--bcr-real` or `--bcr-fake` is positive, else None."""
        if not (options["bcr_real"] or options["bcr_fake"]):
            return None
        return cls(options["bcr_real"], options["bcr_fake"], options["bcr_transform"])

    def d_term(self, ctx: PhaseContext) -> Term:
        """Each side whose weight is positive (a schedule may reach 0): D on T of the phase's inputs vs its logits."""
        loss: Tensor | None = None
        stats: dict[str, Tensor] = {}
        sides = (("real", self.real_weight, ctx.real_images, ctx.real.labels, ctx.real_logits),
                 ("fake", self.fake_weight, ctx.fake_images, ctx.latents.labels, ctx.fake_logits))  # fmt: skip
        for side, weight, images, labels, logits in sides:
            if not weight:
                continue
            gap = consistency_gap(ctx, self.consistency_transform, images, labels, logits)
            stats[f"bcr_{side}"] = gap
            loss = weight * gap if loss is None else loss + weight * gap
        return Term(loss, stats)


@REGULARIZERS.register("zcr")
class LatentConsistency(Regularizer):
    """zCR: lambda_dis E[(D(G(z + dz)) - D(G(z)))^2] in the D phase, -lambda_gen E[(G(z + dz) - G(z))^2] in the G's."""

    # fmt: off
    options = (
        Option("zcr_dis", 0.0, "latent consistency regularization (zCR, Zhao et al. 2021), D phase: weight lambda_dis "
               "of E[(D(G(z + dz)) - D(G(z)))^2], e.g. 5 (StudioGAN's CIFAR configs: 20)", minimum=0,
               metavar="LAMBDA", schedule="dis_weight"),
        Option("zcr_gen", 0.0, "zCR, G phase: weight lambda_gen of -E[(G(z + dz) - G(z))^2] (a per-pixel mean), "
               "pushing G to vary with z, e.g. 0.5", minimum=0, metavar="LAMBDA", schedule="gen_weight"),
        Option("zcr_sigma", 0.05, "zCR: standard deviation sigma of the noise perturbation dz ~ N(0, sigma^2)",
               positive=True, metavar="SIGMA"),
    )
    # fmt: on

    def __init__(self, dis_weight: float, gen_weight: float, sigma: float = 0.05) -> None:
        super().__init__()
        Options(self.options).validate(zcr_dis=dis_weight, zcr_gen=gen_weight, zcr_sigma=sigma)
        self.dis_weight, self.gen_weight, self.sigma = float(dis_weight), float(gen_weight), float(sigma)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LatentConsistency | None:
        """zCR when `--zcr-dis` or `--zcr-gen` is positive, else None."""
        if not (options["zcr_dis"] or options["zcr_gen"]):
            return None
        return cls(options["zcr_dis"], options["zcr_gen"], options["zcr_sigma"])

    def nearby(self, latents: Latents, rng: torch.Generator) -> Latents:
        """`latents` with z + dz, dz ~ N(0, sigma^2) from `rng`; the labels / codes after z in `input` unchanged."""
        z = latents.z  # (B, dim)
        dz = self.sigma * torch.randn(z.shape, generator=rng, device=rng.device).to(z)  # (B, dim)
        codes = latents.input[:, z.shape[1] :]  # (B, input_dim - dim); (B, 0) for a plain GAN
        return dataclasses.replace(latents, z=z + dz, input=torch.cat([z + dz, codes], dim=1))

    def d_term(self, ctx: PhaseContext) -> Term:
        """D on G's fakes from the perturbed latents vs its logits on the phase's fakes."""
        if not self.dis_weight:  # off in this phase, or a schedule reached 0: no extra G and D forwards
            return Term(None, {})
        near = self.nearby(ctx.latents, ctx.rng)
        with torch.no_grad():  # the term trains D only
            fakes = ctx.generate(near)  # (B, C, H, W)
        gap = _mean_square(ctx.discriminate(fakes, near.labels).logits, ctx.fake_logits)
        return Term(self.dis_weight * gap, {"zcr_dis": gap})

    def g_term(self, ctx: PhaseContext) -> Term:
        """Minus the per-pixel mean square between G's images from the perturbed latents and the phase's fakes."""
        if not self.gen_weight:
            return Term(None, {})
        moved = _mean_square(ctx.generate(self.nearby(ctx.latents, ctx.rng)), ctx.fake_images)
        return Term(-self.gen_weight * moved, {"zcr_gen": moved})
