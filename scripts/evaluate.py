"""Score a checkpoint offline: FID/KID/modes with the MNIST classifier, label accuracy, InfoGAN code purity."""

from gan_lightning.evaluation import main

if __name__ == "__main__":
    raise SystemExit(main())
