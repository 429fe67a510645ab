"""Each loss against values computed by hand on small tensors."""

import math

import pytest
import torch

from gan_lightning.losses import LOSSES, get_loss, gradient_penalty

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_registry_names():
    assert LOSSES.names() == ["bce", "hinge", "lsgan", "minimax", "wgan-gp"]
    with pytest.raises(ValueError, match="unknown loss 'l2'; choose one of: bce, hinge"):
        get_loss("l2")


def test_bce_matches_cs231n_formula():
    # cs231n: bce(real, 1) + bce(fake, 0), each averaged over the batch.
    real_term = -(math.log(_sig(2.0)) + math.log(_sig(-1.0))) / 2
    fake_term = -(math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))) / 2
    loss = get_loss("bce")
    assert loss.d(REAL, FAKE).item() == pytest.approx(real_term + fake_term, rel=1e-6)
    # Non-saturating G: -mean log D(G(z)).
    expected_g = -(math.log(_sig(0.5)) + math.log(_sig(-3.0))) / 2
    assert loss.g(FAKE).item() == pytest.approx(expected_g, rel=1e-6)


def test_bce_agrees_with_torch_reference():
    real, fake = torch.randn(16), torch.randn(16)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(16)) + bce(fake, torch.zeros(16))
    torch.testing.assert_close(get_loss("bce").d(real, fake), expected)
    torch.testing.assert_close(get_loss("bce").g(fake), bce(fake, torch.ones(16)))


def test_minimax_generator_is_saturating_objective():
    expected = (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))) / 2
    loss = get_loss("minimax")
    assert loss.g(FAKE).item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(loss.d(REAL, FAKE), get_loss("bce").d(REAL, FAKE))


def test_lsgan_matches_cs231n_equation_9():
    # D: 1/2 mean((D(x)-1)^2) + 1/2 mean(D(G(z))^2); G: 1/2 mean((D(G(z))-1)^2)
    expected_d = 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 3.0**2) / 2
    expected_g = 0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2
    loss = get_loss("lsgan")
    assert loss.d(REAL, FAKE).item() == pytest.approx(expected_d)
    assert loss.g(FAKE).item() == pytest.approx(expected_g)


def test_hinge_and_wasserstein():
    hinge = get_loss("hinge")
    # relu(1 - [2, -1]) = [0, 2]; relu(1 + [0.5, -3]) = [1.5, 0]
    assert hinge.d(REAL, FAKE).item() == pytest.approx(1.0 + 0.75)
    assert hinge.g(FAKE).item() == pytest.approx(1.25)
    wgan = get_loss("wgan-gp")
    assert wgan.d(REAL, FAKE).item() == pytest.approx(-1.25 - 0.5)
    assert wgan.default_d_steps == 5 and wgan.gradient_penalty


def test_losses_stay_finite_for_extreme_logits():
    huge = torch.tensor([1e4, -1e4])
    for name in ("bce", "minimax"):
        loss = get_loss(name)
        assert torch.isfinite(loss.d(huge, -huge)) and torch.isfinite(loss.g(huge))
        assert torch.isfinite(loss.g(-huge))


def test_gradient_penalty_closed_form():
    # For a linear critic D(x) = <w, x> the input gradient is w everywhere: penalty = (||w|| - 1)^2.
    w = torch.tensor([3.0, 4.0])
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    penalty = gradient_penalty(lambda x: x @ w, real, fake)
    assert penalty.item() == pytest.approx((5.0 - 1.0) ** 2)
    # A unit-norm critic is not penalised.
    assert gradient_penalty(lambda x: x @ (w / 5), real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_differentiates_critic_parameters():
    lin = torch.nn.Linear(2, 1)
    penalty = gradient_penalty(lambda x: lin(x).squeeze(1), torch.randn(4, 2), torch.randn(4, 2))
    penalty.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
