"""scripts/train.py: flags, presets, bad input rejected before anything is written, a real tiny run."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from weights_files import mnist_classifier_file

from gan_lightning import GAN
from gan_lightning.commands.train import PRESETS, build_parser, main, resolve


def resolved(*argv: str):
    return resolve(build_parser().parse_args(list(argv)))


def test_defaults_are_the_cs231n_gan():
    cfg = resolved()
    assert (cfg.dataset, cfg.model, cfg.loss, cfg.noise, cfg.latent_dim) == ("mnist", "mlp", "bce", "uniform", 96)
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size) == (1e-3, 0.5, 0.999, 128)
    assert (cfg.image_size, cfg.channels, cfg.max_steps, cfg.name) == (28, 1, 5000, "mlp")


def test_presets_set_flags_and_explicit_flags_win():
    cfg = resolved("--preset", "dcgan_celeba")
    assert (cfg.dataset, cfg.model, cfg.image_size, cfg.latent_dim, cfg.noise) == ("celeba", "dcgan", 64, 100, "normal")
    assert (cfg.lr, cfg.beta1, cfg.batch_size, cfg.channels) == (2e-4, 0.5, 128, 3)
    cfg = resolved("--preset", "dcgan_celeba", "--lr", "1e-4", "--nz", "64")
    assert cfg.lr == 1e-4 and cfg.latent_dim == 64
    assert resolved("--preset", "cs231n_lsgan").loss == "lsgan"
    assert resolved("--preset", "cs231n_dcgan").model == "dcgan_mnist"
    assert resolved("--model", "dcgan").image_size == 32  # MNIST resized to a power of two


def test_a_replayed_config_keeps_its_recipe_when_its_preset_has_changed_since(tmp_path, fake_cifar10_dir):
    """An r3gan_cifar10 run recorded before that preset gained x-flips, --augpipe and the beta2 schedule replays
    with what it recorded; the options it does not record take their declared defaults, not today's preset."""
    import yaml

    old = {"preset": "r3gan_cifar10", "dataset": "cifar10", "data_dir": str(fake_cifar10_dir), "model": "resnet",
           "conditional": True, "loss": "rpgan", "r1": 0.05, "r2": 0.05, "diffaug": "translation,color,cutout",
           "diffaug_p": 0.0, "aug_schedule": "cosine", "aug_final": 0.55, "beta1": 0.0, "beta2": 0.9,
           "batch_size": 512, "latent_dim": 64, "noise": "normal", "max_steps": 39063}  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"args": old}))
    cfg = resolved("--config", str(tmp_path / "config.yaml"))
    assert (cfg.model, cfg.diffaug, cfg.beta2, cfg.max_steps) == ("resnet", "translation,color,cutout", 0.9, 39063)
    assert (cfg.augpipe, cfg.mirror, cfg.beta2_schedule, cfg.schedule_length) == (None, False, "constant", None)
    assert resolved("--preset", "r3gan_cifar10").augpipe == "r3gan"  # without --config the preset applies


def test_help_lists_presets(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out
    assert "generator updates" in out  # --max-steps says what it counts


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "stylegan9"], "invalid choice: 'stylegan9'"),
        (["--loss", "l1"], "invalid choice: 'l1'"),
        (["--batch-size", "0"], "--batch-size must be positive, got 0"),
        (["--max-steps", "-5"], "--max-steps must be positive, got -5"),
        (["--latent-dim", "0"], "--latent-dim must be positive"),
        (["--lr", "-0.1"], "--lr must be positive"),
        (["--d-steps", "0"], "--d-steps must be positive"),
        (["--channels", "3"], "mnist images have 1 channel"),
        (["--ckpt-path", "/no/such.ckpt"], "no such checkpoint file"),
        (["--ckpt-path", "last"], "--ckpt-path last: no"),
        (["--devices", "two"], "--devices must be auto"),
        (["--devices", "0,a"], "--devices must be auto"),
        (["--model", "dcgan_mnist", "--image-size", "32"], "dcgan_mnist is 28x28 only"),
    ],
)
def test_bad_input_exits_nonzero_before_writing(tmp_path, capsys, argv, message):
    log_dir = tmp_path / "logs"
    with pytest.raises(SystemExit) if "invalid choice" in message else _no_raise():
        code = main([*argv, "--log-dir", str(log_dir), "--data-dir", str(tmp_path), "--no-download"])
        assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) <= 2  # a reason, not a traceback
    assert not log_dir.exists()


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_missing_data_is_one_clear_error(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "absent"), "--no-download", "--log-dir", str(tmp_path / "logs")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert str(tmp_path / "absent" / "MNIST" / "raw") in line and "--data-dir" in line
    assert not (tmp_path / "logs").exists()


def test_tiny_training_run_writes_logs_and_checkpoint(tmp_path, fake_mnist_dir, capsys):
    argv = ["--data-dir", str(fake_mnist_dir), "--max-steps", "4", "--batch-size", "16", "--latent-dim", "8",
            "--accelerator", "cpu", "--log-dir", str(tmp_path), "--name", "tiny", "--sample-every", "2",
            "--checkpoint-every", "2", "--log-every", "1", "--d-steps", "2"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "tiny" / "version_0"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert f"logs:       {run_dir}" in out and f"checkpoint: {ckpt}" in out
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    ea = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    assert {"train/d_loss", "train/g_loss", "train/p_real", "train/p_fake"} <= set(ea.Tags()["scalars"])
    assert [e.step for e in ea.Images("samples")] == [2, 4]
    gan = GAN.load_from_checkpoint(ckpt)
    assert gan.d_steps == 2 and torch.load(ckpt, weights_only=False)["global_step"] == 4 * 3
    out = gan.sample(10)
    assert out.shape == (10, 1, 28, 28) and out.min() >= -1 and out.max() <= 1


def test_fast_dev_run_writes_nothing(tmp_path, fake_mnist_dir):
    argv = ["--data-dir", str(fake_mnist_dir), "--fast-dev-run", "--batch-size", "8", "--accelerator", "cpu",
            "--log-dir", str(tmp_path / "logs"), "--model", "dcgan_mnist", "--latent-dim", "8"]  # fmt: skip
    assert main(argv) == 0
    assert not (tmp_path / "logs").exists()


def test_eval_every_logs_sample_quality(tmp_path, fake_mnist_dir):
    clf = tmp_path / "clf.pt"
    mnist_classifier_file(clf)
    argv = ["--data-dir", str(fake_mnist_dir), "--max-steps", "2", "--batch-size", "16", "--latent-dim", "8",
            "--accelerator", "cpu", "--log-dir", str(tmp_path), "--name", "ev", "--eval-every", "2",
            "--eval-samples", "64", "--classifier", str(clf)]  # fmt: skip
    assert main(argv) == 0
    ea = EventAccumulator(str(tmp_path / "ev" / "version_0"), size_guidance={"scalars": 0})
    ea.Reload()
    assert {"val/fid", "val/kid", "val/modes", "val/class_kl"} <= set(ea.Tags()["scalars"])
    assert [e.step for e in ea.Scalars("val/fid")] == [2]


def test_missing_classifier_fails_before_writing(tmp_path, fake_mnist_dir, capsys):
    argv = ["--data-dir", str(fake_mnist_dir), "--eval-every", "5", "--classifier", str(tmp_path / "none.pt"),
            "--log-dir", str(tmp_path / "logs")]  # fmt: skip
    assert main(argv) == 2
    assert "train_classifier.py" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_unavailable_accelerator_is_one_clear_error(tmp_path, fake_mnist_dir, capsys):
    argv = ["--data-dir", str(fake_mnist_dir), "--accelerator", "mps", "--log-dir", str(tmp_path / "logs")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot set up training on this machine" in err and "Traceback" not in err
    assert not (tmp_path / "logs").exists()
