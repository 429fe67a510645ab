"""Run by test_ddp.py: train.py's `run` plus a callback that saves every rank's final parameters."""

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

from gan_lightning.cli import _resolve, build_parser, run


class DumpParameters(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module) -> None:
        params = {k: v.detach().cpu() for k, v in pl_module.named_parameters()}
        record = {
            "params": params,
            "world_size": trainer.world_size,
            "iteration": pl_module.iteration,
            "strategy": type(trainer.strategy).__name__,
            "find_unused": getattr(trainer.strategy, "_ddp_kwargs", {}),
        }
        torch.save(record, self.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    cfg = _resolve(build_parser().parse_args(sys.argv[2:]))
    run(cfg, callbacks=[DumpParameters(out)])
