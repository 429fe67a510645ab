"""Checkpoints written by commit 716e44e ("format 1") still load, sample, evaluate and resume with today's code.

The old checkpoints are produced here, never committed: the old tree is exported with `git archive` and its own
`scripts/train.py` runs in a subprocess that imports the old package (checked through `gan_lightning.__file__`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from weights_files import mnist_classifier_file

from gan_lightning import GAN
from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.commands.sample import load_gan
from gan_lightning.commands.sample import main as sample_main
from gan_lightning.commands.train import main as train_main
from gan_lightning.core.compat import FORMAT

from conftest import REPO

OLD_COMMIT = "716e44e"  # the last commit writing format-1 checkpoints
OLD_ITERATIONS = 2
RUNS = {  # run name -> the train flags that differ between runs
    "plain": ["--model", "mlp", "--d-steps", "2"],
    "conditional": ["--model", "mlp", "--conditional"],
    "infogan": ["--model", "mlp", "--infogan"],
    "ema": ["--model", "dcgan_mnist", "--ema-decay", "0.9"],
}

# Runs an old scripts/train.py once per run in one interpreter, so the imports are paid once; after each run the old
# code loads the checkpoint and runs `reference` (indented code using `name`, `log_dir` and `GAN`), e.g. to record
# what its networks answer on fixed inputs (`reference.pt` next to the checkpoint).
DRIVER = """
import json, runpy, sys
from pathlib import Path
import torch
import gan_lightning
from gan_lightning import GAN
print("GAN_LIGHTNING_FILE=" + gan_lightning.__file__)
status = {}
for name, argv in json.loads(sys.argv[1]).items():
    sys.argv = ["scripts/train.py", *argv]
    try:
        runpy.run_path("scripts/train.py", run_name="__main__")
        status[name] = 0
    except SystemExit as stop:
        status[name] = stop.code
    log_dir = Path(argv[argv.index("--log-dir") + 1]) / name / "version_0"
REFERENCE
print("STATUS=" + json.dumps(status))
"""
FORMAT1_REFERENCE = """    gan = GAN.load_from_checkpoint(log_dir / "checkpoints" / "last.ckpt").eval()
    hp, rng = gan.hparams, torch.Generator().manual_seed(0)
    ref = {"inputs": torch.rand(4, hp.latent_dim + gan.code_dim, generator=rng) * 2 - 1,
           "real": torch.rand(4, hp.channels, hp.image_size, hp.image_size, generator=rng) * 2 - 1,
           "labels": torch.tensor([0, 3, 7, 9])}
    with torch.no_grad():
        ref["images"] = gan.sample(latents=ref["inputs"], ema=False)
        if hasattr(gan, "generator_ema"):
            ref["ema_images"] = gan.sample(latents=ref["inputs"], ema=True)
        ref["logits"], features = gan.discriminate(ref["real"], ref["labels"] if hp.conditional else None)
        if hp.infogan:
            ref["q"] = gan.q_head(features)
    torch.save(ref, log_dir / "reference.pt")
"""


def train_with_old_code(tmp_path_factory: pytest.TempPathFactory, commit: str, runs: dict[str, list[str]],
                        reference: str) -> None:  # fmt: skip
    """Train `runs` (name -> train.py flags) with the code of `commit`, then run `reference` after each (DRIVER)."""
    old_tree = tmp_path_factory.mktemp(f"old_tree_{commit}")
    export_old_tree(old_tree, commit)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(old_tree)}
    # cwd is the old tree too, so nothing can resolve `gan_lightning` to today's package
    driver = DRIVER.replace("REFERENCE\n", reference)
    done = subprocess.run([sys.executable, "-c", driver, json.dumps(runs)], cwd=old_tree, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith(("GAN_", "STATUS=")))
    assert Path(lines["GAN_LIGHTNING_FILE"]).resolve().is_relative_to(old_tree.resolve()), lines
    assert json.loads(lines["STATUS"]) == dict.fromkeys(runs, 0), done.stderr[-4000:]


def train_flags(name: str, data_dir: Path, log_dir: Path, iterations: int, runs: dict | None = None) -> list[str]:
    """The train flags of old run `name` (its own from `runs`, default this module's RUNS), for old and new code."""
    return ["--data-dir", str(data_dir), "--no-download", "--accelerator", "cpu", "--batch-size", "16",
            "--latent-dim", "8", "--seed", "0", "--max-steps", str(iterations), "--log-dir", str(log_dir),
            "--name", name, "--sample-every", "1000", "--checkpoint-every", "1000", "--log-every", "1000",
            *(RUNS if runs is None else runs)[name]]  # fmt: skip


# After each old run the old code records the images it samples from fixed inputs (format-2 runs on: see DRIVER).
SAMPLE_REFERENCE = """
    gan = GAN.load_from_checkpoint(log_dir / "checkpoints" / "last.ckpt").eval()
    inputs = torch.rand(4, gan.latents.input_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.save({"inputs": inputs, "images": gan.sample(latents=inputs)}, log_dir / "reference.pt")
"""


def export_old_tree(dest: Path, commit: str = OLD_COMMIT) -> None:
    """`git archive commit` extracted into dest; skips the test when the commit cannot be had."""
    git = shutil.which("git")
    if git is None:
        pytest.skip(f"git is not installed: cannot export the code of commit {commit}")
    found = subprocess.run([git, "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True,
                           text=True)  # fmt: skip
    if found.returncode != 0:
        why = found.stderr.strip().splitlines()[-1] if found.stderr.strip() else "no such commit"
        pytest.skip(f"commit {commit} is not in {REPO} (not a git checkout, or a shallow clone): {why}")
    archive = subprocess.run([git, "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True)
    assert archive.returncode == 0, archive.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python < 3.10.12 has no filters
        tar.extractall(dest, **safe)


@pytest.fixture(scope="module")
def old_ckpts(tmp_path_factory, fake_mnist_dir) -> dict[str, Path]:
    """Run name -> last.ckpt written by the old code after OLD_ITERATIONS iterations."""
    log_dir = tmp_path_factory.mktemp("old_logs")
    runs = {name: train_flags(name, fake_mnist_dir, log_dir, OLD_ITERATIONS) for name in RUNS}
    train_with_old_code(tmp_path_factory, OLD_COMMIT, runs, FORMAT1_REFERENCE)
    ckpts = {name: log_dir / name / "version_0" / "checkpoints" / "last.ckpt" for name in RUNS}
    for path in ckpts.values():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert "gan_lightning_format" not in ckpt  # really format 1
        keys = list(ckpt["state_dict"])
        assert any(k.startswith("discriminator.") for k in keys) and not any(k.startswith("ema.") for k in keys)
    return ckpts


def old_state(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of a format-1 checkpoint under `prefix`, with the prefix stripped."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def assert_same(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    actual = module.state_dict()
    assert expected and actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", RUNS)
def test_load_from_checkpoint_maps_every_weight(old_ckpts, name):
    path = old_ckpts[name]
    gan = GAN.load_from_checkpoint(path)  # strict: every old key found its new place
    assert_same(gan.generator, old_state(path, "generator."))
    assert_same(gan.discriminator.net, old_state(path, "discriminator."))
    assert (gan.discriminator.projection is not None) == (name == "conditional")
    assert (gan.discriminator.q_head is not None) == (name == "infogan")
    assert (gan.ema is not None) == (name == "ema")
    if name == "conditional":
        assert_same(gan.discriminator.projection, {"embed.weight": old_state(path, "class_embed.")["weight"]})
    if name == "infogan":
        assert_same(gan.discriminator.q_head.net, old_state(path, "q_head."))
    if name == "ema":
        ema_old = old_state(path, "generator_ema.")
        assert_same(gan.ema.module, ema_old)  # weights and BatchNorm statistics, as saved
        assert any(not torch.equal(v, old_state(path, "generator.")[k]) for k, v in ema_old.items())  # not vacuous
    # Adam states are stored by parameter position: the new order must give each state its own parameter
    optimizer_states = torch.load(path, map_location="cpu", weights_only=True)["optimizer_states"]
    for net, state in zip((gan.generator, gan.discriminator), optimizer_states, strict=True):
        params = list(net.parameters())
        assert sorted(state["state"]) == list(range(len(params)))
        for i, param in enumerate(params):
            assert state["state"][i]["exp_avg"].shape == param.shape, (name, i)
    # the networks answer as the old code's did on the same inputs (recorded by the old code itself)
    ref = torch.load(path.parent.parent / "reference.pt", weights_only=True)
    gan.eval()
    torch.testing.assert_close(gan.sample(latents=ref["inputs"], ema=False), ref["images"], rtol=0, atol=0)
    critic = gan.discriminator(ref["real"], ref["labels"] if name == "conditional" else None)
    torch.testing.assert_close(critic.logits, ref["logits"], rtol=0, atol=0)
    if name == "infogan":
        cat_logits, cont_means = gan.discriminator.q_head(critic.features)
        torch.testing.assert_close(torch.cat([cat_logits, cont_means], dim=1), ref["q"], rtol=0, atol=0)
    if name == "ema":  # the saved EMA generator, before any re-estimate of its BatchNorm statistics
        with torch.no_grad():
            torch.testing.assert_close(gan.ema.module.eval()(ref["inputs"]), ref["ema_images"], rtol=0, atol=0)
        # cheap BatchNorm statistics for the averaged weights before sampling (test_sample_script pays the full price)
        rng = torch.Generator().manual_seed(1)
        gan.ema.recompute_bn(lambda n: gan.latents.draw(n, rng).input, batches=2, batch_size=32)
    image_size = gan.hparams.image_size
    images = gan.sample(6)
    assert images.shape == (6, 1, image_size, image_size) and torch.isfinite(images).all()
    assert images.abs().max() <= 1
    if name == "conditional":
        assert gan.sample(labels=torch.tensor([0, 9])).shape == (2, 1, image_size, image_size)
    if name == "ema":
        net = gan.sampling_generator()
        assert net is gan.ema.module
        for key, value in net.named_parameters():  # recomputed BatchNorm statistics leave the weights alone
            torch.testing.assert_close(value, ema_old[key], rtol=0, atol=0, msg=key)
        z = gan.latents.draw(4, torch.Generator().manual_seed(0)).input
        net.eval()
        torch.testing.assert_close(gan.sample(latents=z), net(z))
        assert not torch.allclose(gan.sample(latents=z), gan.sample(latents=z, ema=False))


@pytest.mark.parametrize("name", RUNS)
def test_load_gan_matches_load_from_checkpoint(old_ckpts, name):
    safe, full = load_gan(old_ckpts[name]), GAN.load_from_checkpoint(old_ckpts[name])
    assert safe.state_dict().keys() == full.state_dict().keys()
    for key, value in full.state_dict().items():
        torch.testing.assert_close(safe.state_dict()[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", RUNS)
def test_sample_script(old_ckpts, tmp_path, name):
    out = tmp_path / "g.png"
    assert sample_main(["--ckpt", str(old_ckpts[name]), "--out", str(out), "-n", "4"]) == 0
    side = 2 * 28 + 3 * 2  # a 2x2 grid of 28x28 images with 2-pixel padding
    assert Image.open(out).size == (side, side)


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # resumed into a fresh log dir on purpose
@pytest.mark.filterwarnings("ignore:The number of training batches")
@pytest.mark.parametrize("name", RUNS)
def test_resume_old_checkpoint(old_ckpts, fake_mnist_dir, tmp_path, name):
    more = OLD_ITERATIONS + 1
    argv = train_flags(name, fake_mnist_dir, tmp_path, more) + ["--ckpt-path", str(old_ckpts[name])]
    if name == "ema":  # format 1's EMA: no ramp-up, BatchNorm statistics copied from G (and no 4096-image re-estimate)
        argv += ["--ema-rampup", "0", "--ema-bn-stats", "copy"]
    assert train_main(argv) == 0
    ckpt = torch.load(tmp_path / name / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)  # fmt: skip
    d_steps = ckpt["hyper_parameters"]["d_steps"] or 1
    assert d_steps == (2 if name == "plain" else 1)
    assert ckpt["global_step"] == more * (d_steps + 1)
    assert ckpt["gan_lightning_format"] == FORMAT  # written in the current format
    assert any(k.startswith("discriminator.net.") for k in ckpt["state_dict"])
    # it loads cleanly, and the optimizers went on from the old Adam states (a fresh start would count 1 step)
    GAN.load_from_checkpoint(tmp_path / name / "version_0" / "checkpoints" / "last.ckpt")
    g_state, d_state = ckpt["optimizer_states"]
    assert {int(s["step"]) for s in g_state["state"].values()} == {more}
    assert {int(s["step"]) for s in d_state["state"].values()} == {more * d_steps}


@pytest.mark.parametrize("name", ["conditional", "infogan"])
def test_evaluate_old_checkpoint(old_ckpts, fake_mnist_dir, tmp_path, capsys, name):
    classifier = tmp_path / "classifier.pt"  # untrained, in the format load_classifier reads
    mnist_classifier_file(classifier)
    argv = ["--ckpt", str(old_ckpts[name]), "--classifier", str(classifier), "--data-dir", str(fake_mnist_dir),
            "-n", "100"]  # fmt: skip
    assert evaluate_main(argv) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "fid" in results
    assert ("label_accuracy" in results) == (name == "conditional")
    assert ("code_purity" in results) == (name == "infogan")
