"""Output parity of --model r3gan with brownvc/R3GAN: `python scripts/parity_r3gan.py --reference DIR`."""

from gan_lightning.bench.parity_r3gan import main

if __name__ == "__main__":
    raise SystemExit(main())
