"""A plugin package outside gan_lightning (tests/plugin), found through its entry point as after `pip install`, adds
a consistency regularizer (D on transformed reals), a G-phase regularizer (G on perturbed latents), an augmentation
transform, a model pair and a dataset with its own option, each one file. Through the real commands: they show in
--help, train, land in config.yaml with their resume rules, replay, sample and evaluate; without the plugin every
command stops with one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, run_all

tomllib = pytest.importorskip("tomllib", reason="reading the plugin's pyproject.toml needs Python 3.11")

PLUGIN = REPO / "tests" / "plugin"
MODULE = "gan_plugin_example"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PYTHONPATH that holds the plugin and its distribution metadata, written from its pyproject.toml: Python's
    importlib.metadata finds the entry point there exactly as in a site-packages after `pip install`."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    site = tmp_path_factory.mktemp("site")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entries = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["gan_lightning.plugins"].items())
    (info / "entry_points.txt").write_text(f"[gan_lightning.plugins]\n{entries}")
    return os.pathsep.join([str(PLUGIN), str(site)])


def plugin_env(plugin_path: str | None = None) -> dict:
    """This process's environment with the plugin on the path, or with no plugin anywhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GAN_LIGHTNING_PLUGINS")}
    if plugin_path:
        env["PYTHONPATH"] = plugin_path
    return env


def script(name: str, *args: str) -> list[str]:
    """The argv of `python scripts/<name> args`."""
    return [sys.executable, str(REPO / "scripts" / name), *args]


def command(name: str, *args: str, plugin_path: str | None = None, cwd: Path | None = None):
    """`python scripts/<name> args` in a fresh process, with or without the plugin on its path."""
    return subprocess.run(script(name, *args), capture_output=True, text=True, env=plugin_env(plugin_path), cwd=cwd,
                          timeout=600)  # fmt: skip


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def npy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two .npy files of 28 x 28 uint8 bars (and a file the pattern leaves out)."""
    root = tmp_path_factory.mktemp("npy")
    rng = np.random.default_rng(0)
    for part in range(2):
        images = rng.integers(0, 30, (40, 28, 28)).astype(np.uint8)
        images[:, 10:14, 4:24] = 255
        np.save(root / f"part{part}.npy", images)
    np.save(root / "ignored.data.npz.npy", np.zeros((3, 5), np.uint8))  # wrong shape: the pattern must skip it
    return root


TRAIN = ("--dataset", "npy", "--npy-pattern", "part*.npy", "--model", "tiny", "--tiny-hidden", "16",
         "--example-cr", "1", "--example-cr-transform", "hflip", "--example-cr-schedule", "linear",
         "--example-cr-final", "0", "--mode-seeking", "0.1", "--diffaug", "hflip",
         "--batch-size", "8", "--log-every", "1", "--sample-every", "100", "--checkpoint-every", "2",
         "--accelerator", "cpu", "--seed", "0")  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, plugin_path, npy_dir) -> Path:
    """A 4-iteration run of the plugin's model on its dataset, with its regularizers and transform."""
    logs = tmp_path_factory.mktemp("logs")
    proc = command("train.py", *TRAIN, "--data-dir", str(npy_dir), "--max-steps", "4", "--log-dir", str(logs),
                   "--name", "plug", plugin_path=plugin_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return logs / "plug" / "version_0"


def test_every_plugin_component_shows_in_help(plugin_path):
    text = command("train.py", "--help", plugin_path=plugin_path).stdout
    for flag in ("--example-cr ", "--example-cr-transform", "--example-cr-schedule", "--mode-seeking ",
                 "--mode-seeking-every",
                 "--tiny-hidden", "--npy-pattern"):  # fmt: skip
        assert flag in text
    assert "tiny" in text.split("--model {")[1].split("}")[0] and "npy" in text.split("--dataset {")[1].split("}")[0]
    assert "hflip" in " ".join(text.split())  # the --diffaug help lists the registered transforms


def test_a_plugin_run_trains_logs_and_records_its_components(run_dir):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    args = config["args"]
    assert (args["example_cr"], args["example_cr_transform"], args["mode_seeking"], args["tiny_hidden"]) == (
        1.0, "hflip", 0.1, 16)  # fmt: skip
    assert args["npy_pattern"] == "part*.npy" and config["plugins"] == {MODULE: "0.1.0"}
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["gan_lightning_plugins"] == {MODULE: "0.1.0"}  # the GAN's: its model, regularizers, transform
    assert ckpt["gan_lightning_run"]["plugins"] == {MODULE: "0.1.0"}  # the run's: its dataset too
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/example_cr", "train/mode_seeking_ratio"} <= tags
    assert all(np.isfinite(e.value) and e.value > 0 for e in events.Scalars("train/example_cr"))
    # its weight is declared schedulable: --example-cr-schedule linear from 1 to 0 over the 4 iterations
    weights = [e.value for e in events.Scalars("train/example_cr_weight")]
    assert weights == pytest.approx([1.0, 0.75, 0.5, 0.25])


@pytest.mark.slow  # the resume rules of built-in options are the same code, tested in-process; two runs here
def test_plugin_options_follow_their_resume_rules(run_dir, plugin_path, npy_dir, tmp_path):
    common = (*TRAIN, "--data-dir", str(npy_dir), "--log-dir", str(run_dir.parents[1]), "--name", "plug")
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    refused = command("train.py", *common, "--tiny-hidden", "8", "--ckpt-path", ckpt, plugin_path=plugin_path)
    assert "--tiny-hidden 16 -> 8" in one_line(refused)  # declared resume="refuse": it sizes the networks
    changed = command("train.py", *common, "--example-cr", "2", "--max-steps", "6", "--ckpt-path", ckpt,
                      plugin_path=plugin_path)  # fmt: skip
    assert changed.returncode == 0, changed.stderr[-2000:]
    changes = yaml.safe_load((run_dir / "config_changes.yaml").read_text())
    assert changes[-1]["iteration"] == 4 and changes[-1]["changes"] == {"example_cr": {"old": 1.0, "new": 2.0}}


@pytest.mark.slow  # replays are tested in-process; that config.yaml records the plugin is in the run's test
def test_a_plugin_run_replays_from_its_config(run_dir, plugin_path, tmp_path):
    proc = command("train.py", "--config", str(run_dir), "--max-steps", "2", "--log-dir", str(tmp_path),
                   "--name", "replay", plugin_path=plugin_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    replayed = yaml.safe_load((tmp_path / "replay" / "version_0" / "config.yaml").read_text())["args"]
    original = yaml.safe_load((run_dir / "config.yaml").read_text())["args"]
    differ = {k for k in original if original[k] != replayed.get(k)}
    assert differ == {"max_steps", "name", "log_dir"}


def test_sample_and_evaluate_load_a_plugin_checkpoint(run_dir, plugin_path, tmp_path, fake_mnist_dir,
                                                      fake_classifier):  # fmt: skip
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    sampled, scored = run_all(
        [
            script("sample.py", "--ckpt", ckpt, "--out", str(tmp_path / "grid.png"), "-n", "16"),
            script(
                "evaluate.py",
                "--ckpt",
                ckpt,
                "--dataset",
                "mnist",
                "--data-dir",
                str(fake_mnist_dir),
                "--classifier",
                str(fake_classifier["path"]),
                "-n",
                "64",
            ),  # fmt: skip
        ],
        env=plugin_env(plugin_path),
    )
    assert sampled.returncode == 0 and (tmp_path / "grid.png").stat().st_size > 0, sampled.stderr[-2000:]
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert "fid" in json.loads(scored.stdout.strip().splitlines()[-1])


def test_without_the_plugin_every_command_names_it_in_one_line(run_dir, tmp_path, fake_mnist_dir):
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    runs = run_all(
        [
            script("sample.py", "--ckpt", ckpt, "--out", str(tmp_path / "x.png")),
            script("evaluate.py", "--ckpt", ckpt, "--data-dir", str(fake_mnist_dir)),
            script("train.py", "--config", str(run_dir), "--log-dir", str(tmp_path)),
            script("train.py", "--ckpt-path", ckpt, "--log-dir", str(tmp_path)),
        ],
        env=plugin_env(),
    )
    for proc in runs:
        assert MODULE in one_line(proc)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_broken_plugin_is_one_line(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("import torch\nraise RuntimeError('the plugin has a bug')\n")
    proc = command("train.py", "--plugins", "broken_plugin", "--help", plugin_path=str(tmp_path))
    line = one_line(proc)
    assert "broken_plugin" in line and "RuntimeError: the plugin has a bug" in line


OWN_NETS = """
import torch
from torch import nn

from gan_lightning.models import Discriminator


class OwnG(nn.Module):
    def __init__(self, latent_dim: int = 4):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Linear(latent_dim, 16)

    def forward(self, z):
        return torch.tanh(self.net(z)).view(len(z), 1, 4, 4)


class OwnD(Discriminator):
    def __init__(self):
        super().__init__()
        self.body, self.head, self.feature_dim = nn.Flatten(), nn.Linear(16, 1), 16
"""


def test_a_checkpoint_of_own_networks_says_how_to_make_them_importable(tmp_path, monkeypatch):
    """The reuse path: networks from the user's own module, sampled by the command where that module is not on the
    path: one line that says how to make it importable; done so, the same command samples."""
    from torch.utils.data import DataLoader, TensorDataset

    from gan_lightning import GAN

    from conftest import cpu_trainer

    (tmp_path / "own_nets.py").write_text(OWN_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    from own_nets import OwnD, OwnG

    gan = GAN(generator=OwnG(), discriminator=OwnD(), latent_dim=4)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(16, 1, 4, 4) * 2 - 1), batch_size=8))
    trainer.save_checkpoint(tmp_path / "own.ckpt")
    args = ("--ckpt", str(tmp_path / "own.ckpt"), "--out", str(tmp_path / "own.png"), "-n", "4")
    refused, done = run_all([script("sample.py", *args), script("sample.py", *args, "--plugins", "own_nets")],
                            envs=[plugin_env(None), plugin_env(str(tmp_path))], cwd=REPO)  # fmt: skip
    line = one_line(refused)
    assert "own_nets.OwnG" in line and "make own_nets importable" in line and "--plugins own_nets" in line
    assert done.returncode == 0 and (tmp_path / "own.png").is_file(), done.stderr[-2000:]


def test_a_run_of_plugins_given_on_the_command_line_resumes_with_ckpt_path_last(npy_dir, tmp_path):
    # the plugin importable but not installed: only --plugins loads it, and the resume does not repeat it
    logs, path = tmp_path / "logs", str(PLUGIN)
    first = command("train.py", *TRAIN, "--plugins", MODULE, "--data-dir", str(npy_dir), "--max-steps", "2",
                    "--log-dir", str(logs), "--name", "plug", plugin_path=path)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = command("train.py", "--log-dir", str(logs), "--name", "plug", "--ckpt-path", "last", "--max-steps", "3",
                      plugin_path=path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ckpt = torch.load(logs / "plug" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["model"] == "tiny" and not (logs / "plug" / "version_1").exists()


# a GAN option; a dataset option, the same check on another registry's options, in the slow suite
@pytest.mark.parametrize("name", ["lr", pytest.param("batch_size", marks=pytest.mark.slow)])
def test_a_plugin_option_that_clashes_with_another_components_is_one_line(tmp_path, name):
    (tmp_path / "clashing.py").write_text(f"""
from gan_lightning.core.options import Option
from gan_lightning.regularizers import REGULARIZERS, Regularizer


@REGULARIZERS.register("clashing")
class Clashing(Regularizer):
    options = (Option("{name}", 0.0, "the plugin's own weight", minimum=0),)
""")
    proc = command("train.py", "--plugins", "clashing", "--help", plugin_path=str(tmp_path))
    line = one_line(proc)
    flag = "--" + name.replace("_", "-")
    assert line.startswith(f"train.py: error: {flag} is declared twice, differently (") and "rename one" in line


@pytest.mark.slow  # a third plugin run, for two records
def test_a_plugin_transform_in_a_built_in_regularizer_and_a_plugin_tracker_are_recorded(plugin_path, tmp_path,
                                                                                         fake_mnist_dir):  # fmt: skip
    # both were left out of config.yaml: resuming or sampling without the plugin then failed on a bare name
    (tmp_path / "plug" / "mytracker.py").parent.mkdir()
    (tmp_path / "plug" / "mytracker.py").write_text("""
from gan_lightning.loggers import LOGGERS
from gan_lightning.loggers.csv import CSVTracker


@LOGGERS.register("csv_copy")
class CSVCopy(CSVTracker):
    pass
""")
    path = os.pathsep.join([plugin_path, str(tmp_path / "plug")])
    proc = command("train.py", "--plugins", f"{MODULE},mytracker", "--data-dir", str(fake_mnist_dir), "--max-steps",
                   "1", "--batch-size", "16", "--latent-dim", "8", "--cr", "1", "--cr-transform", "hflip", "--logger",
                   "tensorboard,csv_copy", "--log-dir", str(tmp_path / "logs"), "--name", "run",
                   plugin_path=path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((tmp_path / "logs" / "run" / "version_0" / "config.yaml").read_text())
    assert set(config["plugins"]) == {MODULE, "mytracker"}
    ckpt = torch.load(tmp_path / "logs" / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert MODULE in ckpt["gan_lightning_plugins"]  # the GAN's own: CR's transform


def test_load_from_checkpoint_imports_the_plugins_the_checkpoint_records(run_dir):
    # the plugin importable (PYTHONPATH) but neither installed as an entry point nor named: loading imports it
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    code = f"from gan_lightning import GAN; print(type(GAN.load_from_checkpoint({str(ckpt)!r}).generator).__name__)"
    loaded, missing = run_all([[sys.executable, "-c", code]] * 2, envs=[plugin_env(str(PLUGIN)), plugin_env(None)])
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert missing.returncode != 0
    assert f"was made with the plugin {MODULE} 0.1.0, which cannot be imported here" in missing.stderr.splitlines()[-1]


@pytest.mark.slow  # another plugin process
def test_a_dataset_scored_by_an_extractor_that_cannot_make_its_weights_asks_for_them(plugin_path, npy_dir, tmp_path):
    # it used to be handed an MNIST classifier trained from MNIST, which such a folder does not hold
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "pixplug.py").write_text("""
from gan_plugin_example.npy_dataset import NpyDataModule

from gan_lightning.data import dataset
from gan_lightning.metrics import EXTRACTORS


@EXTRACTORS.register("pixels")
def pixels(path):
    raise NotImplementedError


@dataset("npy_pixels", channels=1, native_size=28, extractor="pixels")
class NpyPixels(NpyDataModule):
    pass
""")
    path = os.pathsep.join([plugin_path, str(tmp_path / "plug")])
    proc = command("train.py", "--plugins", f"{MODULE},pixplug", "--dataset", "npy_pixels", "--npy-pattern",
                   "part*.npy", "--data-dir", str(npy_dir), "--eval-every", "2", "--max-steps", "2", "--log-dir",
                   str(tmp_path / "logs"), plugin_path=path)  # fmt: skip
    expected = "--dataset npy_pixels is scored by its extractor pixels, which needs its weights file: pass --classifier"
    assert expected in one_line(proc) and not (tmp_path / "logs").exists()
