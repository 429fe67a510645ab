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


@contextmanager
def time_limit_signal_outside_training() -> Iterator[None]:
    """While the train command runs, a SIGUSR1 (Slurm's time-limit warning) that arrives outside training (while the
    data loads, or after the final checkpoint) is noted instead of killing every rank: the checkpoint callback
    handles it during training (the final evaluation included: the run then ends complete); after training the
    run's last.ckpt is already final, and before it there is nothing to save yet."""
    if not hasattr(signal, "SIGUSR1") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: object) -> None:
        # os.write, not print: the signal may interrupt a print to stderr, and print is not reentrant
        os.write(2, b"note: SIGUSR1 (the job's time limit is near) outside training: nothing to save now\n")

    previous = signal.signal(signal.SIGUSR1, note)
    try:
        yield
    finally:
        # None: the previous handler was installed from C (e.g. faulthandler.register); the default is what remains
        signal.signal(signal.SIGUSR1, previous if previous is not None else signal.SIG_DFL)
