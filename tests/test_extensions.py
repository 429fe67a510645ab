"""Conditional GAN, InfoGAN, EMA generator, and the hinge / WGAN-GP objectives inside real training steps."""

from __future__ import annotations

import math

import pytest
import torch
from test_module import TinyD, TinyG, changed, snapshot
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.core.errors import ConfigError
from gan_lightning.training.objectives import mutual_information_loss

from conftest import cpu_trainer


def labelled_loader(n: int = 64, batch_size: int = 16, size: int = 28) -> DataLoader:
    images = torch.rand(n, 1, size, size) * 2 - 1
    return DataLoader(TensorDataset(images, torch.arange(n) % 10), batch_size=batch_size, drop_last=True)


def test_conditional_generator_input_and_sampling():
    gan = GAN("mlp", latent_dim=8, conditional=True)
    assert gan.generator.net[0].in_features == 8 + 10  # noise then one-hot label
    labels = torch.tensor([3, 3, 7])
    latents = gan.latents.draw(3, torch.Generator().manual_seed(0), labels=labels)
    assert torch.equal(latents.labels, labels) and torch.equal(latents.input[:, 8:].argmax(1), labels)
    assert gan.sample(labels=labels).shape == (3, 1, 28, 28)
    assert gan.sample(5).shape == (5, 1, 28, 28)  # labels drawn when not given
    grids = gan.latents.grid(40, torch.Generator().manual_seed(0))
    latents, per_row = grids[""]
    assert per_row == 4 and torch.equal(latents.input[:, 8:].argmax(1), torch.arange(10).repeat_interleave(4))


def test_conditional_labels_change_the_discriminator_logit():
    gan = GAN("mlp", latent_dim=8, conditional=True)
    with torch.no_grad():
        gan.discriminator.projection.embed.weight.normal_()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    a = gan.discriminator(x, torch.zeros(4, dtype=torch.long)).logits
    b = gan.discriminator(x, torch.ones(4, dtype=torch.long)).logits
    assert not torch.allclose(a, b)


def test_conditional_training_updates_embedding_and_needs_labels(tmp_path):
    gan = GAN("mlp", latent_dim=8, conditional=True)
    embed = gan.discriminator.projection.embed.weight
    before = embed.detach().clone()
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2)).fit(gan, labelled_loader())
    assert not torch.equal(before, embed)
    unlabelled = DataLoader(TensorDataset(torch.rand(32, 1, 28, 28)), batch_size=16)
    with pytest.raises(ConfigError, match="needs \\(images, labels\\)"):
        cpu_trainer(tmp_path, max_steps=2).fit(GAN("mlp", latent_dim=8, conditional=True), unlabelled)


def test_conditional_needs_a_split_discriminator():
    with pytest.raises(ConfigError, match="body \\+ head"):
        GAN(generator=TinyG(14), discriminator=TinyD(), latent_dim=4, conditional=True)


def test_infogan_codes_grids_and_q_head_gradients(tmp_path):
    gan = GAN("dcgan_mnist", latent_dim=16, infogan=True, n_cont=2)
    drawn = gan.latents.draw(6, torch.Generator().manual_seed(0))
    assert drawn.input.shape == (6, 16 + 10 + 2) and drawn.cat.shape == (6,) and drawn.cont.shape == (6, 2)
    assert drawn.cont.min() >= -1 and drawn.cont.max() <= 1
    grids = gan.latents.grid(80, torch.Generator().manual_seed(0))
    assert set(grids) == {"", "/code1"}
    latents, per_row = grids[""]
    latents = latents.input
    assert per_row == 8
    assert torch.equal(latents[:, 16:26].argmax(1), torch.arange(10).repeat_interleave(8))  # a row per category
    torch.testing.assert_close(latents[:8, 26], torch.linspace(-1, 1, 8))  # columns sweep code 0
    assert torch.equal(latents[:8, 27], torch.zeros(8))
    q_head = gan.discriminator.q_head
    q_before = snapshot(q_head)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2)).fit(gan, labelled_loader())
    assert changed(q_before, q_head) == {k for k, _ in q_head.named_parameters()}


def test_infogan_mutual_information_loss_falls(tmp_path, fake_mnist_dir):
    # On data with classes (the fake set's ten bars, as real digits) the categorical code becomes recoverable
    # within a few hundred iterations; on unstructured data G's adversarial gradient drowns the information term
    # that early.
    from gan_lightning.data import MNISTDataModule

    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8, infogan=True)
    rng = torch.Generator().manual_seed(1)

    def categorical_ce() -> float:
        with torch.no_grad():
            latents = gan.latents.draw(512, rng)
            h = gan.discriminator(gan.generator(latents.input)).features
            return mutual_information_loss(gan.discriminator.q_head, h, latents)[1].item()

    before = categorical_ce()
    assert before == pytest.approx(math.log(10), abs=0.1)  # chance
    dm = MNISTDataModule(fake_mnist_dir, batch_size=64, download=False)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(400)).fit(gan, dm)
    assert categorical_ce() < 0.5 * before


def test_ema_used_for_sampling_saved_and_restored(tmp_path):
    gan = GAN("dcgan_mnist", latent_dim=8, ema_decay=0.5)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(3))
    trainer.fit(gan, labelled_loader())
    z = gan.latents.draw(4, torch.Generator().manual_seed(0)).input
    assert not torch.allclose(gan.sample(latents=z, ema=True), gan.sample(latents=z, ema=False))
    torch.testing.assert_close(gan.sample(latents=z), gan.sample(latents=z, ema=True))  # EMA by default
    trainer.save_checkpoint(tmp_path / "ema.ckpt")
    loaded = GAN.load_from_checkpoint(tmp_path / "ema.ckpt")
    torch.testing.assert_close(loaded.sample(latents=z), gan.sample(latents=z))
    with pytest.raises(ValueError, match="no EMA generator"):
        GAN("mlp").sample(2, ema=True)


@pytest.mark.parametrize("loss,precision", [("hinge", "32-true"), ("wgan-gp", "32-true"), ("wgan-gp", "bf16-mixed")])
def test_hinge_and_wgan_gp_train(tmp_path, loss, precision):
    gan = GAN("dcgan_mnist", latent_dim=8, loss=loss)
    assert gan.d_steps == (5 if loss == "wgan-gp" else 1)
    g0, d0 = snapshot(gan.generator), snapshot(gan.discriminator)
    trainer = cpu_trainer(tmp_path, precision=precision, max_steps=gan.optimizer_steps(2), log_every_n_steps=1)
    trainer.fit(gan, labelled_loader(n=40 * gan.d_steps, batch_size=8 * gan.d_steps))
    assert changed(g0, gan.generator) and changed(d0, gan.discriminator)
    assert torch.isfinite(trainer.callback_metrics["train/d_loss"])
    assert trainer.callback_metrics["train/grad_norm_d"] > 0 and trainer.callback_metrics["train/grad_norm_g"] > 0


def test_wgan_gp_penalty_enters_the_critic_loss(tmp_path):
    # With the penalty weight raised, the critic's loss is dominated by it: a large positive number.
    losses = {}
    for weight in (0.0, 1000.0):
        torch.manual_seed(0)
        gan = GAN("mlp", latent_dim=8, loss="wgan-gp", gp_weight=weight, d_steps=1)
        trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1), log_every_n_steps=1)
        trainer.fit(gan, labelled_loader(n=16, batch_size=16))
        losses[weight] = trainer.callback_metrics["train/d_loss"].item()
    assert losses[1000.0] > losses[0.0] + 10


@pytest.mark.parametrize("options", [{"conditional": True}, {"infogan": True}, {}])
def test_latent_split_inverts_draw(options):
    gan = GAN("mlp", latent_dim=5, **options)
    drawn = gan.latents.draw(6, torch.Generator().manual_seed(0))
    parts = gan.latents.split(drawn.input)
    for name in ("z", "labels", "cat", "cont"):
        a, b = getattr(drawn, name), getattr(parts, name)
        assert (a is None and b is None) or torch.equal(a, b), name
    with pytest.raises(ConfigError, match="latents must have shape"):
        gan.latents.split(drawn.input[:, 1:])
