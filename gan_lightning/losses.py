"""Adversarial objectives as pure functions of the discriminator's raw logits, chosen by name.

Every loss is written on logits with softplus / `*_with_logits` forms, never on sigmoid probabilities, so
that a confident discriminator cannot push log(0) into the graph. Identities used below, for a logit x:
    -log sigmoid(x)      = softplus(-x)
    -log(1 - sigmoid(x)) = softplus(x)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gan_lightning.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class AdversarialLoss:
    """A pair of objectives, both minimised: `d(real_logits, fake_logits)` and `g(fake_logits)`."""

    name: str
    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]
    default_d_steps: int = 1
    gradient_penalty: bool = False
    # the loss of the best D that cannot tell real from fake (one constant output): the health check's "chance"
    chance_d_loss: float | None = None


LOSSES: Registry[AdversarialLoss] = Registry("loss")


def _register(loss: AdversarialLoss) -> AdversarialLoss:
    return LOSSES.register(loss.name)(loss)


def bce_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """cs231n `discriminator_loss`: BCE(D(x), 1) + BCE(D(G(z)), 0), each a batch mean."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def non_saturating_g_loss(fake_logits: Tensor) -> Tensor:
    """The non-saturating generator loss -log D(G(z)), strong gradients while D rejects the fakes."""
    return F.softplus(-fake_logits).mean()


def minimax_g_loss(fake_logits: Tensor) -> Tensor:
    """The GAN paper's saturating objective log(1 - D(G(z))), minimised by G (vanishes while D wins)."""
    return -F.softplus(fake_logits).mean()


def lsgan_d_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """cs231n equation 9 for D: 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2], on raw scores."""
    return 0.5 * (real_scores - 1).square().mean() + 0.5 * fake_scores.square().mean()


def lsgan_g_loss(fake_scores: Tensor) -> Tensor:
    """cs231n equation 9 for G: 1/2 E[(D(G(z)) - 1)^2]."""
    return 0.5 * (fake_scores - 1).square().mean()


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss for D (SAGAN, BigGAN): E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def wasserstein_d_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """WGAN critic loss E[D(G(z))] - E[D(x)] (the gradient penalty is added by the caller)."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_g_loss(fake_scores: Tensor) -> Tensor:
    """WGAN / hinge generator loss -E[D(G(z))]."""
    return -fake_scores.mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] at random interpolates x_hat of real and fake.

    `create_graph=True` so the penalty itself is differentiated with respect to D's parameters.
    """
    alpha = torch.rand(
        real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype, generator=generator
    )
    # under autocast G's fakes may be bf16/fp16 while the data is fp32: interpolate in the data's dtype
    x_hat = torch.lerp(real.detach(), fake.detach().to(real.dtype), alpha).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
    return (grad.float().flatten(1).norm(2, dim=1) - 1).square().mean()


_register(AdversarialLoss("bce", bce_d_loss, non_saturating_g_loss, chance_d_loss=2 * math.log(2)))
_register(AdversarialLoss("minimax", bce_d_loss, minimax_g_loss, chance_d_loss=2 * math.log(2)))
_register(AdversarialLoss("lsgan", lsgan_d_loss, lsgan_g_loss, chance_d_loss=0.25))
_register(AdversarialLoss("hinge", hinge_d_loss, wasserstein_g_loss, chance_d_loss=2.0))
_register(AdversarialLoss("wgan-gp", wasserstein_d_loss, wasserstein_g_loss, default_d_steps=5, gradient_penalty=True))


def get_loss(name: str) -> AdversarialLoss:
    """The registered loss `name` (bce, minimax, lsgan, hinge, wgan-gp)."""
    return LOSSES.get(name)
