"""The adversarial losses, each an `Objective` subclass registered by name: the cs231n GAN's (bce), the GAN paper's
saturating minimax, LSGAN, hinge, WGAN-GP and R3GAN's relativistic pairing. All on logits, in softplus forms."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gan_lightning.training.objectives.base import OBJECTIVES, Objective

Tensor = torch.Tensor


@OBJECTIVES.register("bce")
class NonSaturating(Objective):
    """cs231n GAN: D minimises BCE(D(x), 1) + BCE(D(G(z)), 0); G the non-saturating -log D(G(z))."""

    name, chance_d_loss, saturates = "bce", 2 * math.log(2), True

    def d_adversarial(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """E[softplus(-D(x))] + E[softplus(D(G(z)))]: BCE on logits."""
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_adversarial(self, fake_logits: Tensor, real_logits: Tensor | None) -> Tensor:
        """E[softplus(-D(G(z)))] = -E[log sigmoid(D(G(z)))]."""
        return F.softplus(-fake_logits).mean()


@OBJECTIVES.register("minimax")
class Minimax(NonSaturating):
    """The GAN paper's saturating G objective log(1 - D(G(z))), minimised (vanishes while D wins)."""

    name = "minimax"

    def g_adversarial(self, fake_logits: Tensor, real_logits: Tensor | None) -> Tensor:
        """-E[softplus(D(G(z)))] = E[log(1 - sigmoid(D(G(z))))]."""
        return -F.softplus(fake_logits).mean()


@OBJECTIVES.register("lsgan")
class LeastSquares(Objective):
    """cs231n equation 9: D 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]; G 1/2 E[(D(G(z)) - 1)^2], on raw scores."""

    name, chance_d_loss = "lsgan", 0.25

    def d_adversarial(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]."""
        return 0.5 * (real_logits - 1).square().mean() + 0.5 * fake_logits.square().mean()

    def g_adversarial(self, fake_logits: Tensor, real_logits: Tensor | None) -> Tensor:
        """1/2 E[(D(G(z)) - 1)^2]."""
        return 0.5 * (fake_logits - 1).square().mean()

    def real_verdicts(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """D's targets are 1 for reals and 0 for fakes: its boundary is 0.5."""
        return real_logits - 0.5


@OBJECTIVES.register("hinge")
class Hinge(Objective):
    """Hinge loss (SAGAN, BigGAN): D E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G -E[D(G(z))]."""

    name, chance_d_loss = "hinge", 2.0

    def d_adversarial(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_adversarial(self, fake_logits: Tensor, real_logits: Tensor | None) -> Tensor:
        """-E[D(G(z))]."""
        return -fake_logits.mean()


@OBJECTIVES.register("wgan-gp")
class WassersteinGP(Hinge):
    """WGAN-GP: critic E[D(G(z))] - E[D(x)] plus the gradient penalty, 5 critic steps per G step."""

    name, chance_d_loss, default_d_steps, gradient_penalty = "wgan-gp", None, 5, True

    def d_adversarial(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """E[D(G(z))] - E[D(x)] (the gradient penalty is added by the D phase)."""
        return fake_logits.mean() - real_logits.mean()

    def real_verdicts(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """A critic's scores have no boundary of their own (any constant can be added): each real against its fake."""
        return real_logits - fake_logits


@OBJECTIVES.register("rpgan")
class RelativisticPairing(Objective):
    """R3GAN's relativistic pairing: D softplus(-(D(x) - D(G(z)))), G softplus(-(D(G(z)) - D(x))), paired in the batch.

    Use it with `r1` and `r2` (R3GAN: gamma on both); without them the pairing alone does not converge locally.
    """

    name, chance_d_loss, g_needs_real = "rpgan", math.log(2), True

    def d_adversarial(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """E[softplus(D(G(z_i)) - D(x_i))], fake i paired with real i."""
        return F.softplus(fake_logits - real_logits).mean()

    def g_adversarial(self, fake_logits: Tensor, real_logits: Tensor | None) -> Tensor:
        """E[softplus(D(x_i) - D(G(z_i)))], fake i paired with real i."""
        return F.softplus(real_logits - fake_logits).mean()

    def real_verdicts(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Each real's logit against its paired fake's: the pairing's own boundary, whatever the logits' offset."""
        return real_logits - fake_logits
