"""Prepare an image folder or CelebA once for fast training: `python scripts/prepare_data.py --help`."""

from gan_lightning.commands.prepare import main

if __name__ == "__main__":
    raise SystemExit(main())
