"""Relativistic average standard GAN, RaSGAN (Jolicoeur-Martineau 2018, "The relativistic discriminator: a key
element missing from standard GAN"), registered as `ragan`.

D judges each real against the average fake and each fake against the average real, through the sigmoid:
D_ra(x_r) = sigmoid(C(x_r) - E[C(x_f)]) and D_ra(x_f) = sigmoid(C(x_f) - E[C(x_r)]) on D's logits C. Written
on logits in the softplus forms of `base.py` (-log sigmoid(t) = softplus(-t), -log(1 - sigmoid(t)) = softplus(t)):

    D: E_r[softplus(-(C(x_r) - E_f[C(x_f)]))] + E_f[softplus(C(x_f) - E_r[C(x_r)])]
    G: E_f[softplus(-(C(x_f) - E_r[C(x_r)]))] + E_r[softplus(C(x_r) - E_f[C(x_f)])]

G's loss is D's with the roles of real and fake swapped, so G also learns from the reals' side (through the
fakes' mean). The averages are over the batch. This is the paper's sum (its equations for RaSGAN); the author's
code (AlexiaJM/RelativisticGAN) halves both losses, a constant factor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gan_lightning.training.objectives.base import OBJECTIVES, Objective

Tensor = torch.Tensor


@OBJECTIVES.register("ragan")
class RelativisticAverage(Objective):
    """RaSGAN: each real against the mean fake and each fake against the mean real, on D's logits (see above).

    A D that cannot tell real from fake gives every image one logit c: both differences are 0 and its loss is
    softplus(0) + softplus(0) = 2 log 2 whatever c is, so `chance_d_loss` is 2 log 2.
    """

    name, chance_d_loss, g_needs_real = "ragan", 2 * math.log(2), True

    def d_adversarial(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """softplus(-(C(x_r) - mean C(x_f))) + softplus(C(x_f) - mean C(x_r)), each averaged over its batch."""
        real_vs_fakes = real_logits - fake_logits.mean()  # (B_real,)
        fake_vs_reals = fake_logits - real_logits.mean()  # (B_fake,)
        return F.softplus(-real_vs_fakes).mean() + F.softplus(fake_vs_reals).mean()

    def g_adversarial(self, fake_logits: Tensor, real_logits: Tensor | None) -> Tensor:
        """D's loss with real and fake swapped: the fakes should beat the mean real and the reals lose to the mean
        fake (`real_logits` arrive detached: G moves only the fakes' logits)."""
        fake_vs_reals = fake_logits - real_logits.mean()  # (B_fake,)
        real_vs_fakes = real_logits - fake_logits.mean()  # (B_real,)
        return F.softplus(-fake_vs_reals).mean() + F.softplus(real_vs_fakes).mean()

    def real_verdicts(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Each real's logit against the mean fake logit: positive when D_ra(x_r) > 1/2, whatever the logits'
        offset (a constant added to every logit changes nothing in this loss)."""
        return real_logits - fake_logits.mean()
