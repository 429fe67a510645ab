"""Run by test_prepared.py on each rank: the train command plus a callback that records which images every batch
held. The images are uniform greys whose value encodes their index (`index * STEP`), so a batch decodes back to
the indices it contains."""

import json
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

from gan_lightning.commands.base import run_command
from gan_lightning.commands.train import build_parser, resolve, run

STEP = 7  # grey levels between consecutive indices: 0, 7, ..., 7 * 36 <= 255


def decode(images: torch.Tensor) -> list[int]:
    """The index of each uniform [-1, 1] image of `images` (N, C, H, W); refuses an image that is not uniform."""
    grey = (images.double() + 1) / 2 * 255 / STEP  # (N, C, H, W) in index units
    index = grey.round()
    if (grey - index).abs().max() > 0.01 or (index != index.flatten(1)[:, :1, None, None]).any():
        raise ValueError("a training image is not one of the generated uniform greys")
    return index.flatten(1)[:, 0].long().tolist()


class RecordSamples(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.epochs: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.epochs.setdefault(trainer.current_epoch, []).extend(decode(batch[0]))

    def on_train_end(self, trainer, pl_module) -> None:
        train_set = trainer.datamodule.train_set
        record = {
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "train_split": decode(torch.stack([train_set[i][0] for i in range(len(train_set))])),
            "epochs": self.epochs,
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def train(cfg) -> None:
    """As the train command trains (its `run` returns paths, which are not an exit status), plus the recorder."""
    run(resolve(cfg), callbacks=[RecordSamples(Path(sys.argv[1]))])


if __name__ == "__main__":
    sys.exit(run_command(build_parser(), train, sys.argv[2:]))
