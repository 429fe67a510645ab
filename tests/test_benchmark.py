"""scripts/benchmark.py: a tiny interleaved run prints a well-formed overhead ratio last (speed is not asserted)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

from conftest import REPO

BENCH = [sys.executable, str(REPO / "scripts" / "benchmark.py")]


def test_benchmark_prints_overhead_ratio_last(tmp_path):
    out_json = tmp_path / "bench.json"
    argv = ["--model", "mlp", "--batch-size", "8", "--iters", "3", "--rounds", "2", "--warmup", "2",
            "--synthetic", "--accelerator", "cpu", "--json", str(out_json)]  # fmt: skip
    proc = subprocess.run(BENCH + argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"overhead_ratio=\d+\.\d{3}", last), last
    ratio = float(last.split("=", 1)[1])
    assert math.isfinite(ratio) and ratio > 0

    report = json.loads(out_json.read_text())
    assert report["overhead_ratio"] > 0
    for loop in ("lightning", "plain"):
        assert len(report[loop]["iteration_ms"]) == 2  # rounds
        assert all(len(block) == 3 for block in report[loop]["iteration_ms"])  # iters per block
    # Same initial weights, batch and noise: one plain iteration lands on the module's weights after one iteration,
    # so the plain loop does the module's work (fp32 on CPU: bit for bit).
    diff = report["first_iteration_check"]["max_abs_diff"]
    assert diff is not None and diff < 1e-6, diff
