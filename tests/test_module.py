"""The GAN LightningModule: phase isolation, step accounting, sampling, custom networks, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.core.errors import ConfigError
from gan_lightning.training.objectives import NonSaturating

from conftest import cpu_trainer


def image_loader(n: int = 64, batch_size: int = 8, size: int = 28, channels: int = 1) -> DataLoader:
    images = torch.rand(n, channels, size, size) * 2 - 1
    return DataLoader(TensorDataset(images, torch.zeros(n, dtype=torch.long)), batch_size=batch_size, drop_last=True)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("d_steps", [1, 3])
def test_d_steps_and_max_steps_count_generator_updates(tmp_path, d_steps):
    gan = GAN("mlp", latent_dim=8, d_steps=d_steps)
    iterations = 5
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(iterations))
    trainer.fit(gan, image_loader(n=8 * d_steps * 10, batch_size=8 * d_steps))
    opt_g, opt_d = (o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers)
    g_updates = {int(s["step"]) for s in opt_g.state.values()}
    d_updates = {int(s["step"]) for s in opt_d.state.values()}
    assert g_updates == {iterations}
    assert d_updates == {iterations * d_steps}
    assert trainer.global_step == iterations * (d_steps + 1)  # Lightning counts optimizer steps
    assert gan.iteration == iterations


def test_each_d_step_sees_its_own_real_chunk(tmp_path):
    seen: dict[str, list[torch.Tensor]] = {"d": [], "g": []}

    class Spy(NonSaturating):  # an injected objective: the module calls it once per phase
        def d_loss(self, G, D, real, latents, rng, step=0):
            seen["d"].append(real.images.clone())
            return super().d_loss(G, D, real, latents, rng, step)

        def g_loss(self, G, D, real, latents, rng, step=0):
            seen["g"].append((real.images.clone(), step))
            return super().g_loss(G, D, real, latents, rng, step)

    gan = GAN("mlp", latent_dim=8, d_steps=2, objective=Spy())
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2)).fit(gan, image_loader(n=32, batch_size=16))
    assert len(seen["d"]) == 4 and seen["d"][0].shape[0] == 8 and not torch.equal(seen["d"][0], seen["d"][1])
    assert len(seen["g"]) == 2 and torch.equal(seen["g"][0][0], seen["d"][1])  # G's phase sees the last real chunk
    assert [step for _, step in seen["g"]] == [0, 1]  # and the index of its iteration


def test_uneven_batches_still_give_d_steps_updates(tmp_path):
    # 8 rows into 5 D steps: torch.chunk would give 4 chunks; every iteration must still make 5 D updates.
    gan = GAN("mlp", latent_dim=8, d_steps=5)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, image_loader(n=16, batch_size=8))
    opt_d = trainer.optimizers[1]
    assert {int(s["step"]) for s in opt_d.state.values()} == {10}
    assert gan.iteration == 2


def test_sample_eval_mode_range_and_restores_train_mode():
    gan = GAN("mlp", latent_dim=16)
    gan.train()
    out = gan.sample(5)
    assert out.shape == (5, 1, 28, 28) and not out.requires_grad
    assert out.min() >= -1 and out.max() <= 1
    assert gan.generator.training
    calls = []
    gan.generator.register_forward_pre_hook(lambda m, _: calls.append(m.training))
    gan.sample(3)
    assert calls == [False]
    z = gan.latents.noise(4, torch.Generator().manual_seed(0))
    assert z.shape == (4, 16) and z.min() >= -1 and z.max() <= 1  # uniform in (-1, 1)
    torch.testing.assert_close(gan.sample(z=z), gan.generator(z).detach())  # given latents: G's images of them
    assert gan(z).shape == (4, 1, 28, 28)


def test_normal_noise_prior():
    gan = GAN("mlp", latent_dim=64, noise="normal")
    z = gan.latents.noise(2000, torch.Generator().manual_seed(0))
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert z.abs().max() > 1  # not the uniform prior


class TinyG(nn.Module):
    def __init__(self, latent_dim: int = 4):
        super().__init__()
        self.latent_dim = latent_dim  # read back when a checkpoint records this injected network
        self.net = nn.Sequential(nn.Linear(latent_dim, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, z):
        return self.net(z)


class TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x)  # (B, 1): the module accepts (B,) or (B, 1)


def test_custom_generator_and_discriminator(tmp_path):
    g, d = TinyG(), TinyD()
    gan = GAN(generator=g, discriminator=d, latent_dim=4)
    assert gan.generator is g and gan.discriminator.net is d
    assert gan.hparams["generator"]["class"].endswith(".TinyG")  # recorded by class, weights in the state dict
    data = DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=16)
    before = snapshot(g)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(3)).fit(gan, data)
    assert changed(before, g) == {k for k, _ in g.named_parameters()}
    assert gan.sample(7).shape == (7, 2)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        GAN("nope")
    with pytest.raises(ValueError, match="unknown loss"):
        GAN(loss="wasserstein")
    with pytest.raises(ValueError, match="unknown noise"):
        GAN(noise="cauchy")
    with pytest.raises(ConfigError, match="--d-steps must be positive, got 0"):
        GAN(d_steps=0)
    with pytest.raises(ConfigError, match="both"):
        GAN(generator=TinyG())
    with pytest.raises(ConfigError, match="--lr must be positive, got -1.0"):
        GAN(lr=-1.0)


def test_checkpoint_round_trip(tmp_path):
    gan = GAN("mlp", latent_dim=12, lr=2e-4)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, image_loader())
    path = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(path)
    loaded = GAN.load_from_checkpoint(path)  # no other argument needed
    assert loaded.hparams.latent_dim == 12 and loaded.hparams.lr == 2e-4
    for (k, a), (_, b) in zip(gan.state_dict().items(), loaded.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    z = gan.latents.noise(6, torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.sample(z=z), gan.sample(z=z))
    out = loaded.sample(10)
    assert out.shape == (10, 1, 28, 28) and out.min() >= -1 and out.max() <= 1
    ckpt = torch.load(path, weights_only=True)  # nothing in it needs arbitrary code to load
    assert set(ckpt["gan_rng"]) == {"torch", "cuda", "numpy", "python"}


@pytest.mark.parametrize("loss", ["rpgan", "ragan", "bce", "hinge"])
def test_conditional_g_phase_pairs_fakes_with_the_reals_labels_when_the_loss_compares_them(loss):
    # relativistic G losses compare each fake with a real of the chunk (R3GAN passes the real labels to its G
    # phase); the D phase always does; a non-relativistic G phase draws its own labels
    from gan_lightning.training.batch import Batch
    from gan_lightning.training.latents import LatentSpace
    from gan_lightning.training.objectives import get_objective
    from gan_lightning.training.steps import adversarial_iteration

    labels = torch.arange(64) % 10
    real = Batch(torch.zeros(64, 1, 4, 4), labels)
    seen: dict[str, torch.Tensor] = {}

    def record(phase_name):
        def update(phase, chunk, drawn):
            seen[phase_name] = drawn.labels
            return None

        return update

    objective = get_objective(loss)
    adversarial_iteration(real, 0, G=nn.Identity(), D=nn.Identity(), latents=LatentSpace(4, num_classes=10),
                          objective=objective, d_steps=1, rng=torch.Generator().manual_seed(0),
                          update_d=record("d"), update_g=record("g"))  # fmt: skip
    assert torch.equal(seen["d"], labels)
    assert torch.equal(seen["g"], labels) == objective.g_needs_real


def test_the_largest_seed_trains_and_a_negative_one_still_builds(tmp_path):
    # the per-iteration noise seed grows as seed x 1e15: the largest seed must still seed torch's generator
    gan = GAN("mlp", latent_dim=8, seed=2**32 - 1)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2)).fit(gan, image_loader(n=32, batch_size=16))
    assert gan.global_step == gan.optimizer_steps(2)
    assert GAN("mlp", latent_dim=8, seed=-5).hparams.seed == -5  # the train command's bound is not the module's
