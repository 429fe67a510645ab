"""GAN objectives: what the D phase and the G phase minimise, regularizers included, chosen by name.

An `Objective` owns both phases, as `StyleGAN2Loss` does in NVlabs' stylegan2-ada-pytorch: the LightningModule
only says which phase runs (`d_loss` or `g_loss`) and steps the optimizer. Both phases see the real batch, so
objectives that compare real and fake inside the G update can be written. A new adversarial loss is a subclass
overriding `d_adversarial` / `g_adversarial` plus one `@OBJECTIVES.register(name)`, in one file here or in a
plugin; a new regularizer is one file in `gan_lightning.regularizers`, which each phase hands its `PhaseContext`.

Every loss is written on logits with softplus forms, never on sigmoid probabilities, so a confident D cannot
push log(0) into the graph. For a logit x: -log sigmoid(x) = softplus(-x), -log(1 - sigmoid(x)) = softplus(x).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.core.options import Option, Options, call_with, declared
from gan_lightning.core.registry import Registry
from gan_lightning.models.base import generate_images
from gan_lightning.models.heads import CriticOutput, QHead
from gan_lightning.regularizers import PhaseContext, Regularizer, Term, build_regularizers, due, regularizer_keys
from gan_lightning.regularizers.zero_centered import R1, R2, REG_EVERY
from gan_lightning.training.batch import Batch, PhaseLoss
from gan_lightning.training.latents import Latents

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------------- regularizers
def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, rng: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] at random interpolates x_hat of real and fake.

    `create_graph=True` so the penalty itself is differentiated with respect to D's parameters. Under autocast it
    runs in full precision, as R1/R2 do (`regularizers/zero_centered.py`).
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype, generator=rng)
    # under autocast G's fakes may be bf16/fp16 while the data is fp32: interpolate in fp32
    x_hat = torch.lerp(real.detach().float(), fake.detach().float(), alpha.float()).requires_grad_(True)
    # fp16 input gradients underflow without the loss scale and bf16 ones are coarse: forward and double backward
    # in fp32
    with torch.autocast(real.device.type, enabled=False):
        scores = critic(x_hat)
        (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
        return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


def mutual_information_loss(q_head: QHead, features: Tensor, latents: Latents) -> tuple[Tensor, Tensor]:
    """InfoGAN's mutual-information term and its categorical part: (CE + 0.1 * Gaussian NLL, CE).

    The continuous codes get a unit-variance Gaussian NLL (half the squared error) weighted 0.1, as the InfoGAN
    paper lowers lambda for continuous codes: with a learned variance, or at weight 1, its gradients swamp the
    shared D body and the categorical code is never learned.
    """
    cat_logits, cont_mean = q_head(features)  # (B, n_cat), (B, n_cont)
    ce = F.cross_entropy(cat_logits, latents.cat)
    if latents.cont is None or not latents.cont.shape[1]:
        return ce, ce
    nll = 0.5 * (cont_mean - latents.cont.float()).square().sum(dim=1).mean()
    return ce + 0.1 * nll, ce


# ----------------------------------------------------------------------------------------------- objective
class Objective(nn.Module):
    """Both phases of a GAN objective; subclasses define the adversarial terms on D's logits.

    Each phase computes D's outputs once and hands them, in a `PhaseContext`, to its `regularizers` (R1/R2,
    LeCam, consistency, path length, a plugin's: `gan_lightning.regularizers`), which add their terms, each on
    its own lazy interval. `r1`, `r2` and `reg_every` are shorthand for the R1 and R2 regularizers (the zero-centred
    penalties gamma/2 E||grad D||^2 on reals and on fakes, every `reg_every` D steps and scaled by it).
    `gp_weight` weighs the WGAN-GP penalty (used when `gradient_penalty` is set); `info_weight` weighs InfoGAN's
    mutual-information term (used when D has a Q head). `augment(x, rng)`, when given, transforms every image D
    sees, real or fake, in both phases and inside the regularizers (DiffAugment); one with `observe(verdicts)`
    receives D's verdicts on the real batch after each D update (`real_verdicts`; ADA tunes its probability to
    their signs) and one with `stats()` has them logged.
    """

    # fmt: off
    options = (
        Option("loss", "bce", "adversarial loss", choices=lambda: OBJECTIVES.names()),
        Option("d_steps", None, "D updates per G update, k in the GAN paper", type=int, positive=True,
               default_text="the loss's, 1; 5 for wgan-gp"),
        Option("gp_weight", 10.0, "wgan-gp gradient penalty weight", minimum=0),
        Option("info_weight", 1.0, "InfoGAN mutual-information weight", minimum=0),
    )
    # fmt: on
    name = ""
    default_d_steps = 1
    gradient_penalty = False
    g_needs_real = False  # whether the G phase evaluates D on the real batch (relativistic objectives)
    # the loss of the best D that cannot tell real from fake (one constant output): the health check's "chance"
    chance_d_loss: float | None = None
    # whether D's logits are log-odds of "real", so that a D sure of both sides leaves G's loss flat (the health
    # check's "D wins completely"): bce and minimax; least squares, hinge, WGAN and relativistic losses do not
    saturates = False

    def __init__(
        self,
        *,
        gp_weight: float = 10.0,
        info_weight: float = 1.0,
        r1: float = 0.0,
        r2: float = 0.0,
        reg_every: int = 1,
        augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        regularizers: Sequence[Regularizer] = (),
    ) -> None:
        super().__init__()
        Options(Objective.options).validate(gp_weight=gp_weight, info_weight=info_weight)
        Options([REG_EVERY]).validate(reg_every=reg_every)
        self.gp_weight, self.info_weight, self.augment = gp_weight, info_weight, augment
        shorthand = [kind(gamma, reg_every) for kind, gamma in ((R1, r1), (R2, r2)) if gamma]
        # keyed by name, so a regularizer's state keeps its checkpoint keys when others are switched on or off
        self.regularizers = nn.ModuleDict(regularizer_keys([*regularizers, *shorthand]))
        # (phase, regularizer key) -> its last statistics: not state, refilled on the regularizer's next due step
        self.lazy_stats: dict[tuple[str, str], dict[str, Tensor]] = {}

    def init_options(self) -> dict[str, Any]:
        """The constructor options that rebuild this objective (recorded in checkpoints when it is injected)."""
        from gan_lightning.core.injected import describe_component

        augment = describe_component(self.augment) if self.augment is not None else None
        # R1 and R2 are recorded among the regularizers, so the shorthand is off
        regularizers = [describe_component(r) for r in self.regularizers.values()]
        return {"gp_weight": self.gp_weight, "info_weight": self.info_weight, "r1": 0.0, "r2": 0.0, "reg_every": 1,
                "augment": augment, "regularizers": regularizers}  # fmt: skip

    def regularizer(self, kind: type[Regularizer]) -> Regularizer | None:
        """This objective's regularizer of class `kind`, or None."""
        return next((r for r in self.regularizers.values() if type(r) is kind), None)

    @property
    def r1(self) -> float:
        """R1's gamma (0: off)."""
        return getattr(self.regularizer(R1), "gamma", 0.0)

    @property
    def r2(self) -> float:
        """R2's gamma (0: off)."""
        return getattr(self.regularizer(R2), "gamma", 0.0)

    @property
    def differentiates_d_twice(self) -> bool:
        """Whether the D phase backpropagates through D's input gradients (WGAN-GP, R1, R2): a double backward.

        `GAN(compile=True)` leaves D eager when this is true (torch.compile has no double backward); a regularizer
        says so by listing `input_grads`, an objective with a penalty of its own must return True here.
        """
        return bool(
            (self.gradient_penalty and self.gp_weight) or any(r.input_grads for r in self.regularizers.values())
        )

    def hold_lazy_stats(self, phase: str, stats: dict[str, Tensor], ran: dict[Regularizer, dict[str, Tensor]]) -> None:
        """Add to `stats` the last statistics of each lazy regularizer that skipped this update of `phase`, and
        remember those of the ones that `ran`: a lazy penalty is logged at every logging step, not only when the
        logging step happens to be one it runs on (every 50th iteration never is for one of every 4 or 16)."""
        held = self.lazy_stats
        for key, reg in self.regularizers.items():
            if reg.interval(phase) == 1:
                continue
            if reg in ran:
                held[(phase, key)] = {k: v.detach() for k, v in ran[reg].items()}
            elif (phase, key) in held:
                stats.update(held[(phase, key)])

    def d_adversarial(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """D's adversarial loss on its logits for a real and a fake batch."""
        raise NotImplementedError

    def g_adversarial(self, fake_logits: Tensor, real_logits: Tensor | None) -> Tensor:
        """G's adversarial loss; `real_logits` is None unless `g_needs_real`."""
        raise NotImplementedError

    def end_d_update(self, step: int) -> None:
        """After D update `step` (every micro-batch of it): components with per-update state (`end_update`) move it
        once, so ADA's p and LeCam's anchors move once per update whatever `--accumulate` is."""
        for part in (self.augment, *self.regularizers.values()):
            if hasattr(part, "end_update"):
                part.end_update(step)

    def end_g_update(self, step: int) -> None:
        """After G update `step` (every micro-batch of it): regularizers with per-update G state (`end_g_update`,
        path length's running mean) move it once."""
        for part in self.regularizers.values():
            if hasattr(part, "end_g_update"):
                part.end_g_update(step)

    def real_verdicts(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """D's verdict on each real image (B,), centred on its decision boundary: positive means "real".

        ADA's overfitting measure is E[sign] of this. An absolute loss puts the boundary at logit 0; a relativistic
        one only compares real with fake (a constant added to every logit changes nothing), so it overrides this.
        """
        return real_logits

    def discriminate(self, D: nn.Module, x: Tensor, labels: Tensor | None, rng: torch.Generator) -> CriticOutput:
        """D on images `x` (B, C, H, W), augmented first when the objective has an augmentation."""
        return D(self.augment(x, rng) if self.augment is not None else x, labels)

    def d_loss(
        self, G: nn.Module, D: nn.Module, real: Batch, latents: Latents, rng: torch.Generator, step: int = 0
    ) -> PhaseLoss:
        """The D phase (its `step`-th update): real batch vs fakes from `latents`, detached so G gets no gradient."""
        due_now = [(reg, scale) for reg in self.regularizers.values() if (scale := due(reg, "d", step))]
        grads = {side for reg, _ in due_now for side in reg.input_grads}
        real_x = real.images.detach().requires_grad_("real" in grads)  # (B, C, H, W)
        fake_x = generate_images(G, latents.input, rng).detach().requires_grad_("fake" in grads)  # (B, C, H, W)
        real_out = self.discriminate(D, real_x, real.labels, rng)
        fake_out = self.discriminate(D, fake_x, latents.labels, rng)
        loss = self.d_adversarial(real_out.logits, fake_out.logits)
        if self.gradient_penalty and self.gp_weight:
            critic = lambda x: self.discriminate(D, x, real.labels, rng).logits  # noqa: E731
            loss = loss + self.gp_weight * gradient_penalty(critic, real_x, fake_x, rng)
        stats = {"d_loss": loss.detach(), "real_logits": real_out.logits.detach()}
        stats["fake_logits"] = fake_out.logits.detach()
        if D.q_head is not None:  # Q learns to recover the codes, through D's body
            info, stats["info_ce"] = mutual_information_loss(D.q_head, fake_out.features, latents)
            loss = loss + self.info_weight * info
        ctx = PhaseContext("d", step, real_out, fake_out, real, latents, real_x, fake_x, G, D, rng, self.augment)
        terms = [(reg, reg.d_term(ctx), scale) for reg, scale in due_now]
        loss = add_terms(loss, stats, [(term, scale) for _, term, scale in terms])
        self.hold_lazy_stats("d", stats, {reg: term.stats for reg, term, _ in terms})
        if hasattr(self.augment, "observe"):  # an augmentation that tunes itself to D's verdicts (e.g. ADA)
            self.augment.observe(self.real_verdicts(real_out.logits, fake_out.logits))
        if hasattr(self.augment, "stats"):  # e.g. an adaptive augmentation's probability
            stats.update(self.augment.stats())
        return PhaseLoss(loss, {k: v.detach() for k, v in stats.items()})

    def g_loss(
        self, G: nn.Module, D: nn.Module, real: Batch, latents: Latents, rng: torch.Generator, step: int = 0
    ) -> PhaseLoss:
        """The G phase (iteration `step`): fakes through D, whose parameters the caller has frozen."""
        fake_x = generate_images(G, latents.input, rng)  # (B, C, H, W)
        fake_out = self.discriminate(D, fake_x, latents.labels, rng)
        real_out = None
        if self.g_needs_real:
            real_out = CriticOutput(
                *(t if t is None else t.detach() for t in self.discriminate(D, real.images, real.labels, rng))
            )
        adv = self.g_adversarial(fake_out.logits, None if real_out is None else real_out.logits)
        loss, stats = adv, {"g_loss": adv.detach()}
        if D.q_head is not None:  # G learns to make the codes recoverable
            info, _ = mutual_information_loss(D.q_head, fake_out.features, latents)
            stats["info_loss"] = info.detach()
            loss = loss + self.info_weight * info
        ctx = PhaseContext("g", step, real_out, fake_out, real, latents, real.images, fake_x, G, D, rng, self.augment)
        due_now = [(reg, scale) for reg in self.regularizers.values() if (scale := due(reg, "g", step))]
        terms = [(reg, reg.g_term(ctx), scale) for reg, scale in due_now]
        loss = add_terms(loss, stats, [(term, scale) for _, term, scale in terms])
        self.hold_lazy_stats("g", stats, {reg: term.stats for reg, term, _ in terms})
        return PhaseLoss(loss, {k: v.detach() for k, v in stats.items()})


def add_terms(loss: Tensor, stats: dict[str, Tensor], terms: list[tuple[Term, int]]) -> Tensor:
    """`loss` plus each regularizer term times its lazy scale; the terms' statistics go into `stats`."""
    for term, scale in terms:
        if term.loss is not None:
            loss = loss + (term.loss if scale == 1 else scale * term.loss)
        stats.update(term.stats)
    return loss


OBJECTIVES: Registry[type[Objective]] = Registry("loss")


def get_objective(name: str, **options: Any) -> Objective:
    """The registered objective `name`, built with `options` (see `Objective`)."""
    return OBJECTIVES.get(name)(**options)


def build_objective(
    options: dict[str, Any], augment: Callable[[Tensor, torch.Generator], Tensor] | None = None
) -> Objective:
    """The objective the declared `options` name (`loss`), with its weights, the augmentation and every registered
    regularizer the options switch on."""
    kind = OBJECTIVES.get(options["loss"])
    own = declared(kind).pick(options)  # R1/R2's gammas are the regularizers' options, not the shorthand's
    return call_with(kind, own, augment=augment, regularizers=build_regularizers(options))
