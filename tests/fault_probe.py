"""Run by test_faults.py as `train.py` would run, on each rank: the train command plus one injected fault.

FAULT_KILL=RANK:ITERATION sends SIGKILL to that rank at the end of that iteration, as the out-of-memory killer
would. Nothing else differs from `python scripts/train.py`: the strategy comes from importing the package.
"""

import os
import signal
import sys

from lightning.pytorch import Callback

from gan_lightning.commands.base import run_command
from gan_lightning.commands.train import build_parser, resolve, run


class KillRank(Callback):
    def __init__(self, spec: str) -> None:
        rank, iteration = spec.split(":")
        self.rank, self.iteration = int(rank), int(iteration)

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_rank == self.rank and pl_module.iteration == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


def train_with_faults(cfg) -> None:
    """train.py's `run`, plus the injected fault; returns None, so a run that ends normally exits 0 as train.py does."""
    faults = [KillRank(os.environ["FAULT_KILL"])] if os.environ.get("FAULT_KILL") else []
    run(resolve(cfg), callbacks=faults)


if __name__ == "__main__":
    sys.exit(run_command(build_parser(), train_with_faults, sys.argv[1:]))
