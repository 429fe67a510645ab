"""Lightning overhead benchmark: `python scripts/benchmark.py --help`; the last line is overhead_ratio=<a/b>."""

from gan_lightning.bench.trainer import main

if __name__ == "__main__":
    raise SystemExit(main())
