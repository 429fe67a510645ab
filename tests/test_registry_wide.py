"""Every registered model x every objective x {plain, conditional, InfoGAN}, one real iteration each (timm-style).

A new registry entry is covered here with no test edits: the combinations come from the registries.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN, MODELS, OBJECTIVES
from gan_lightning.commands.train import main as train_main
from gan_lightning.core.errors import ConfigError
from gan_lightning.training.objectives import get_objective

from conftest import cpu_trainer

MODES = {"plain": {}, "conditional": {"conditional": True}, "infogan": {"infogan": True, "n_cat": 3, "n_cont": 1}}


def tiny_gan(model: str, **options) -> GAN:
    """The model at the smallest image size it supports (28, else 32), narrow widths where it has them."""
    for size in (28, 32):
        try:
            return GAN(model, image_size=size, latent_dim=8, ngf=8, ndf=8, **options)
        except ConfigError:
            continue
    raise AssertionError(f"{model} builds at neither 28 nor 32 px")


def trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    return {k: p for k, p in module.named_parameters() if p.requires_grad}


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    return {k for k, p in module.named_parameters() if not torch.equal(before[k], p)}


class PhaseProbe:
    """Wraps an objective: checks each phase's gradients inside the real training step and snapshots weights."""

    def __init__(self, inner) -> None:
        self.inner, self.seen, self.moving = inner, {}, {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def check_phase(self, phase: str, result, own: nn.Module, other: nn.Module) -> None:
        assert torch.isfinite(result.loss), f"{phase} loss {result.loss}"
        assert not any(p.requires_grad for p in other.parameters()), f"{phase}: the other network is not frozen"
        params = trainable(own)
        grads = torch.autograd.grad(result.loss, list(params.values()), retain_graph=True, allow_unused=True)
        # connected to the loss; a single entry may be exactly 0 (hinge's head bias when real and fake balance)
        missing = [k for (k, _), g in zip(params.items(), grads, strict=True) if g is None]
        assert not missing, f"{phase}: no gradient for {missing}"
        assert sum(g.abs().sum() for g in grads) > 0, f"{phase}: all gradients are zero"
        # Adam moves exactly the parameters with a non-zero gradient: the step must move those and no others
        self.moving.setdefault(phase, set()).update(
            k for (k, _), g in zip(params.items(), grads, strict=True) if g.any()
        )

    def d_loss(self, G, D, real, latents, rng, step=0):
        if "d" not in self.seen:
            self.seen["d"] = (snapshot(G), snapshot(D))
        result = self.inner.d_loss(G, D, real, latents, rng, step=step)
        self.check_phase("D phase", result, own=D, other=G)
        return result

    def g_loss(self, G, D, real, latents, rng, step=0):
        self.seen.setdefault("g", (snapshot(G), snapshot(D)))
        result = self.inner.g_loss(G, D, real, latents, rng, step=step)
        self.check_phase("G phase", result, own=G, other=D)
        return result


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("loss", OBJECTIVES.names())
@pytest.mark.parametrize("model", MODELS.names())
def test_one_iteration_isolates_phases(tmp_path, model, loss, mode):
    probe = PhaseProbe(get_objective(loss))
    torch.manual_seed(0)
    gan = tiny_gan(model, objective=probe, **MODES[mode])
    size, n = gan.hparams.image_size, 4 * gan.d_steps
    data = TensorDataset(torch.rand(n, 1, size, size) * 2 - 1, torch.arange(n) % 3)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1), log_every_n_steps=1)
    trainer.fit(gan, DataLoader(data, batch_size=n))
    assert gan.iteration == 1
    (g0, d0), (g1, d1) = probe.seen["d"], probe.seen["g"]
    all_g, all_d = set(g0), set(d0)
    assert len(probe.moving["D phase"]) > len(all_d) // 2
    # D phase: the D parameters with a gradient moved (heads included), G did not.
    assert {k for k in all_g if not torch.equal(g0[k], g1[k])} == set(), "the D phase changed G"
    assert {k for k in all_d if not torch.equal(d0[k], d1[k])} == probe.moving["D phase"]
    # G phase: the G parameters with a gradient moved, D did not.
    assert changed(d1, gan.discriminator) == set(), "the G phase changed D"
    assert changed(g1, gan.generator) == probe.moving["G phase"]
    assert len(probe.moving["G phase"]) > len(all_g) // 2  # most of G moves (all but exact-zero gradients)
    if mode == "conditional":
        assert any(k.startswith("projection.") for k in all_d)
    if mode == "infogan":
        assert any(k.startswith("q_head.") for k in all_d)
    for name in ("train/d_loss", "train/g_loss"):
        assert torch.isfinite(trainer.callback_metrics[name])
    assert all(p.requires_grad for p in gan.generator.parameters())  # toggling restored everything
    assert all(p.requires_grad for p in gan.discriminator.parameters())


@pytest.mark.parametrize("model", MODELS.names())
def test_spectral_norm_reaches_every_weight_of_d_or_a_new_run_is_refused(model, tmp_path, fake_mnist_dir, capsys):
    # --spectral-norm promises every weight layer of D: a model whose D has layers it cannot normalise is refused by
    # the train command in one line, before any file (a GAN built in Python warns)
    size = tiny_gan(model).hparams.image_size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gan = GAN(model, image_size=size, latent_dim=8, ngf=8, ndf=8, spectral_norm=True)
    weights = [m for m in gan.discriminator.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)]
    unnormalised = sorted({type(m).__name__ for m in weights if m.weight.dim() >= 2})
    if not unnormalised:
        assert any(hasattr(m, "parametrizations") for m in gan.discriminator.modules())
        assert not [w for w in caught if "spectral_norm" in str(w.message)]
        return
    assert [w for w in caught if f"leaves D's {', '.join(unnormalised)} layers" in str(w.message)]
    argv = ["--model", model, "--spectral-norm", "--image-size", str(size), "--data-dir", str(fake_mnist_dir),
            "--no-download", "--max-steps", "1", "--log-dir", str(tmp_path / "logs")]  # fmt: skip
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drop --spectral-norm" in err and ", ".join(unnormalised) in err
    assert not (tmp_path / "logs").exists()
