"""Generate from a checkpoint: grids, single PNGs, tensors, interpolations, latent arithmetic (see --help)."""

from gan_lightning.commands.sample import main

if __name__ == "__main__":
    raise SystemExit(main())
