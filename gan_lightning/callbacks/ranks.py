"""Which process of a multi-device run died, and how: every rank's host and pid, gathered when training starts.

When a rank is killed (the out-of-memory killer, a scheduler, a crash) the others learn of it only as a failed
collective, an error about a socket that names no rank. `RankWatch` lets the survivors say which rank it was and
what became of it, and lets one of them say it, instead of every rank printing a gloo traceback.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

# Messages of a collective whose peer is gone (gloo's and NCCL's wording), for torch versions whose
# DistBackendError does not cover them.
PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "gloo", "NCCL", "ProcessGroup")


def collective_failed(err: BaseException) -> bool:
    """Whether `err` is a failed collective: another process of the run died, hung or cannot be reached."""
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(err, dist_error):
        return True
    return isinstance(err, RuntimeError) and any(text in str(err) for text in PEER_GONE)


def process_fate(pid: int) -> str | None:
    """What became of process `pid` on this host ("was killed by SIGKILL", "exited with status 1"), or None while
    it runs. A child's status is read without reaping it, so its parent (Lightning's launcher) still can."""
    if hasattr(os, "waitid") and hasattr(os, "WNOWAIT"):
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # not our child: only whether it still exists can be known
            info = False
        if info is None:
            return None
        if info:
            if info.si_code == os.CLD_EXITED:
                return f"exited with status {info.si_status}"
            name = signal.Signals(info.si_status).name if info.si_status in signal.valid_signals() else info.si_status
            return f"was killed by {name}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "has exited"
    except PermissionError:
        return None
    status = Path(f"/proc/{pid}/status")
    try:
        zombie = any(line.startswith("State:") and "Z" in line.split()[1] for line in status.read_text().splitlines())
    except OSError:
        zombie = False
    return "has exited" if zombie else None


class RankWatch(Callback):
    """Records every rank's (host, pid) at setup; after a failed collective, `explain` names the rank that died."""

    def __init__(self, grace_s: float = 3.0) -> None:
        self.grace_s = grace_s  # how long a dead peer may take to show as exited after its sockets closed
        self.roster: list[tuple[str, int]] = []
        self.rank, self.world = 0, 1

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.rank, self.world = trainer.global_rank, trainer.world_size
        if self.world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            roster: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(roster, (socket.gethostname(), os.getpid()))
            self.roster = [tuple(entry) for entry in roster]

    def dead_peers(self) -> list[tuple[int, int, str]]:
        """(rank, pid, fate) of the other ranks on this host that are no longer running, waiting up to `grace_s`."""
        host = socket.gethostname()
        deadline = time.monotonic() + self.grace_s
        while True:
            dead = []
            for rank, (peer_host, pid) in enumerate(self.roster):
                fate = process_fate(pid) if rank != self.rank and peer_host == host else None
                if fate:
                    dead.append((rank, pid, fate))
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.1)

    def explain(self, err: BaseException, iteration: int, after: str) -> tuple[str, bool]:
        """(the line for the user, whether this rank should print it): the lowest surviving rank speaks when the
        dead rank is known; every rank speaks when it is not (another host, or a hang rather than a death)."""
        dead = self.dead_peers()
        if not dead:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            message = (f"rank {self.rank} of {self.world}: a collective with the other processes failed at "
                       f"iteration {iteration} ({first}): another rank died, hung or lost its connection. "
                       f"{after}")  # fmt: skip
            return message, True
        rank, pid, fate = dead[0]
        why = " (out of memory, or killed by hand)" if fate.endswith("SIGKILL") else ""
        if "exited with status" in fate:
            why = " (its own message above says why)"
        gone = {r for r, _, _ in dead}
        speaker = min(r for r in range(self.world) if r not in gone)
        return (f"rank {rank} of {self.world} (pid {pid}) {fate}{why} at iteration {iteration}; every rank stopped. "
                f"{after}", self.rank == speaker)  # fmt: skip
