"""The train_classifier command (`scripts/train_classifier.py`): train and save the MNIST classifier that scores
generated digits (`gan_lightning.metrics.classifier`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gan_lightning.commands.base import Parser, run_command, seed
from gan_lightning.core.files import check_writable_file
from gan_lightning.metrics.classifier import train_classifier


def build_parser() -> Parser:
    """The train_classifier command's argument parser."""
    p = Parser(prog="train_classifier.py", description="Train the MNIST classifier that scores generated digits.")
    p.add_argument("--data-dir", default=None, help="MNIST root, DIR/MNIST/raw (default $GAN_DATA_DIR or ./data)")
    p.add_argument("--out", default="checkpoints/mnist_classifier.pt", help="where to save (default %(default)s)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the 55,000 training digits (default 2)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--seed", type=seed, default=0, help="default 0")
    return p


def run(cfg: argparse.Namespace) -> None:
    """Train and save a classifier as configured, and report its validation accuracy."""
    from gan_lightning.data.base import default_data_dir

    data_dir = cfg.data_dir or default_data_dir()
    check_writable_file(cfg.out, "--out")  # before minutes of training, not after
    result = train_classifier(
        data_dir, cfg.out, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, progress=True
    )
    print(f"val accuracy: {result['val_accuracy']:.4f} ({result['seconds']:.0f} s of training)")
    print(f"classifier:   {result['path']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/train_classifier.py`: 0 on success, 2 on bad input or missing data."""
    return run_command(build_parser, run, argv)
