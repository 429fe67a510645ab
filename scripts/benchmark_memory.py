"""Scoring's peak memory and extractor images/s by sample count: `python scripts/benchmark_memory.py --help`."""

from gan_lightning.bench.memory import main

if __name__ == "__main__":
    raise SystemExit(main())
