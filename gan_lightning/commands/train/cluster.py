"""Slurm: the job's cluster environment for Lightning, and requeueing the job after this project's own checkpoint.

Lightning's SLURM support detects the job (ranks, nodes, the rendezvous address) and, with `auto_requeue`, saves
`hpc_ckpt_N.ckpt` from inside its SIGUSR1 handler, i.e. wherever the signal lands: possibly between D's and G's
update of one iteration, so the resumed run is not the uninterrupted one. Here Lightning keeps the detection
(`SLURMEnvironment(auto_requeue=False)`) and the requeue follows this project's stop path instead: SIGUSR1 (Slurm's
`--signal=USR1@90`, or `scancel --signal=USR1`) finishes the current iteration on every rank, `last.ckpt` is
written with the run's exact state, training stops, and rank zero requeues the job, whose restart continues with
`--ckpt-path auto`. `last.ckpt` is the only checkpoint a restart reads: no `hpc_ckpt` is written.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.pytorch.plugins.environments import SLURMEnvironment


def cluster_plugins() -> list[SLURMEnvironment]:
    """Lightning's Slurm environment without its own requeue handler when this process is a Slurm task, else none."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` takes for this job (an array task's `JOB_TASK`), or None outside Slurm."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


def slurm_restart() -> bool:
    """Whether this process belongs to a requeued Slurm job's restart (`SLURM_RESTART_COUNT` above 0)."""
    return slurm_job_id() is not None and os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")


def requeue() -> str:
    """Requeue this Slurm job; returns the line that says what happened (the job id, or why it could not)."""
    job = slurm_job_id()
    if job is None:
        return "not a Slurm job: nothing to requeue; resume with --ckpt-path auto"
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"could not requeue Slurm job {job} ({err}); resubmit it with --ckpt-path last to continue this run"
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["scontrol failed"])[-1]
        return f"could not requeue Slurm job {job} ({why}); resubmit it with --ckpt-path last to continue this run"
    return f"requeued Slurm job {job}: its restart resumes with --ckpt-path auto"


class TimeLimitOutsideTraining:
    """Slurm's SIGUSR1 while the train command runs but training does not: one before training (the data still
    loading) is held for the run, which then stops after its first iteration, saves and requeues the job (else the
    time limit would kill it with nothing saved and no requeue); one after training is noted, as the run's last.ckpt
    is final by then. During training the checkpoint callback's own handler takes the signal."""

    def __init__(self) -> None:
        self.pending = False
        self.training_began = False

    def handle(self, signum: int, frame: object) -> None:
        """Signal handler: hold the signal for the run, or note it after training."""
        # os.write, not print: the signal may interrupt a print to stderr, and print is not reentrant
        if self.training_began:
            os.write(2, b"note: SIGUSR1 (the job's time limit is near) after training: its last.ckpt is final\n")
        else:
            self.pending = True
            os.write(2, b"note: SIGUSR1 (the job's time limit is near) before training: the run will stop after its "
                        b"first iteration, save and requeue\n")  # fmt: skip

    def take(self) -> bool:
        """Called as training begins: whether a SIGUSR1 came before it (answered once)."""
        self.training_began = True
        pending, self.pending = self.pending, False
        return pending


@contextmanager
def time_limit_signal_outside_training() -> Iterator[TimeLimitOutsideTraining]:
    """`TimeLimitOutsideTraining` handling SIGUSR1 for the block (where the platform has it, in the main thread),
    instead of the default action that would kill every rank."""
    outside = TimeLimitOutsideTraining()
    if not hasattr(signal, "SIGUSR1") or threading.current_thread() is not threading.main_thread():
        yield outside
        return
    previous = signal.signal(signal.SIGUSR1, outside.handle)
    try:
        yield outside
    finally:
        # None: the previous handler was installed from C (e.g. faulthandler.register); the default is what remains
        signal.signal(signal.SIGUSR1, previous if previous is not None else signal.SIG_DFL)
