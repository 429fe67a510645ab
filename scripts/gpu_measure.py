"""The GPU measurement: `python scripts/gpu_measure.py --out gpu.json` (see `--help`); one JSON file."""

from gan_lightning.bench.gpu import main

if __name__ == "__main__":
    raise SystemExit(main())
