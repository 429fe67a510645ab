"""A real Slurm (Debian's slurm-wlm and munge, started by scripts/slurm/local_cluster.sh as root): the job template
runs a 2-task CPU DDP job; signalled ahead of its time limit (`scancel --signal=USR1`) it saves and requeues itself,
requeued from outside (`scontrol requeue`) it saves at the iteration's end, and after both restarts its last.ckpt
equals an uninterrupted 2-task job's, tensor for tensor."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("slurmctld"), reason="Slurm not installed: apt-get install slurm-wlm munge"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the local Slurm daemons run as root"),
]
STEPS = 300


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """The environment the Slurm commands need, with a one-node cluster running for the module's tests."""
    env = {**os.environ, "GAN_SLURM_DIR": str(tmp_path_factory.mktemp("slurm")), "GAN_PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    script = str(REPO / "scripts" / "slurm" / "local_cluster.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    env["SLURM_CONF"] = started.stdout.strip().split("=", 1)[1]
    yield env
    subprocess.run([script, "stop"], env=env, timeout=60)


def sbatch(env: dict[str, str], out: Path, name: str, *extra: str) -> str:
    argv = ["sbatch", "--parsable", "--ntasks-per-node=2", f"--output={out}", str(REPO / "scripts/slurm/train.sbatch"),
            "--accelerator", "cpu", "--data-dir", str(out.parent / "data"), "--log-dir", str(out.parent / "logs"),
            "--name", name, "--preset", "cs231n_gan", "--batch-size", "32", "--max-steps", str(STEPS),
            "--num-workers", "0", "--checkpoint-every", "1000", "--sample-every", "1000", *extra]  # fmt: skip
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def job_state(env: dict[str, str], job: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def wait_for(what: str, check, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def iteration_in(out: Path, start: int) -> int:
    """The latest iteration the progress lines of the job's start number `start` report."""
    text = out.read_text() if out.is_file() else ""
    part = text.split(f"restart {start}\n", 1)[1] if f"restart {start}\n" in text else ""
    found = re.findall(r"iteration (\d+)/", part)
    return int(found[-1]) if found else 0


def release(env: dict[str, str], job: str, restarts: int) -> None:
    """Wait until `job` is pending after its `restarts`-th requeue, then let it start now (Slurm holds a requeued
    job about two minutes before it is eligible again)."""
    wait_for(f"requeue {restarts}", lambda: job_state(env, job).get("Restarts") == str(restarts)
             and job_state(env, job).get("JobState") == "PENDING")  # fmt: skip
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True)


def flat(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in flat(value, f"{prefix}{key}/").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, value in enumerate(obj) for k, v in flat(value, f"{prefix}{i}/").items()}
    return {prefix: obj}


def test_a_requeued_job_continues_bit_exactly(slurm, tmp_path, real_mnist_dir):
    (tmp_path / "data").symlink_to(real_mnist_dir)
    reference, interrupted = tmp_path / "reference.out", tmp_path / "interrupted.out"
    ref_job = sbatch(slurm, reference, "straight")
    job = sbatch(slurm, interrupted, "requeued")
    print(f"jobs: {ref_job} uninterrupted, {job} interrupted")

    wait_for("iteration 60", lambda: iteration_in(interrupted, 0) >= 60)
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm, check=True)
    print(f"scancel --signal=USR1 {job} at iteration {iteration_in(interrupted, 0)}")
    release(slurm, job, 1)
    wait_for("iteration 150 after the first restart", lambda: iteration_in(interrupted, 1) >= 150)
    subprocess.run(["scontrol", "requeue", job], env=slurm, check=True)
    print(f"scontrol requeue {job} at iteration {iteration_in(interrupted, 1)}")
    release(slurm, job, 2)
    for j in (ref_job, job):
        wait_for(f"job {j} to complete", lambda j=j: job_state(slurm, j).get("JobState") == "COMPLETED", 600)

    text = interrupted.read_text()
    print("\n".join(line for line in text.splitlines() if not line.startswith(("iteration", " ", "-", "0", "1", "2",
                                                                              "3", "4", "8", "|"))))  # fmt: skip
    assert "requeued Slurm job" in text  # the job requeued itself after SIGUSR1
    assert "stopped by a signal" in text  # ...and saved on scontrol requeue's SIGTERM
    run = tmp_path / "logs" / "requeued" / "version_0"
    resumes = yaml.safe_load((run / "config.yaml").read_text())["resumes"]
    assert len(resumes) == 2 and 60 <= resumes[0]["iteration"] < resumes[1]["iteration"] < STEPS
    assert not (tmp_path / "logs" / "requeued" / "version_1").exists()

    a = flat(torch.load(tmp_path / "logs/straight/version_0/checkpoints/last.ckpt", weights_only=True))
    b = flat(torch.load(run / "checkpoints/last.ckpt", weights_only=True))
    tensors = [k for k, v in a.items() if torch.is_tensor(v)]
    assert len(tensors) > 40 and a["global_step/"] == b["global_step/"] == 2 * STEPS
    different = [k for k in tensors if not (torch.is_tensor(b.get(k)) and torch.equal(a[k], b[k]))]
    print(f"{len(tensors)} tensors compared, {len(different)} differ")
    assert not different, different
