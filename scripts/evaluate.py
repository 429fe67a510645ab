"""Score a checkpoint offline: FID/KID/modes with the MNIST classifier, label accuracy, InfoGAN code purity."""

from gan_lightning.commands.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
