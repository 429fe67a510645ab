"""Write MNIST digits as PNG files: a small image folder for `--dataset folder` experiments (DiffAugment)."""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from gan_lightning.commands.base import Parser, run_command, seed
from gan_lightning.core.errors import ConfigError, WriteError
from gan_lightning.core.files import check_writable_dir, make_dirs, reason, remove_empty_dirs


def export_mnist_pngs(data_dir: str, out_dir: str | Path, num: int, seed: int = 0) -> list[Path]:
    """Save `num` training digits, drawn without replacement for `seed`, as `out_dir/<class>/<index>.png`."""
    from gan_lightning.data.mnist import MNISTDataModule

    if num < 1:
        raise ConfigError(f"--num must be positive, got {num}")
    out_dir = Path(os.path.abspath(out_dir))  # absolute: `--out .` has a parent to write the staging folder into
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} exists and is not an empty directory; choose a new --out")
    check_writable_dir(out_dir.parent, "--out")  # the staging folder goes beside --out
    dm = MNISTDataModule(data_dir, download=False)
    dm.setup("fit")
    train = dm.train_set
    if num > len(train):
        raise ConfigError(f"--num {num} is more than the {len(train)} training digits")
    picks = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:num]
    # written beside --out and renamed to it when complete: a full disk or a kill leaves no half folder to train on
    staging = out_dir.with_name(f"{out_dir.name}.partial{os.getpid()}")
    names = [Path(str(int(train.labels[i]))) / f"{i:05d}.png" for i in picks.tolist()]
    made = make_dirs(out_dir.parent, "--out")
    try:
        for i, name in zip(picks.tolist(), names, strict=True):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(train.images[i, 0].numpy(), mode="L").save(staging / name)  # (28, 28) uint8
        if out_dir.exists():
            out_dir.rmdir()  # empty, as checked above
        os.replace(staging, out_dir)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_dirs(made)
        raise WriteError(f"could not write the digits under {out_dir} ({reason(err)}); nothing was kept: free space "
                         "or pass another --out") from None  # fmt: skip
    return [out_dir / name for name in names]


def build_parser() -> Parser:
    """The export_mnist command's argument parser."""
    p = Parser(prog="export_mnist.py", description="Save MNIST training digits as PNGs (a folder dataset).")
    p.add_argument("--data-dir", default=None, help="MNIST root, DIR/MNIST/raw (default $GAN_DATA_DIR or ./data)")
    p.add_argument("--out", required=True, help="a new or empty directory; digits go to OUT/<class>/<index>.png")
    p.add_argument("--num", type=int, default=500, help="how many digits (default %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="which digits (default %(default)s)")
    return p


def run(cfg: argparse.Namespace) -> None:
    """Export as configured and say where the files went."""
    from gan_lightning.data.base import default_data_dir

    paths = export_mnist_pngs(cfg.data_dir or default_data_dir(), cfg.out, cfg.num, cfg.seed)
    print(f"wrote {len(paths)} PNGs under {cfg.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/export_mnist.py`: 0 on success, 2 on bad input or missing data."""
    return run_command(build_parser, run, argv)
