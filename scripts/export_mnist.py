"""Save MNIST digits as PNGs for folder experiments: `python scripts/export_mnist.py --out DIR --num 500`."""

from gan_lightning.commands.export_mnist import main

if __name__ == "__main__":
    raise SystemExit(main())
