"""Exact resumption, checkpoints on signals, and the non-finite-loss guard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_module import image_loader

from gan_lightning import GAN
from gan_lightning.callbacks import GANCheckpoint
from gan_lightning.commands.train import main
from gan_lightning.training.gan import NonFiniteLossError

from conftest import REPO, cpu_trainer


def train(log_dir, data_dir, *extra: str) -> None:
    argv = ["--data-dir", str(data_dir), "--no-download", "--batch-size", "32", "--latent-dim", "16",
            "--d-steps", "2", "--accelerator", "cpu", "--seed", "0", "--log-dir", str(log_dir), "--name", "run",
            "--sample-every", "1000", "--checkpoint-every", "1000", *extra]  # fmt: skip
    assert main(argv) == 0


def generator_weights(log_dir) -> dict[str, torch.Tensor]:
    ckpt = torch.load(log_dir / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("generator.")}, ckpt


@pytest.mark.parametrize(
    "model,half,extra",
    [
        ("mlp", 10, ()),
        ("mlp", 14, ()),
        ("dcgan_mnist", 4, ()),
        ("mlp", 10, ("--data-on-device",)),
        # augmentation and penalties draw from the per-iteration stream; lazy R1/R2 follow the D-step index
        (
            "mlp",
            10,
            ("--loss", "rpgan", "--r1", "1", "--r2", "1", "--reg-every", "3", "--diffaug", "color,translation,cutout"),
        ),
    ],
)
def test_resume_matches_uninterrupted_run(tmp_path, fake_mnist_dir, model, half, extra):
    # 500 training images / (32 x 2 per iteration) = 7 iterations per epoch: half=10 resumes mid-epoch, half=14
    # exactly at an epoch boundary; both runs then cross further epochs.
    train(tmp_path / "straight", fake_mnist_dir, "--model", model, "--max-steps", str(2 * half), *extra)
    train(tmp_path / "resumed", fake_mnist_dir, "--model", model, "--max-steps", str(half), *extra)
    at_half, _ = generator_weights(tmp_path / "resumed")
    train(tmp_path / "resumed", fake_mnist_dir, "--model", model, "--max-steps", str(2 * half), "--ckpt-path", "last",
          *extra)  # fmt: skip
    straight, ckpt_a = generator_weights(tmp_path / "straight")
    resumed, ckpt_b = generator_weights(tmp_path / "resumed")
    assert ckpt_a["global_step"] == ckpt_b["global_step"] == 2 * half * 3
    assert not (tmp_path / "resumed" / "run" / "version_1").exists()  # the resumed run logs into the same version
    diff = max((straight[k] - resumed[k]).abs().max().item() for k in straight)
    assert diff == 0.0, f"resumed generator differs by {diff}"  # bit-identical on CPU
    # the global generators continue too (a user's dropout draws from them)
    assert torch.equal(ckpt_a["gan_rng"]["torch"], ckpt_b["gan_rng"]["torch"])
    assert ckpt_a["gan_rng"]["python"] == ckpt_b["gan_rng"]["python"]
    # not vacuous: the resumed half trained (weights moved since the half-way checkpoint); a resume that silently
    # restarted from a fresh seeded init, or did not train, would fail one of these
    assert any(not torch.equal(at_half[k], straight[k]) for k in straight)
    seeded_init = {f"generator.{k}": v for k, v in _seeded_init(model).generator.state_dict().items()}
    assert any(not torch.equal(seeded_init[k], at_half[k]) for k in at_half)


def _seeded_init(model: str) -> GAN:
    """The networks the CLI builds at --seed 0 before training (same seeding as cli.run)."""
    import lightning.pytorch as pl

    pl.seed_everything(0, workers=True, verbose=False)
    return GAN(model, latent_dim=16, d_steps=2)


def test_sigint_saves_a_resumable_checkpoint(tmp_path, fake_mnist_dir):
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "--data-dir", str(fake_mnist_dir), "--no-download",
           "--batch-size", "16", "--latent-dim", "8", "--accelerator", "cpu", "--log-dir", str(tmp_path),
           "--name", "run", "--max-steps", "100000", "--sample-every", "5", "--checkpoint-every", "100000"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = tmp_path / "run" / "version_0" / "samples"
    deadline = time.time() + 120
    while not (samples.is_dir() and any(samples.iterdir())):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--ckpt-path last" in err
    ckpt_path = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    stopped_at = ckpt["global_step"] // 2
    assert stopped_at >= 5
    assert not list(ckpt_path.parent.glob("*.partial"))
    # the resume runs in this process: the same main(argv) as the script, without a second interpreter's start-up
    assert main([*cmd[2:-6], "--max-steps", str(stopped_at + 3), "--ckpt-path", "last"]) == 0
    assert torch.load(ckpt_path, weights_only=True)["global_step"] == (stopped_at + 3) * 2


class PoisonedGAN(GAN):
    """Turns D's weights to NaN at the start of iteration 7 (1-based)."""

    def training_step(self, batch, batch_idx):
        if self.iteration == 6:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.fill_(float("nan"))
        return super().training_step(batch, batch_idx)


def test_non_finite_loss_stops_without_overwriting_the_good_checkpoint(tmp_path):
    gan = PoisonedGAN("mlp", latent_dim=8, finite_check_every=4)
    ckpt = GANCheckpoint(every_n_iterations=5, dirpath=tmp_path)
    trainer = cpu_trainer(tmp_path, callbacks=[ckpt], enable_checkpointing=True, max_steps=gan.optimizer_steps(20))
    with pytest.raises(NonFiniteLossError, match="non-finite loss at iteration 7") as err:
        trainer.fit(gan, image_loader(n=256))
    assert err.value.iteration == 7
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == gan.optimizer_steps(5)  # the iteration-5 checkpoint, not a later one
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_checkpoint_refuses_non_finite_state(tmp_path):
    gan = PoisonedGAN("mlp", latent_dim=8, finite_check_every=1000)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(8))
    trainer.fit(gan, image_loader(n=256))
    with pytest.raises(NonFiniteLossError):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


def test_sigusr1_then_an_auto_restart_continues_bit_exactly(tmp_path, fake_mnist_dir, monkeypatch):
    # Slurm's warning ahead of a time limit, outside Slurm: save at the iteration's end and stop (nothing to requeue)
    flags = ["--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "16", "--latent-dim", "8",
             "--accelerator", "cpu", "--seed", "0", "--name", "run", "--max-steps", "30", "--sample-every", "3",
             "--checkpoint-every", "1000"]  # fmt: skip
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *flags, "--log-dir", str(tmp_path / "job")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.Popen([*cmd, "--ckpt-path", "auto"], stderr=subprocess.PIPE, text=True, env=env)
    samples = tmp_path / "job" / "run" / "version_0" / "samples"
    deadline = time.time() + 120
    while not (samples.is_dir() and any(samples.iterdir())):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    ckpt_path = tmp_path / "job" / "run" / "version_0" / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(ckpt_path, weights_only=True)["global_step"] // 2
    assert 3 <= stopped_at < 30, "the signal did not stop the run part-way"
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    assert main([*flags, "--log-dir", str(tmp_path / "job"), "--ckpt-path", "auto"]) == 0  # the restart, in-process
    assert main([*flags, "--log-dir", str(tmp_path / "straight")]) == 0
    resumed = torch.load(ckpt_path, weights_only=True)
    straight = torch.load(tmp_path / "straight" / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == 60
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert not (tmp_path / "job" / "run" / "version_1").exists()


def test_sigterm_to_the_whole_job_saves_with_loader_workers_too(tmp_path, fake_mnist_dir):
    # Slurm (preemption, scancel, a requeue) signals every process of the job step, the loader's workers too: a worker
    # dying of it (torch's worker handler exits on SIGTERM) must not crash the run before it saves
    flags = ["--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "16", "--latent-dim", "8",
             "--accelerator", "cpu", "--name", "run", "--max-steps", "400", "--sample-every", "3",
             "--checkpoint-every", "1000", "--num-workers", "2", "--log-dir", str(tmp_path)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), *flags], stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)  # fmt: skip
    samples = tmp_path / "run" / "version_0" / "samples"
    deadline = time.time() + 120
    while not (samples.is_dir() and any(samples.iterdir())):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)  # the process group: the main process and its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    stopped_at = torch.load(samples.parent / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] // 2
    assert 3 <= stopped_at < 400, "the signal did not stop the run part-way"


@pytest.mark.parametrize(("signalled_at", "requeued"), [(2, True), (4, False)])
def test_a_time_limit_signal_requeues_only_a_run_with_iterations_left(tmp_path, signalled_at, requeued):
    # SIGUSR1 in the last iteration: the run is complete, and a requeued restart would have nothing left to train
    from lightning.pytorch import Callback

    calls: list[str] = []
    ckpt = GANCheckpoint(every_n_iterations=100, dirpath=tmp_path, requeue=lambda: calls.append("requeue") or "done")

    class TimeLimitWarning(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.iteration == signalled_at - 1 and trainer.global_step % pl_module.steps_per_iteration == 0:
                ckpt.request_stop(signal.SIGUSR1, None)

    gan = GAN("mlp", latent_dim=8)
    trainer = cpu_trainer(tmp_path, callbacks=[TimeLimitWarning(), ckpt], enable_checkpointing=True,
                          max_steps=gan.optimizer_steps(4))  # fmt: skip
    trainer.fit(gan, image_loader(n=256))
    assert calls == (["requeue"] if requeued else [])
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == gan.optimizer_steps(signalled_at)


def test_a_time_limit_signal_outside_training_is_held_before_it_and_noted_after(capfd):
    from gan_lightning.commands.train.cluster import time_limit_signal_outside_training

    before = signal.getsignal(signal.SIGUSR1)
    with time_limit_signal_outside_training() as outside:
        os.kill(os.getpid(), signal.SIGUSR1)  # would end the process under the default action
        time.sleep(0.1)
        assert "before training: the run will stop after its first iteration" in capfd.readouterr().err
        assert outside.take() and not outside.take()  # held for the run, once
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.1)
        assert "after training: its last.ckpt is final" in capfd.readouterr().err and not outside.take()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_time_limit_signal_before_training_stops_after_the_first_iteration_and_requeues(tmp_path):
    calls: list[str] = []
    ckpt = GANCheckpoint(every_n_iterations=100, dirpath=tmp_path, requeue=lambda: calls.append("requeue") or "done",
                         signalled_before=lambda: True)  # fmt: skip
    gan = GAN("mlp", latent_dim=8)
    trainer = cpu_trainer(tmp_path, callbacks=[ckpt], enable_checkpointing=True, max_steps=gan.optimizer_steps(4))
    trainer.fit(gan, image_loader(n=256))
    assert calls == ["requeue"] and ckpt.requeue_requested
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == gan.optimizer_steps(1)
