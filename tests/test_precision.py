"""Mixed precision with two optimizers: bf16 trains on CPU; 16-mixed's skipped steps are counted exactly."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from test_module import image_loader, snapshot

from gan_lightning import GAN
from gan_lightning.training.steps import networks_to_compile

from conftest import cpu_trainer


@pytest.fixture
def eager_compile() -> Iterator[None]:
    """Make eager torch.compile's default backend during the test: Dynamo traces, without Inductor's slow codegen."""
    previous = torch.compiler.get_default_backend()
    torch.compiler.set_default_backend("eager")
    yield
    torch.compiler.set_default_backend(previous)


def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Module]:
    """The modules whose `nn.Module.compile` (in place) is called from now on; they are still compiled."""
    calls: list[torch.nn.Module] = []
    original = torch.nn.Module.compile

    def compile(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        calls.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "compile", compile)
    return calls


def compiled_calls(module: torch.nn.Module) -> list[bool]:
    """Per later call of `module`, whether it ran under torch.compile (its pre-hooks run inside the compiled call)."""
    calls: list[bool] = []
    module.register_forward_pre_hook(lambda m, args: calls.append(torch.compiler.is_compiling()))
    return calls


def test_bf16_mixed_trains_on_cpu(tmp_path):
    gan = GAN("dcgan_mnist", latent_dim=8)
    before = snapshot(gan.generator)
    trainer = cpu_trainer(tmp_path, precision="bf16-mixed", max_steps=gan.optimizer_steps(3))
    trainer.fit(gan, image_loader())
    assert gan.iteration == 3
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in gan.parameters())  # fp32 masters
    assert any(not torch.equal(before[k], p) for k, p in gan.generator.named_parameters())
    assert gan.sample(4).dtype == torch.float32


def test_fp16_overflow_skips_are_counted(tmp_path):
    # A loss scale of 2^40 overflows fp16 gradients, so every step is skipped and the scale halves each time.
    gan = GAN("dcgan_mnist", latent_dim=8)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    before = snapshot(gan.generator)
    trainer = cpu_trainer(tmp_path, plugins=[plugin], max_steps=gan.optimizer_steps(3))
    trainer.fit(gan, image_loader())
    halvings = round(math.log2(2.0**40 / scaler.get_scale()))
    assert halvings == 6  # 3 iterations x (D + G)
    assert int(gan.amp.skipped) == halvings
    assert all(torch.equal(before[k], p) for k, p in gan.generator.named_parameters())  # skipped, not applied


def test_channels_last_trains_and_matches_layout(tmp_path):
    gan = GAN("dcgan", image_size=32, ngf=8, ndf=8, latent_dim=8, channels=1, channels_last=True)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, image_loader(size=32))
    conv = next(m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert gan.iteration == 2 and gan.sample(2).shape == (2, 1, 32, 32)


@pytest.mark.slow
def test_compile_keeps_checkpoint_keys(tmp_path):
    gan = GAN("dcgan_mnist", latent_dim=8, compile=True)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, image_loader())
    assert set(gan.state_dict()) == set(GAN("dcgan_mnist", latent_dim=8).state_dict())


@pytest.mark.parametrize(
    ("loss", "options", "twice"),
    [
        ("bce", {}, False),
        ("hinge", {}, False),
        ("wgan-gp", {}, True),
        ("wgan-gp", {"gp_weight": 0.0}, False),
        ("bce", {"r1": 1.0}, True),
        ("rpgan", {"r2": 0.5}, True),
    ],
)
def test_compile_leaves_d_eager_exactly_when_a_penalty_needs_a_double_backward(loss, options, twice):
    gan = GAN("mlp", latent_dim=8, loss=loss, compile=True, **options)
    assert gan.objective.differentiates_d_twice is twice
    expected = [gan.generator] if twice else [gan.generator, gan.discriminator]
    compiled = networks_to_compile(gan.generator, gan.discriminator, gan.objective)
    assert [id(n) for n in compiled] == [id(n) for n in expected]


def test_compile_happens_once_per_module_with_one_notice(caplog, monkeypatch, eager_compile):
    gan = GAN("mlp", latent_dim=8, loss="rpgan", r1=1.0, compile=True)
    compiled = compile_calls(monkeypatch)
    with caplog.at_level("INFO"):
        gan.configure_model()
        gan.configure_model()  # Lightning calls it at every trainer entry point
    assert [id(m) for m in compiled] == [id(gan.generator)]
    g_calls, d_calls = compiled_calls(gan.generator), compiled_calls(gan.discriminator)
    gan.discriminator(gan.sample(2, ema=False))
    assert g_calls == [True] and d_calls == [False]  # G runs compiled, in place; D eagerly
    assert sum("discriminator stays eager" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
def test_compile_trains_with_r1_and_r2(tmp_path, monkeypatch):
    # torch.compile has no double backward: compiling D as well failed in R1's backward
    gan = GAN("mlp", latent_dim=8, loss="rpgan", r1=1.0, r2=1.0, compile=True)
    compiled = compile_calls(monkeypatch)
    g_calls, d_calls = compiled_calls(gan.generator), compiled_calls(gan.discriminator)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, image_loader())
    assert gan.iteration == 2
    assert [id(m) for m in compiled] == [id(gan.generator)]
    assert g_calls and all(g_calls) and d_calls and not any(d_calls)
    assert all(torch.isfinite(p).all() for p in gan.parameters())
