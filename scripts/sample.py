"""Generate from a checkpoint: grids, single PNGs, tensors, interpolations, latent arithmetic (see --help)."""

from gan_lightning.sampling import main

if __name__ == "__main__":
    raise SystemExit(main())
