"""Train a GAN: `python scripts/train.py --help` lists the flags and presets."""

from gan_lightning.commands.train import main

if __name__ == "__main__":
    raise SystemExit(main())
