"""Train the MNIST classifier that scores generated digits: `python scripts/train_classifier.py --data-dir DIR`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gan_lightning.classifier import train_classifier
from gan_lightning.data.base import default_data_dir
from gan_lightning.errors import ConfigError, DataError


def main(argv: Sequence[str] | None = None) -> int:
    """Train, save and report; exit status 2 on bad input or missing data."""
    p = argparse.ArgumentParser(prog="train_classifier.py", description=__doc__)
    p.add_argument("--data-dir", default=None, help="MNIST root, DIR/MNIST/raw (default $GAN_DATA_DIR or ./data)")
    p.add_argument("--out", default="checkpoints/mnist_classifier.pt", help="where to save (default %(default)s)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the 55,000 training digits (default 2)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    args = p.parse_args(argv)
    try:
        data_dir = args.data_dir or default_data_dir()
        result = train_classifier(data_dir, args.out, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    except (ConfigError, DataError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"val accuracy: {result['val_accuracy']:.4f} ({result['seconds']:.0f} s of training)")
    print(f"classifier:   {result['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
