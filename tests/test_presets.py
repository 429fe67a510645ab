"""Every MNIST-family preset (the small ones this CPU trains, Stacked MNIST's included) trains two iterations on
generated MNIST through the real command and records its recipe; a new preset needs no edit here. The CIFAR-10
presets have their own test on the CIFAR-10 layout (test_cifar10.py); a preset neither covers fails here."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_cifar10 import CIFAR_PRESETS

from gan_lightning.commands.sample import load_gan
from gan_lightning.commands.train import PRESETS, main
from gan_lightning.core.errors import ConfigError

MNIST_FAMILY = {"mnist": 1, "stacked_mnist": 3}  # dataset -> image channels
MNIST_PRESETS = sorted(name for name, values in PRESETS.items() if values.get("dataset", "mnist") in MNIST_FAMILY)
UNTRAINED = {"dcgan_celeba"}  # CelebA's recipe is the DCGAN tutorial's; test_cli checks how it resolves


def test_the_mnist_presets_are_found_and_every_preset_is_trained_by_a_test():
    assert {"cs231n_gan", "modern_mnist", "modern_stacked_mnist", "r3gan_mnist", "stylegan2_mnist"} <= set(
        MNIST_PRESETS
    )
    assert set(PRESETS) == set(MNIST_PRESETS) | set(CIFAR_PRESETS) | UNTRAINED


@pytest.mark.parametrize("preset", MNIST_PRESETS)
def test_every_mnist_preset_trains_two_iterations(preset, fake_mnist_dir, tmp_path):
    logs = tmp_path / "logs"
    argv = ["--preset", preset, "--data-dir", str(fake_mnist_dir), "--no-download", "--log-dir", str(logs),
            "--batch-size", "8", "--max-steps", "2", "--accelerator", "cpu", "--log-every", "1"]  # fmt: skip
    assert main(argv) == 0
    run_dir = logs / preset / "version_0"  # a run is named after its preset
    args = yaml.safe_load((run_dir / "config.yaml").read_text())["args"]
    assert args["preset"] == preset
    recipe = {k: v for k, v in PRESETS[preset].items() if k not in ("batch_size", "max_steps")}  # shrunk above
    assert {k: args[k] for k in recipe} == recipe
    assert (args["batch_size"], args["max_steps"]) == (8, 2)
    dataset = PRESETS[preset].get("dataset", "mnist")
    assert (args["dataset"], args["channels"]) == (dataset, MNIST_FAMILY[dataset])
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    gan = load_gan(checkpoint)
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] == gan.optimizer_steps(2)
    images = gan.sample(4)
    side = args["image_size"]
    assert images.shape == (4, MNIST_FAMILY[dataset], side, side)
    assert torch.isfinite(images).all() and images.abs().max() <= 1


def test_a_presets_regularizer_options_are_not_refused_when_the_user_switches_it_off(fake_mnist_dir):
    # --reg-every 16 comes from the preset, not the user: dropping its R1 must not ask to drop --reg-every
    from gan_lightning.commands.train.parser import build_parser
    from gan_lightning.commands.train.resolution import resolve

    cfg = resolve(build_parser().parse_args(["--preset", "stylegan2_mnist", "--r1", "0", "--data-dir",
                                             str(fake_mnist_dir)]))  # fmt: skip
    assert cfg.r1 == 0 and cfg.reg_every == 16
    with pytest.raises(ConfigError, match="--reg-every 4 applies only with --r1 or --r2"):
        resolve(build_parser().parse_args(["--preset", "stylegan2_mnist", "--r1", "0", "--reg-every", "4",
                                           "--data-dir", str(fake_mnist_dir)]))  # fmt: skip
