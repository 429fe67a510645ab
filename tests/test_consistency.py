"""CR, bCR and zCR (regularizers/consistency.py): the terms against hand-computed values on a linear D and G, gradients
into D in the D phase and into G in the G phase only, the noise perturbation, off by default, options, schedules.

The nets: images are (B, 1, 1, 2) = [a, b]; D(x) = 3a + b (no bias); G(z) = A z with A = [[1, 2], [0, -1]], so
D(G(z)) = (3, 5) . z. Mirroring [a, b] to [b, a] moves D's logit by 2(b - a); perturbing z by dz moves G's image by
A dz = [dz0 + 2 dz1, -dz1] and D's logit on it by 3 dz0 + 5 dz1.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from gan_lightning import GAN
from gan_lightning.core.errors import ConfigError
from gan_lightning.models.heads import Critic
from gan_lightning.regularizers import REGULARIZERS, PhaseContext, build_regularizers
from gan_lightning.regularizers.consistency import BalancedConsistency, Consistency, LatentConsistency
from gan_lightning.training.batch import Batch
from gan_lightning.training.latents import Latents, LatentSpace
from gan_lightning.training.objectives import get_objective

REALS = torch.tensor([[1.0, 0.0], [0.5, 0.5], [-1.0, 1.0], [0.0, 2.0]]).view(4, 1, 1, 2)
Z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])  # G(Z) = [1, 0], [2, -1], [3, -1], [0, 0]


class LinearD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[3.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)).squeeze(1)  # (B,)


class LinearG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.lin(z).view(-1, 1, 1, 2)  # (B, 1, 1, 2)


def nets() -> tuple[LinearG, Critic]:
    return LinearG(), Critic(LinearD())


def d_context(G: nn.Module, D: nn.Module, seed: int = 0, latents: Latents | None = None) -> PhaseContext:
    """The D phase as the objective builds it: detached inputs, D's live outputs on them."""
    latents = latents if latents is not None else Latents(Z, Z)
    fakes = G(latents.input).detach()
    rng = torch.Generator().manual_seed(seed)
    return PhaseContext("d", 0, D(REALS), D(fakes), Batch(REALS, None), latents, REALS, fakes, G, D, rng)


def g_context(G: nn.Module, D: nn.Module, seed: int = 0) -> PhaseContext:
    """The G phase: G's live fakes and D's live output on them."""
    fakes = G(Z)
    rng = torch.Generator().manual_seed(seed)
    return PhaseContext("g", 0, None, D(fakes), Batch(REALS, None), Latents(Z, Z), REALS, fakes, G, D, rng)


class Mirror(nn.Module):
    """A transform that mirrors every image: the bCR gaps are then 2(b - a) for every [a, b]."""

    def forward(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return x.flip(3)


def grads(loss: torch.Tensor, module: nn.Module) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, list(module.parameters()), retain_graph=True, allow_unused=True))


def test_bcr_matches_hand_computed_values():
    G, D = nets()
    bcr = BalancedConsistency(10.0, 4.0)
    bcr.consistency_transform = Mirror()  # every image mirrored: exact values
    term = bcr.d_term(d_context(G, D))
    # reals [1,0] [.5,.5] [-1,1] [0,2]: gaps 2(b - a) = -2, 0, 4, 4 -> mean square (4 + 0 + 16 + 16) / 4 = 9
    # fakes [1,0] [2,-1] [3,-1] [0,0]: gaps -2, -6, -8, 0 -> (4 + 36 + 64 + 0) / 4 = 26
    assert term.stats["bcr_real"].item() == 9.0 and term.stats["bcr_fake"].item() == 26.0
    assert term.loss.item() == 10 * 9.0 + 4 * 26.0
    # one side off: only the other's term and statistic
    only_fake = BalancedConsistency(0.0, 4.0)
    only_fake.consistency_transform = Mirror()
    term = only_fake.d_term(d_context(G, D))
    assert set(term.stats) == {"bcr_fake"} and term.loss.item() == 4 * 26.0


def test_cr_matches_hand_computed_values_and_is_bcr_on_reals():
    G, D = nets()
    cr = Consistency(10.0)
    cr.consistency_transform = Mirror()
    term = cr.d_term(d_context(G, D))
    # reals [1,0] [.5,.5] [-1,1] [0,2]: gaps 2(b - a) = -2, 0, 4, 4 -> mean square 9; fakes play no part
    assert set(term.stats) == {"cr"} and term.stats["cr"].item() == 9.0 and term.loss.item() == 90.0
    assert cr.g_term(g_context(G, D)) == (None, {})
    grad_d = grads(term.loss, D)
    # d/dw of 10 mean((w . (T x - x))^2) = 20 mean(gap * (T x - x)); T x - x = (b - a, a - b)
    diff = torch.tensor([[-1.0, 1.0], [0.0, 0.0], [2.0, -2.0], [2.0, -2.0]])
    gaps = torch.tensor([-2.0, 0.0, 4.0, 4.0])
    expected = 20 * (gaps[:, None] * diff).mean(0)
    torch.testing.assert_close(grad_d[0].flatten(), expected)
    bcr = BalancedConsistency(10.0, 0.0)
    bcr.consistency_transform = Mirror()
    assert bcr.d_term(d_context(G, D)).loss.item() == term.loss.item()


def test_bcr_applies_its_policy_from_the_phase_rng_only():
    G, D = nets()
    bcr = BalancedConsistency(1.0, 1.0, "xflip")
    before = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    term = bcr.d_term(d_context(G, D, seed=4))
    after = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])
    # the reals' draw first, then the fakes': which images xflip mirrored, read from the same stream
    stream = torch.Generator().manual_seed(4)
    fakes = G(Z).detach()
    flipped_real = bcr.consistency_transform(REALS, stream)
    flipped_fake = bcr.consistency_transform(fakes, stream)
    for side, x, flipped in (("real", REALS, flipped_real), ("fake", fakes, flipped_fake)):
        hit = torch.tensor([not torch.equal(f, o) for f, o in zip(flipped, x, strict=True)])  # (B,)
        assert hit.any() and not hit.all(), side  # seed 4 mirrors some of each side, not all: both checks bite
        a, b = x[:, 0, 0, 0], x[:, 0, 0, 1]
        expected = (hit * 2 * (b - a)).square().mean()
        torch.testing.assert_close(term.stats[f"bcr_{side}"], expected)
    torch.testing.assert_close(bcr.d_term(d_context(G, D, seed=4)).loss, term.loss)  # same seed, same term


class AddOne(nn.Module):
    """A run's augmentation that adds 1 to every pixel: LinearD's logit on an augmented image is 4 higher."""

    def forward(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return x + 1


def test_the_consistency_branches_go_through_the_runs_augmentation_as_the_phases_logits_do():
    # the phase's logits are D(aug(x)); each branch compares D(aug(T(x))) (zCR: D(aug(G(z + dz)))) with them, so an
    # augmentation D sees leaves the hand-computed gaps as they were; a branch that skipped it would be 4 lower
    G, D = nets()
    real, latents = Batch(REALS, None), Latents(Z, Z)
    bcr, zcr = BalancedConsistency(10.0, 4.0), LatentConsistency(5.0, 0.0, sigma=0.1)
    bcr.consistency_transform = Mirror()
    objective = get_objective("bce", augment=AddOne(), regularizers=[bcr, zcr])
    stats = objective.d_loss(G, D, real, latents, torch.Generator().manual_seed(5)).stats
    assert stats["bcr_real"].item() == 9.0 and stats["bcr_fake"].item() == 26.0  # test_bcr_matches_hand_computed_values
    cr = Consistency(10.0)
    cr.consistency_transform = Mirror()
    cr_objective = get_objective("bce", augment=AddOne(), regularizers=[cr])
    cr_stats = cr_objective.d_loss(G, D, real, latents, torch.Generator().manual_seed(5)).stats
    assert cr_stats["cr"].item() == 9.0
    # the phase draws nothing before zCR here (no random augmentation, G without noise): dz from a fresh stream
    dz = zcr.nearby(latents, torch.Generator().manual_seed(5)).z - Z  # (4, 2)
    torch.testing.assert_close(stats["zcr_dis"], (3 * dz[:, 0] + 5 * dz[:, 1]).square().mean())


def test_the_consistency_branch_adds_no_gradient_path_to_the_phases_input():
    # R1 makes the phase's reals require grad; the term's gradient w.r.t. them must come through the phase's own
    # logits D(x) = w . x only (w = (3, 1)): mean_i (D(T x_i) - D(x_i))^2 gives -2 gap_i w / B per image, while a
    # live branch would add 2 gap_i T'w / B (T'w = (1, 3) for the mirror)
    G, D = nets()
    reals = REALS.clone().requires_grad_(True)
    fakes = G(Z).detach()
    real, latents, rng = Batch(REALS, None), Latents(Z, Z), torch.Generator().manual_seed(0)
    ctx = PhaseContext("d", 0, D(reals), D(fakes), real, latents, reals, fakes, G, D, rng)
    bcr = BalancedConsistency(1.0, 0.0)
    bcr.consistency_transform = Mirror()
    (grad,) = torch.autograd.grad(bcr.d_term(ctx).loss, reals)
    gaps = torch.tensor([-2.0, 0.0, 4.0, 4.0])  # 2(b - a)
    expected = -2 * gaps[:, None] * torch.tensor([3.0, 1.0]) / 4
    torch.testing.assert_close(grad.view(4, 2), expected)


def test_zcr_matches_hand_computed_values_given_its_draw():
    G, D = nets()
    zcr = LatentConsistency(5.0, 0.5, sigma=0.1)
    d_term, g_term = zcr.d_term(d_context(G, D, seed=1)), zcr.g_term(g_context(G, D, seed=1))
    # each phase draws dz first from its rng: read it back from a same-seeded stream
    dz = zcr.nearby(Latents(Z, Z), torch.Generator().manual_seed(1)).z - Z  # (4, 2)
    dis = (3 * dz[:, 0] + 5 * dz[:, 1]).square().mean()  # D(G(z + dz)) - D(G(z)) = (3, 5) . dz
    gen = ((dz[:, 0] + 2 * dz[:, 1]).square() + dz[:, 1].square()).mean() / 2  # A dz, a mean over the 2 pixels too
    torch.testing.assert_close(d_term.stats["zcr_dis"], dis)
    torch.testing.assert_close(d_term.loss, 5.0 * dis)
    torch.testing.assert_close(g_term.stats["zcr_gen"], gen)
    torch.testing.assert_close(g_term.loss, -0.5 * gen)  # G is pushed apart: a negative term


def test_zcr_perturbs_the_noise_only_by_sigma():
    space = LatentSpace(16, "normal", n_cat=3, n_cont=2)
    latents = space.draw(4096, torch.Generator().manual_seed(0))
    zcr = LatentConsistency(1.0, 1.0, sigma=0.05)
    near = zcr.nearby(latents, torch.Generator().manual_seed(1))
    dz = near.z - latents.z
    torch.testing.assert_close(near.input[:, :16], near.z)
    assert torch.equal(near.input[:, 16:], latents.input[:, 16:])  # the InfoGAN codes are not moved
    assert torch.equal(near.cat, latents.cat) and torch.equal(near.cont, latents.cont)
    assert abs(float(dz.std()) - 0.05) < 0.002 and abs(float(dz.mean())) < 0.002
    again = zcr.nearby(latents, torch.Generator().manual_seed(1))
    assert torch.equal(again.z, near.z)  # from the rng only


def test_gradients_reach_d_in_the_d_phase_and_g_in_the_g_phase():
    G, D = nets()
    for reg in (BalancedConsistency(1.0, 1.0, "xflip"), LatentConsistency(1.0, 0.0)):
        loss = reg.d_term(d_context(G, D, seed=2)).loss
        assert all(g is not None and g.abs().sum() > 0 for g in grads(loss, D)), type(reg).__name__
        assert all(g is None for g in grads(loss, G)), f"{type(reg).__name__}: the D term reached G"
    loss = LatentConsistency(0.0, 1.0).g_term(g_context(G, D, seed=2)).loss
    assert all(g is not None and g.abs().sum() > 0 for g in grads(loss, G))
    assert all(g is None for g in grads(loss, D)), "the zCR G term reached D"
    assert BalancedConsistency(1.0, 1.0).g_term(g_context(G, D)).loss is None  # bCR is D-phase only


def test_the_objective_adds_the_terms_to_its_phases():
    G, D = nets()
    real, latents = Batch(REALS, None), Latents(Z, Z)
    zcr = LatentConsistency(2.0, 0.5)
    with_zcr, plain = get_objective("bce", regularizers=[zcr]), get_objective("bce")
    for phase in ("d", "g"):
        results = [getattr(o, f"{phase}_loss")(G, D, real, latents, torch.Generator().manual_seed(4))
                   for o in (with_zcr, plain)]  # fmt: skip
        term = getattr(zcr, f"{phase}_term")((d_context if phase == "d" else g_context)(G, D, seed=4))
        torch.testing.assert_close(results[0].loss - results[1].loss, term.loss)
        assert f"zcr_{'dis' if phase == 'd' else 'gen'}" in results[0].stats


def test_off_by_default_and_on_by_either_weight():
    defaults = GAN.declared_options().defaults()
    assert {"cr", "bcr", "zcr"} <= set(REGULARIZERS.names())
    kinds = (Consistency, BalancedConsistency, LatentConsistency)
    assert not any(isinstance(r, kinds) for r in build_regularizers(defaults))
    assert Consistency.from_options(defaults) is None
    cr = Consistency.from_options({**defaults, "cr": 10.0, "cr_transform": "xflip,translation"})
    assert (cr.weight, cr.transform) == (10.0, "xflip,translation")
    assert BalancedConsistency.from_options(defaults) is None and LatentConsistency.from_options(defaults) is None
    bcr = BalancedConsistency.from_options({**defaults, "bcr_fake": 10.0, "bcr_transform": "xflip,translation"})
    assert (bcr.real_weight, bcr.fake_weight, bcr.transform) == (0.0, 10.0, "xflip,translation")
    zcr = LatentConsistency.from_options({**defaults, "zcr_gen": 0.5})
    assert (zcr.dis_weight, zcr.gen_weight, zcr.sigma) == (0.0, 0.5, 0.05)
    G, D = nets()
    ctx = d_context(G, D)
    start = ctx.rng.get_state()
    assert zcr.d_term(ctx) == (None, {}) and torch.equal(start, ctx.rng.get_state())  # off in the D phase: no draw


@pytest.mark.parametrize(
    ("build", "flag"),
    [
        (lambda: BalancedConsistency(-1.0, 0.0), "--bcr-real"),
        (lambda: BalancedConsistency(1.0, 1.0, "translation,nope"), "--bcr-transform"),
        (lambda: BalancedConsistency(1.0, 1.0, "xflip,xflip"), "--bcr-transform"),
        (lambda: LatentConsistency(0.0, -0.5), "--zcr-gen"),
        (lambda: Consistency(-1.0), "--cr"),
        (lambda: Consistency(1.0, "nope"), "--cr-transform"),
        (lambda: LatentConsistency(1.0, 0.0, sigma=0.0), "--zcr-sigma"),
    ],
)
def test_bad_options_are_one_line(build, flag):
    with pytest.raises(ConfigError) as caught:
        build()
    assert flag in str(caught.value) and "\n" not in str(caught.value)


def test_weights_are_schedulable():
    gan = GAN("mlp", latent_dim=8, image_size=8, bcr_real=10.0, bcr_real_schedule="linear", bcr_real_final=0.0,
              zcr_gen=0.5, zcr_gen_schedule="linear", zcr_gen_final=1.5)  # fmt: skip
    values = gan.schedules.apply(gan, 5, 10)
    assert values == {"bcr_real_real_weight": 5.0, "zcr_gen_gen_weight": 1.0}
    bcr, zcr = gan.objective.regularizer(BalancedConsistency), gan.objective.regularizer(LatentConsistency)
    assert (bcr.real_weight, zcr.gen_weight) == (5.0, 1.0)
