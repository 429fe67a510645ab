"""Train the MNIST classifier that scores generated digits: `python scripts/train_classifier.py --data-dir DIR`."""

from gan_lightning.commands.train_classifier import main

if __name__ == "__main__":
    raise SystemExit(main())
