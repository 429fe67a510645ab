"""Checkpoints written by commit dcfb404 (the last release before options were declared by their components, and
before the objective became an `nn.Module`) load, sample the same images, evaluate and resume with today's code.

As in `test_compat.py`, the old checkpoints are produced here, never committed: `git archive dcfb404` is extracted
and its own `scripts/train.py` runs in a subprocess that imports the old package.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_compat import SAMPLE_REFERENCE, train_with_old_code
from test_compat import train_flags as compat_train_flags
from weights_files import mnist_classifier_file

from gan_lightning import GAN
from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.commands.sample import load_gan
from gan_lightning.commands.sample import main as sample_main
from gan_lightning.commands.train import main as train_main

OLD_COMMIT = "dcfb404"
OLD_ITERATIONS = 2
RUNS = {  # run name -> the train flags that differ between runs
    "plain": ["--model", "mlp", "--d-steps", "2"],
    "modern": [
        "--model",
        "dcgan_mnist",
        "--loss",
        "rpgan",
        "--r1",
        "1",
        "--r2",
        "1",
        "--ema-decay",
        "0.9",
        "--diffaug",
        "color,translation",
    ],  # fmt: skip
    "conditional": ["--model", "mlp", "--conditional"],
    "infogan": ["--model", "mlp", "--infogan"],
}


train_flags = partial(compat_train_flags, runs=RUNS)


@pytest.fixture(scope="module")
def old_runs(tmp_path_factory, fake_mnist_dir) -> dict[str, Path]:
    """Run name -> the run directory the old code wrote (checkpoints/last.ckpt, reference.pt)."""
    log_dir = tmp_path_factory.mktemp("old_logs_dcfb404")
    runs = {name: train_flags(name, fake_mnist_dir, log_dir, OLD_ITERATIONS) for name in RUNS}
    train_with_old_code(tmp_path_factory, OLD_COMMIT, runs, SAMPLE_REFERENCE)
    return {name: log_dir / name / "version_0" for name in RUNS}


@pytest.mark.parametrize("name", RUNS)
def test_old_checkpoint_loads_and_samples_the_same_images(old_runs, name):
    ref = torch.load(old_runs[name] / "reference.pt", weights_only=True)
    for gan in (GAN.load_from_checkpoint(old_runs[name] / "checkpoints" / "last.ckpt"),
                load_gan(old_runs[name] / "checkpoints" / "last.ckpt")):  # fmt: skip
        torch.testing.assert_close(gan.eval().sample(latents=ref["inputs"]), ref["images"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["plain", "modern"])
def test_sample_script_on_an_old_checkpoint(old_runs, tmp_path, name):
    out = tmp_path / "g.png"
    assert sample_main(["--ckpt", str(old_runs[name] / "checkpoints" / "last.ckpt"), "--out", str(out), "-n", "4"]) == 0
    side = 2 * 28 + 3 * 2  # a 2x2 grid of 28x28 images with 2-pixel padding
    assert Image.open(out).size == (side, side)


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # resumed into a fresh log dir on purpose
@pytest.mark.filterwarnings("ignore:The number of training batches")
@pytest.mark.parametrize("name", RUNS)
def test_old_checkpoint_resumes(old_runs, fake_mnist_dir, tmp_path, name):
    more = OLD_ITERATIONS + 1
    argv = train_flags(name, fake_mnist_dir, tmp_path, more) + ["--ckpt-path", str(old_runs[name] / "checkpoints" /
                                                                                    "last.ckpt")]  # fmt: skip
    assert train_main(argv) == 0
    path = tmp_path / name / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    d_steps = 2 if name == "plain" else 1
    assert ckpt["global_step"] == more * (d_steps + 1)
    g_state, d_state = ckpt["optimizer_states"]  # the optimizers went on from the old Adam states
    assert {int(s["step"]) for s in g_state["state"].values()} == {more}
    assert {int(s["step"]) for s in d_state["state"].values()} == {more * d_steps}
    GAN.load_from_checkpoint(path)


def test_evaluate_an_old_conditional_checkpoint(old_runs, fake_mnist_dir, tmp_path, capsys):
    classifier = tmp_path / "classifier.pt"  # untrained, in the format load_classifier reads
    mnist_classifier_file(classifier)
    argv = ["--ckpt", str(old_runs["conditional"] / "checkpoints" / "last.ckpt"), "--classifier", str(classifier),
            "--data-dir", str(fake_mnist_dir), "-n", "100"]  # fmt: skip
    assert evaluate_main(argv) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "fid" in results and "label_accuracy" in results
