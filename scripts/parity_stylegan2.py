"""StyleGAN2 output parity against NVlabs' stylegan2-ada-pytorch: `python scripts/parity_stylegan2.py --help`; the
last line is one JSON object of max |difference| values."""

from gan_lightning.bench.parity_stylegan2 import main

if __name__ == "__main__":
    raise SystemExit(main())
