"""Loader benchmark, lazy vs prepared vs in-memory: `python scripts/benchmark_data.py --help`."""

from gan_lightning.bench.data import main

if __name__ == "__main__":
    raise SystemExit(main())
