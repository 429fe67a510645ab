"""Each objective against values computed by hand on small tensors."""

import math

import pytest
import torch

from gan_lightning.training.objectives import OBJECTIVES, get_objective, gradient_penalty

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_registry_names():
    # the built-in losses, among any others a loss file or plugin registers
    assert {"bce", "hinge", "lsgan", "minimax", "rpgan", "wgan-gp"} <= set(OBJECTIVES.names())
    with pytest.raises(ValueError, match="unknown loss 'l2'; choose one of: bce, hinge"):
        get_objective("l2")


def test_bce_matches_cs231n_formula():
    # cs231n: bce(real, 1) + bce(fake, 0), each averaged over the batch.
    real_term = -(math.log(_sig(2.0)) + math.log(_sig(-1.0))) / 2
    fake_term = -(math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))) / 2
    loss = get_objective("bce")
    assert loss.d_adversarial(REAL, FAKE).item() == pytest.approx(real_term + fake_term, rel=1e-6)
    # Non-saturating G: -mean log D(G(z)).
    expected_g = -(math.log(_sig(0.5)) + math.log(_sig(-3.0))) / 2
    assert loss.g_adversarial(FAKE, None).item() == pytest.approx(expected_g, rel=1e-6)


def test_bce_agrees_with_torch_reference():
    real, fake = torch.randn(16), torch.randn(16)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(16)) + bce(fake, torch.zeros(16))
    torch.testing.assert_close(get_objective("bce").d_adversarial(real, fake), expected)
    torch.testing.assert_close(get_objective("bce").g_adversarial(fake, None), bce(fake, torch.ones(16)))


def test_minimax_generator_is_saturating_objective():
    expected = (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))) / 2
    loss = get_objective("minimax")
    assert loss.g_adversarial(FAKE, None).item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(loss.d_adversarial(REAL, FAKE), get_objective("bce").d_adversarial(REAL, FAKE))


def test_lsgan_matches_cs231n_equation_9():
    # D: 1/2 mean((D(x)-1)^2) + 1/2 mean(D(G(z))^2); G: 1/2 mean((D(G(z))-1)^2)
    expected_d = 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 3.0**2) / 2
    expected_g = 0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2
    loss = get_objective("lsgan")
    assert loss.d_adversarial(REAL, FAKE).item() == pytest.approx(expected_d)
    assert loss.g_adversarial(FAKE, None).item() == pytest.approx(expected_g)


def test_hinge_and_wasserstein():
    hinge = get_objective("hinge")
    # relu(1 - [2, -1]) = [0, 2]; relu(1 + [0.5, -3]) = [1.5, 0]
    assert hinge.d_adversarial(REAL, FAKE).item() == pytest.approx(1.0 + 0.75)
    assert hinge.g_adversarial(FAKE, None).item() == pytest.approx(1.25)
    wgan = get_objective("wgan-gp")
    assert wgan.d_adversarial(REAL, FAKE).item() == pytest.approx(-1.25 - 0.5)
    assert wgan.g_adversarial(FAKE, None).item() == pytest.approx(1.25)  # -mean([0.5, -3])
    assert wgan.default_d_steps == 5 and wgan.gradient_penalty


def test_losses_stay_finite_for_extreme_logits():
    huge = torch.tensor([1e4, -1e4])
    for name in ("bce", "minimax"):
        loss = get_objective(name)
        assert torch.isfinite(loss.d_adversarial(huge, -huge)) and torch.isfinite(loss.g_adversarial(huge, None))
        assert torch.isfinite(loss.g_adversarial(-huge, None))


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


class LinearD(torch.nn.Module):
    """D(x) = <w, flatten(x)>: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def _phase_setup():
    from gan_lightning.models.heads import Critic
    from gan_lightning.training.latents import LatentSpace
    from gan_lightning.training.objectives import Batch

    G = torch.nn.Linear(3, 2)
    D = Critic(LinearD(torch.tensor([3.0, 4.0])))
    real = Batch(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    latents = LatentSpace(3).draw(2, torch.Generator().manual_seed(0))
    return G, D, real, latents


def test_phase_losses_match_hand_computed_values():
    G, D, real, latents = _phase_setup()
    fake = G(latents.input).detach()
    real_logits, fake_logits = real.images @ D.net.w.detach(), fake @ D.net.w.detach()  # [3, -4], ...
    rng = torch.Generator().manual_seed(1)
    bce = get_objective("bce")
    d = bce.d_loss(G, D, real, latents, rng)
    expected = torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()
    torch.testing.assert_close(d.loss, expected)
    torch.testing.assert_close(d.stats["real_logits"], torch.tensor([3.0, -4.0]))
    assert d.loss.grad_fn is not None and not any(p.grad is not None for p in G.parameters())
    g = bce.g_loss(G, D, real, latents, rng)
    torch.testing.assert_close(g.loss, torch.nn.functional.softplus(-fake_logits).mean())
    # WGAN-GP: the penalty of a linear critic is (||w|| - 1)^2 = 16 at every interpolate, weighted 10
    wgan = get_objective("wgan-gp")
    d = wgan.d_loss(G, D, real, latents, rng)
    torch.testing.assert_close(d.loss, fake_logits.mean() - real_logits.mean() + 10 * 16.0)
    torch.testing.assert_close(d.stats["d_loss"], d.loss)  # the logged D loss includes the penalty
    assert get_objective("wgan-gp", gp_weight=0.0).d_loss(G, D, real, latents, rng).loss.item() == pytest.approx(
        (fake_logits.mean() - real_logits.mean()).item()
    )


def test_r1_r2_closed_form_and_lazy_scaling():
    # A linear D has grad_x D = w everywhere, so E||grad||^2 = ||w||^2 = 25 on reals (R1) and fakes (R2).
    G, D, real, latents = _phase_setup()
    rng = torch.Generator().manual_seed(1)
    plain = get_objective("bce").d_loss(G, D, real, latents, rng).loss
    for r1, r2 in ((1.0, 0.0), (0.0, 2.0), (1.0, 1.0)):
        result = get_objective("bce", r1=r1, r2=r2).d_loss(G, D, real, latents, rng)
        torch.testing.assert_close(result.loss, plain + (r1 + r2) / 2 * 25.0)
        if r1:
            assert result.stats["r1"].item() == pytest.approx(25.0)
    lazy = get_objective("bce", r1=1.0, reg_every=4)
    torch.testing.assert_close(lazy.d_loss(G, D, real, latents, rng, step=8).loss, plain + 4 * 0.5 * 25.0)
    torch.testing.assert_close(lazy.d_loss(G, D, real, latents, rng, step=9).loss, plain)  # not a reg step


def test_r1_gradient_reaches_d_parameters_and_not_g():
    G, D, real, latents = _phase_setup()
    result = get_objective("bce", r1=10.0).d_loss(G, D, real, latents, torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(result.loss, [D.net.w])
    plain = get_objective("bce").d_loss(G, D, real, latents, torch.Generator().manual_seed(0))
    (plain_grad,) = torch.autograd.grad(plain.loss, [D.net.w])
    torch.testing.assert_close(grad - plain_grad, 10.0 / 2 * 2 * D.net.w.detach())  # d/dw (gamma/2 ||w||^2)
    assert all(p.grad is None for p in G.parameters())


def test_r1_under_bf16_autocast_matches_fp32():
    torch.manual_seed(0)
    from gan_lightning.models.heads import Critic
    from gan_lightning.regularizers.zero_centered import zero_centered_penalty
    from gan_lightning.training.objectives import Batch

    D = Critic(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)))
    x = torch.randn(4, 1, 4, 4, requires_grad=True)
    expected = zero_centered_penalty(x, D(x).logits)
    G = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Unflatten(1, (1, 4, 4)))
    from gan_lightning.training.latents import LatentSpace

    latents = LatentSpace(3).draw(4, torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = get_objective("bce", r1=1.0).d_loss(G, D, Batch(x.detach()), latents, torch.Generator())
    # computed in its own fp32 forward: equal to the fp32 value, not a bf16 approximation
    torch.testing.assert_close(result.stats["r1"], expected.detach(), rtol=1e-5, atol=1e-7)


def test_wgan_gp_under_bf16_autocast_matches_fp32():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real, fake = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = gradient_penalty(critic, real, fake.bfloat16(), torch.Generator().manual_seed(3))
    # its own fp32 forward and double backward: the fp32 value of the same (bf16) fakes, not a bf16 approximation
    expected = gradient_penalty(critic, real, fake.bfloat16().float(), torch.Generator().manual_seed(3))
    assert result.dtype == torch.float32 and result.requires_grad
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-7)


def test_rpgan_matches_hand_computed_values():
    rp = get_objective("rpgan")
    # D: softplus(-(real - fake)) per pair; G: softplus(-(fake - real)); pairs (2, 0.5) and (-1, -3)
    expected_d = (math.log1p(math.exp(-(2 - 0.5))) + math.log1p(math.exp(-(-1 + 3)))) / 2
    expected_g = (math.log1p(math.exp(-(0.5 - 2))) + math.log1p(math.exp(-(-3 + 1)))) / 2
    assert rp.d_adversarial(REAL, FAKE).item() == pytest.approx(expected_d)
    assert rp.g_adversarial(FAKE, REAL).item() == pytest.approx(expected_g)
    assert rp.g_needs_real and rp.chance_d_loss == pytest.approx(math.log(2))
    huge = torch.tensor([1e4, -1e4])
    assert torch.isfinite(rp.d_adversarial(huge, -huge)) and torch.isfinite(rp.g_adversarial(-huge, huge))


def test_ragan_matches_hand_computed_values():
    ra = get_objective("ragan")

    def softplus(t: float) -> float:
        return math.log1p(math.exp(t))

    # mean real 0.5, mean fake -1.25: reals minus mean fake [3.25, 0.25], fakes minus mean real [0, -3.5]
    expected_d = (softplus(-3.25) + softplus(-0.25)) / 2 + (softplus(0.0) + softplus(-3.5)) / 2
    expected_g = (softplus(-0.0) + softplus(3.5)) / 2 + (softplus(3.25) + softplus(0.25)) / 2
    assert ra.d_adversarial(REAL, FAKE).item() == pytest.approx(expected_d)
    assert ra.g_adversarial(FAKE, REAL).item() == pytest.approx(expected_g)
    assert ra.g_needs_real and ra.chance_d_loss == pytest.approx(2 * math.log(2))


def test_rpgan_g_phase_sees_the_real_batch():
    G, D, real, latents = _phase_setup()
    fake = G(latents.input)
    g = get_objective("rpgan").g_loss(G, D, real, latents, torch.Generator())
    real_logits, fake_logits = real.images @ D.net.w.detach(), fake @ D.net.w.detach()
    torch.testing.assert_close(g.loss, torch.nn.functional.softplus(real_logits - fake_logits).mean())


def test_spectral_norm_keeps_the_largest_singular_value_near_one():
    from gan_lightning import GAN

    gan = GAN("dcgan", image_size=32, ngf=8, ndf=8, latent_dim=8, spectral_norm=True, conditional=True)
    D = gan.discriminator.train()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    for _ in range(30):  # power iterations run in train-mode forwards
        D(x, torch.zeros(4, dtype=torch.long))
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05), m


def test_a_lazy_regularizer_is_logged_at_every_logging_step(tmp_path):
    """Lazy R1 every 16 D updates, logged every 5 iterations: the logging steps (iteration index 4, 9) are never
    due, yet train/r1 is there, holding the value of its last due update (step 0)."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.data import DataLoader, TensorDataset

    from gan_lightning import GAN

    from conftest import cpu_trainer

    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8, image_size=8, loss="rpgan", r1=1.0, reg_every=16)
    logger = TensorBoardLogger(tmp_path, name="lazy")
    trainer = cpu_trainer(tmp_path, logger=logger, log_every_n_steps=5, max_steps=gan.optimizer_steps(10))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(64, 1, 8, 8) * 2 - 1), batch_size=16))
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    r1 = [e.value for e in events.Scalars("train/r1")]
    assert len(r1) == 2 and r1[0] == r1[1] > 0  # held from the one due update
