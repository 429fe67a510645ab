"""Which run `--ckpt-path last` and `auto` continue inside Slurm jobs (faked by their environment variables), and
`auto` refusing a run trained with other flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from gan_lightning.commands.train import main


@pytest.fixture
def job(monkeypatch, tmp_path, fake_mnist_dir):
    """Runs the train command as Slurm job `job_id` (array task `job_id` = "JOB_TASK"), its restart `restart`; None
    runs it outside Slurm. Returns the exit status."""
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)

    def run(job_id: str | None, restart: int, *flags: str) -> int:
        for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
            monkeypatch.delenv(name, raising=False)
        if job_id is not None:
            array_job, _, task = job_id.partition("_")
            monkeypatch.setenv("SLURM_JOB_ID", str(int(array_job) + int(task or 0) + 1) if task else job_id)
            if task:
                monkeypatch.setenv("SLURM_ARRAY_JOB_ID", array_job)
                monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
            monkeypatch.setenv("SLURM_RESTART_COUNT", str(restart))
        argv = ["--model", "mlp", "--batch-size", "16", "--latent-dim", "8", "--data-dir", str(fake_mnist_dir),
                "--no-download", "--accelerator", "cpu", "--sample-every", "1000", "--log-dir", str(tmp_path / "logs"),
                "--name", "run", *flags]  # fmt: skip
        return main(argv)

    return run


def steps(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] // 2


def recorded(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_a_restarted_job_continues_its_own_run_never_a_newer_jobs(job, tmp_path):
    # job 2002 continues job 2001's finished run with `last`; job 2003 starts its own; each one's restart continues
    # the run it had, however new the other's
    runs = tmp_path / "logs" / "run"
    assert job("2001", 0, "--max-steps", "2", "--ckpt-path", "auto") == 0
    assert job("2002", 0, "--max-steps", "3", "--ckpt-path", "last") == 0
    assert job("2003", 0, "--max-steps", "2", "--ckpt-path", "auto") == 0
    assert job("2002", 1, "--max-steps", "4", "--ckpt-path", "last") == 0
    assert job("2003", 1, "--max-steps", "3", "--ckpt-path", "auto") == 0
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]
    assert (steps(runs / "version_0"), recorded(runs / "version_0")["slurm_job"]) == (4, "2002")
    assert (steps(runs / "version_1"), recorded(runs / "version_1")["slurm_job"]) == (3, "2003")


def test_a_restart_with_last_and_no_run_of_its_own_is_refused(job, tmp_path, capsys):
    assert job("2001", 0, "--max-steps", "2") == 0
    assert job("2002", 1, "--max-steps", "3", "--ckpt-path", "last") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "job 2002" in err[0] and "version_0/checkpoints/last.ckpt" in err[0], err
    assert steps(tmp_path / "logs" / "run" / "version_0") == 2


def test_restarted_array_tasks_never_take_a_run_started_outside_slurm(job, tmp_path):
    runs = tmp_path / "logs" / "run"
    assert job(None, 0, "--max-steps", "2") == 0
    # tasks requeued before their first checkpoint: nothing of their own to continue, so each starts a run
    assert job("3000_0", 1, "--max-steps", "2", "--ckpt-path", "auto") == 0
    assert job("3000_1", 1, "--max-steps", "2", "--ckpt-path", "auto") == 0
    assert steps(runs / "version_0") == 2 and "slurm_job" not in recorded(runs / "version_0")
    assert {recorded(runs / f"version_{n}")["slurm_job"] for n in (1, 2)} == {"3000_0", "3000_1"}
    assert job("3000_1", 2, "--max-steps", "3", "--ckpt-path", "auto") == 0  # and then its own, by its task id
    assert [steps(runs / f"version_{n}") for n in (0, 1, 2)] == [2, 2, 3]


def test_auto_refuses_a_run_trained_with_other_flags(job, tmp_path, capsys):
    run = tmp_path / "logs" / "run" / "version_0"
    assert job(None, 0, "--max-steps", "2", "--seed", "1", "--lr", "1e-4") == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*")}
    assert job(None, 0, "--max-steps", "2", "--seed", "2", "--lr", "2e-4", "--ckpt-path", "auto") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seed 1 -> 2" in err[0] and "--lr 0.0001 -> 0.0002" in err[0], err
    assert "--name" in err[0] and "--ckpt-path last" in err[0]
    assert {p.name: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    # a component the run did not use (its options are not in the recorded config) switched on is a change too
    assert job(None, 0, "--max-steps", "2", "--lecam", "0.3", "--ckpt-path", "auto") == 2
    assert "--lecam 0.0 -> 0.3" in capsys.readouterr().err
    # flags saying only how long to train and how to log are the same command; `last` continues deliberately
    assert job(None, 0, "--max-steps", "3", "--log-every", "1", "--ckpt-path", "auto") == 0
    assert job(None, 0, "--max-steps", "4", "--lr", "2e-4", "--ckpt-path", "last") == 0
    assert steps(run) == 4 and recorded(run)["args"]["lr"] == 2e-4 and recorded(run)["args"]["seed"] == 1
