"""Runs made by commit 9b6b090 (the last commit before the layered layout, plugins and the regularizer phase context)
keep working: their checkpoints load and sample the same images, resume, and their config.yaml replays.

As in `test_compat.py`, the old runs are produced here, never committed: `git archive 9b6b090` is extracted and its
own `scripts/train.py` runs in a subprocess that imports the old package.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from test_compat import SAMPLE_REFERENCE, train_with_old_code
from test_compat import train_flags as compat_train_flags

from gan_lightning import GAN
from gan_lightning.commands.sample import load_gan
from gan_lightning.commands.sample import main as sample_main
from gan_lightning.commands.train import main as train_main
from gan_lightning.commands.train import train_options

OLD_COMMIT = "9b6b090"
OLD_ITERATIONS = 2
RUNS = {  # run name -> the train flags that differ between runs
    # R1, R2, LeCam, ADA and a gamma schedule: the components that moved onto the phase context
    "modern": ["--model", "dcgan_mnist", "--loss", "rpgan", "--r1", "1", "--r2", "0.5", "--reg-every", "2",
               "--ema-decay", "0.9", "--lecam", "0.3", "--ada-target", "0.6", "--gamma-schedule", "linear",
               "--gamma-final", "0.1"],
    "wgan": ["--model", "mlp", "--loss", "wgan-gp"],
    "conditional": ["--model", "mlp", "--conditional", "--diffaug", "color,translation"],
}  # fmt: skip


train_flags = partial(compat_train_flags, runs=RUNS)


@pytest.fixture(scope="module")
def old_runs(tmp_path_factory, fake_mnist_dir) -> dict[str, Path]:
    """Run name -> the run directory the old code wrote (config.yaml, checkpoints/last.ckpt, reference.pt)."""
    log_dir = tmp_path_factory.mktemp("old_logs_9b6b090")
    runs = {name: train_flags(name, fake_mnist_dir, log_dir, OLD_ITERATIONS) for name in RUNS}
    train_with_old_code(tmp_path_factory, OLD_COMMIT, runs, SAMPLE_REFERENCE)
    return {name: log_dir / name / "version_0" for name in RUNS}


@pytest.mark.parametrize("name", RUNS)
def test_old_checkpoint_loads_and_samples_the_same_images(old_runs, name):
    ref = torch.load(old_runs[name] / "reference.pt", weights_only=True)
    for gan in (GAN.load_from_checkpoint(old_runs[name] / "checkpoints" / "last.ckpt"),
                load_gan(old_runs[name] / "checkpoints" / "last.ckpt")):  # fmt: skip
        torch.testing.assert_close(gan.eval().sample(latents=ref["inputs"]), ref["images"], rtol=0, atol=0)


def test_old_stateful_components_come_back_with_their_state(old_runs):
    ckpt = torch.load(old_runs["modern"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    gan = GAN.load_from_checkpoint(old_runs["modern"] / "checkpoints" / "last.ckpt")
    state = gan.state_dict()
    # LeCam's anchor (kept by position then, by name now) and ADA's p
    for old, new in (("objective.regularizers.0.alpha_real", "objective.regularizers.lecam.alpha_real"),
                     ("objective.augment.p", "objective.augment.p")):  # fmt: skip
        torch.testing.assert_close(state[new], ckpt["state_dict"][old], rtol=0, atol=0)
    assert (gan.objective.r1, gan.objective.r2) == (1.0, 0.5)


def test_sample_script_on_an_old_checkpoint(old_runs, tmp_path):
    out = tmp_path / "g.png"
    assert sample_main(["--ckpt", str(old_runs["modern"] / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    assert out.stat().st_size > 0


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # resumed into a fresh log dir on purpose
@pytest.mark.parametrize("name", RUNS)
def test_old_checkpoint_resumes(old_runs, fake_mnist_dir, tmp_path, name):
    more = OLD_ITERATIONS + 1
    ckpt_path = str(old_runs[name] / "checkpoints" / "last.ckpt")
    assert train_main(train_flags(name, fake_mnist_dir, tmp_path, more) + ["--ckpt-path", ckpt_path]) == 0
    ckpt = torch.load(tmp_path / name / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)  # fmt: skip
    d_steps = 5 if name == "wgan" else 1
    assert ckpt["global_step"] == more * (d_steps + 1)
    assert not (tmp_path / name / "version_0" / "config_changes.yaml").exists()  # same flags: nothing changed


@pytest.mark.parametrize("name", RUNS)
def test_old_config_yaml_replays(old_runs, fake_mnist_dir, tmp_path, name):
    old = yaml.safe_load((old_runs[name] / "config.yaml").read_text())["args"]
    argv = ["--config", str(old_runs[name]), "--log-dir", str(tmp_path), "--max-steps", "1"]
    assert train_main(argv) == 0
    new = yaml.safe_load((tmp_path / name / "version_0" / "config.yaml").read_text())["args"]
    # today's record holds the options of the components in use, each with the old run's value; options that did not
    # exist then (LeCam's schedule flags) hold their declared defaults
    assert {k for k in new if k in old and new[k] != old[k]} == {"max_steps", "log_dir"}
    defaults = train_options().defaults()
    assert {k: new[k] for k in set(new) - set(old)} == {k: defaults[k] for k in set(new) - set(old)}
