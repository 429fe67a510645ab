"""FID Inception images/s, ours vs torch-fidelity's as it ships: `python scripts/benchmark_fid.py --help`."""

from gan_lightning.bench.fid import main

if __name__ == "__main__":
    raise SystemExit(main())
