"""Lightning overhead benchmark: `python scripts/benchmark.py --help`; the last line is overhead_ratio=<a/b>."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: `benchmarks` is not installed

from benchmarks.overhead import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
