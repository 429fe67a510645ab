"""Components with state: a toy regularizer and a toy augmentation, defined only here, keep buffers that are
checkpointed and resumed bit-exactly, receive D's live outputs and the step index in both phases, and their
statistics reach TensorBoard, with no edit outside this file."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from test_callbacks import read_events
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.callbacks import GANCheckpoint
from gan_lightning.data.loading import make_train_loader
from gan_lightning.regularizers import PhaseContext, Regularizer, Term
from gan_lightning.training.objectives import NonSaturating

from conftest import cpu_trainer


class AnchoredLogits(Regularizer):
    """A LeCam-like toy: pulls D's real logits toward a moving average of its fake logits (a buffer)."""

    def __init__(self, weight: float = 0.1, decay: float = 0.9) -> None:
        super().__init__()
        self.weight, self.decay = weight, decay
        self.register_buffer("anchor", torch.zeros(()))
        self.register_buffer("g_steps_seen", torch.zeros((), dtype=torch.long))
        self.calls: list[tuple[str, int, bool]] = []

    def d_term(self, out: PhaseContext) -> Term:
        self.calls.append(("d", out.step, out.real_logits.requires_grad))
        self.anchor.lerp_(out.fake_logits.detach().mean(), 1 - self.decay)
        loss = self.weight * (out.real_logits - self.anchor).square().mean()
        return Term(loss, {"toy_anchor": self.anchor.clone(), "toy_term": loss})

    def g_term(self, out: PhaseContext) -> Term:
        self.calls.append(("g", out.step, out.fake_logits.requires_grad))
        self.g_steps_seen += 1
        return Term(None, {"toy_g_steps": self.g_steps_seen.float()})


class CountingShift(nn.Module):
    """A toy augmentation whose strength grows with every call it has seen (a buffer), drawn from the given rng."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        self.calls += 1
        noise = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), generator=rng, device=rng.device).to(x)
        return x + 1e-3 * self.calls.to(x.dtype) * noise

    def stats(self) -> dict[str, torch.Tensor]:
        return {"toy_aug_calls": self.calls.float()}


def make_gan() -> GAN:
    torch.manual_seed(0)
    objective = NonSaturating(augment=CountingShift(), regularizers=[AnchoredLogits()])
    return GAN("mlp", latent_dim=8, d_steps=2, objective=objective)


def loader() -> DataLoader:
    images = torch.rand(96, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    # the project's resumable loader: 3 iterations an epoch, so the checkpoint at iteration 2 is mid-epoch
    return make_train_loader(TensorDataset(images), batch_size=32, seed=1)


def state(gan: GAN) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in gan.state_dict().items()}


def test_state_is_checkpointed_and_resumes_bit_exactly(tmp_path):
    straight = make_gan()
    cpu_trainer(tmp_path / "a", max_steps=straight.optimizer_steps(4)).fit(straight, loader())

    first = make_gan()
    checkpoint = GANCheckpoint(every_n_iterations=2, dirpath=tmp_path / "ckpt")
    trainer = cpu_trainer(tmp_path / "b", max_steps=first.optimizer_steps(2), callbacks=[checkpoint],
                          enable_checkpointing=True)  # fmt: skip
    trainer.fit(first, loader())
    assert first.objective.regularizers["AnchoredLogits"].anchor != 0  # there is state to restore
    resumed = make_gan()  # fresh components: everything they hold must come from the checkpoint
    trainer = cpu_trainer(tmp_path / "c", max_steps=resumed.optimizer_steps(4))
    trainer.fit(resumed, loader(), ckpt_path=checkpoint.last_model_path)
    expected, actual = state(straight), state(resumed)
    assert "objective.regularizers.AnchoredLogits.anchor" in actual and "objective.augment.calls" in actual
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert torch.equal(value, actual[key]), key
    # 4 iterations x (2 D updates x 2 augmented D calls + 1 in the G phase)
    assert int(actual["objective.augment.calls"]) == 4 * (2 * 2 + 1)


def test_regularizer_gets_live_outputs_and_step_indices_and_its_stats_are_logged(tmp_path):
    gan = make_gan()
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = cpu_trainer(tmp_path, logger=logger, log_every_n_steps=1, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, loader())
    calls = gan.objective.regularizers["AnchoredLogits"].calls
    assert calls == [("d", 0, True), ("d", 1, True), ("g", 0, True), ("d", 2, True), ("d", 3, True), ("g", 1, True)]
    tags = read_events(logger.log_dir).Tags()["scalars"]
    for tag in ("train/toy_anchor", "train/toy_term", "train/toy_g_steps", "train/toy_aug_calls"):
        assert tag in tags, tag
    assert [e.value for e in read_events(logger.log_dir).Scalars("train/toy_g_steps")] == [1.0, 2.0]


def test_a_resume_may_switch_stateful_components_on_and_off(tmp_path, fake_mnist_dir):
    """ADA and LeCam are training settings: switched on at a resume they start fresh, switched off they are dropped."""
    import yaml

    from gan_lightning.commands.train import main

    base = ["--data-dir", str(fake_mnist_dir), "--no-download", "--accelerator", "cpu", "--batch-size", "16",
            "--latent-dim", "8", "--log-every", "1"]  # fmt: skip
    assert main([*base, "--log-dir", str(tmp_path / "a"), "--max-steps", "2"]) == 0
    plain = tmp_path / "a" / "mlp" / "version_0" / "checkpoints" / "last.ckpt"
    on = ["--ada-target", "0.6", "--ada-interval", "1", "--lecam", "0.3"]
    with pytest.warns(UserWarning, match="changed training flags"):
        assert main([*base, "--log-dir", str(tmp_path / "b"), "--max-steps", "4", "--ckpt-path", str(plain), *on]) == 0
    run = tmp_path / "b" / "mlp" / "version_0"
    stateful = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert float(stateful["objective.augment.p"]) > 0  # the fresh controller moved p in the two resumed iterations
    assert "objective.regularizers.lecam.alpha_real" in stateful
    assert set(yaml.safe_load((run / "config_changes.yaml").read_text())[0]["changes"]) >= {"ada_target", "lecam"}
    # the resumed run's recorded flags are reused: switching them off is explicit (`none` resets an option)
    with pytest.warns(UserWarning, match="changed training flags"):
        assert main([*base, "--log-dir", str(tmp_path / "c"), "--max-steps", "6", "--ckpt-path",
                     str(run / "checkpoints" / "last.ckpt"), "--ada-target", "none", "--lecam", "0"]) == 0  # fmt: skip
    dropped = torch.load(tmp_path / "c" / "mlp" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not [k for k in dropped["state_dict"] if k.startswith("objective.")]
