"""Runs started together with one --log-dir and --name each own a version directory: claimed by exclusive creation
before anything is written into it, given back when the run is refused."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import yaml
from test_run_ux import one_error_line

from gan_lightning.commands.train import main
from gan_lightning.core.files import claim_version

from conftest import REPO

TRAIN = [sys.executable, str(REPO / "scripts" / "train.py")]
TINY = ["--max-steps", "2", "--batch-size", "8", "--latent-dim", "8", "--accelerator", "cpu", "--sample-every", "1",
        "--log-every", "1", "--no-download"]  # fmt: skip


def test_claims_the_next_free_version_and_never_one_taken(tmp_path):
    root = tmp_path / "logs" / "mlp"
    assert claim_version(root) == (0, [root / "version_0", root, root.parent])
    (root / "version_3").mkdir()
    (root / "version_x").mkdir()  # not a version: ignored
    assert claim_version(root) == (4, [root / "version_4"])


def test_threads_claiming_at_once_get_distinct_versions(tmp_path):
    root, got, start = tmp_path / "mlp", [], threading.Barrier(16)

    def claim() -> None:
        start.wait()
        got.append(claim_version(root)[0])

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(16))


def test_a_refused_run_gives_its_claim_back(tmp_path, fake_mnist_dir, capsys):
    logs = tmp_path / "logs"
    # two processes' share of the 550 training images is under one batch: refused once the Trainer says how many
    # processes there are, after the version was claimed
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), *TINY, "--batch-size", "300", "--devices", "2"]
    assert main(argv) == 2
    assert "275 per process of 2" in one_error_line(capsys)
    assert not logs.exists()


@pytest.mark.slow
def test_eight_runs_started_together_get_eight_complete_version_directories(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    argv = [*TRAIN, "--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--name", "sweep", *TINY]
    procs = [subprocess.Popen([*argv, "--seed", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
    runs = sorted((logs / "sweep").iterdir())
    assert [r.name for r in runs] == [f"version_{i}" for i in range(8)]
    seeds = set()
    for run in runs:
        assert len(list(run.glob("events.out.tfevents.*"))) == 1, run
        assert (run / "checkpoints" / "last.ckpt").is_file()
        seeds.add(yaml.safe_load((run / "config.yaml").read_text())["args"]["seed"])
    assert seeds == set(range(8))  # each directory holds one run's own record
