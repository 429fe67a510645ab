"""The optimizers' component: Adam for G and D, and D's weight decay (`--d-weight-decay`)."""

from __future__ import annotations

import torch
from test_module import image_loader, snapshot

from gan_lightning import GAN
from gan_lightning.commands.train import main

from conftest import cpu_trainer


def test_d_weight_decay_reaches_only_ds_optimizer_and_changes_every_d_weight(tmp_path):
    trained = {}
    for decay in (0.0, 0.5):
        torch.manual_seed(0)
        gan = GAN("mlp", latent_dim=8, d_weight_decay=decay)
        opt_g, opt_d = gan.configure_optimizers()
        assert [g["weight_decay"] for g in opt_g.param_groups] == [0.0]
        assert [g["weight_decay"] for g in opt_d.param_groups] == [decay]
        trainer = cpu_trainer(tmp_path / str(decay), max_steps=gan.optimizer_steps(1))
        trainer.fit(gan, image_loader(n=16, batch_size=16))
        trained[decay] = (snapshot(gan.discriminator), snapshot(gan.generator))
    d0, d5 = trained[0.0][0], trained[0.5][0]
    assert all(not torch.equal(d0[k], d5[k]) for k in d0)  # every D tensor moved differently


def test_a_changed_d_weight_decay_takes_effect_on_resume(tmp_path, fake_mnist_dir):
    base = ["--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "16", "--latent-dim", "8",
            "--accelerator", "cpu", "--log-dir", str(tmp_path), "--name", "run"]  # fmt: skip
    assert main([*base, "--max-steps", "2"]) == 0
    assert main([*base, "--max-steps", "3", "--d-weight-decay", "0.01", "--ckpt-path", "last"]) == 0
    ckpt = torch.load(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    g_state, d_state = ckpt["optimizer_states"]
    assert [g["weight_decay"] for g in d_state["param_groups"]] == [0.01]
    assert [g["weight_decay"] for g in g_state["param_groups"]] == [0.0]
    assert {int(s["step"]) for s in d_state["state"].values()} == {3}  # Adam's state went on, not restarted
    changes = (tmp_path / "run" / "version_0" / "config_changes.yaml").read_text()
    assert "d_weight_decay" in changes
