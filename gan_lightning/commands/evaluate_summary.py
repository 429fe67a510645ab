"""Results across runs (seeds of one recipe): every metric's mean and standard deviation over the runs that
`evaluate.py RUN_DIR RUN_DIR ...` scored, at each iteration (and psi) they all reached, written as
`evaluation_summary.{csv,json,png}`."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_lightning.commands.evaluate_report import PLOTTED, plot_series, print_row, write_table

SUMMARY = "evaluation_summary"
KEYS = ("iteration", "truncation", "truncation_threshold")  # what identifies a row across runs


def summary_dir(run_dirs: Sequence[str | Path]) -> Path:
    """Where the summary of these runs goes by default: the closest folder holding them all (LOG_DIR/NAME for the
    versions of one name, LOG_DIR for several names; `/` at worst)."""
    return Path(os.path.commonpath([Path(d).resolve().parent for d in run_dirs]))


def summarize(tables: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per iteration (and psi) that every run scored, with `runs` (how many), each metric's mean under its
    name and its sample standard deviation over the runs (n - 1) as `<metric>_sd` (`_std` is taken: KID's own
    spread over subsets is the metric `kid_std`), over the finite values only (`<metric>_n` counts them when some
    run's is NaN), and the shared protocol. [] for fewer than two runs, or
    runs scored under different protocols (their numbers do not average)."""
    if len(tables) < 2:
        return []
    by_key = [{tuple(row.get(k) for k in KEYS): row for row in rows} for rows in tables.values()]
    common = sorted(set.intersection(*(set(rows) for rows in by_key)), key=lambda key: [x or 0 for x in key])
    summary = []
    for key in common:
        rows = [rows[key] for rows in by_key]
        if any(row.get("protocol") != rows[0].get("protocol") for row in rows):
            return []
        metrics = [k for k in rows[0] if k not in KEYS and all(is_number(row.get(k)) for row in rows)]
        out: dict[str, Any] = {k: v for k, v in zip(KEYS, key, strict=True) if v is not None}
        out["runs"] = len(rows)
        for name in metrics:
            # a diverged run scores NaN: the others still average, and `<metric>_n` says how many did
            values = [float(row[name]) for row in rows if math.isfinite(row[name])]
            out[name] = statistics.fmean(values) if values else math.nan
            out[f"{name}_sd"] = statistics.stdev(values) if len(values) > 1 else math.nan
            if len(values) < len(rows):
                out[f"{name}_n"] = len(values)
        out["protocol"] = rows[0].get("protocol")
        summary.append(out)
    return summary


def is_number(value: Any) -> bool:
    """A metric value that averages: a real number (not a flag, a list or a name)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def recipe(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """What makes runs the seeds of one recipe: every recorded flag that defines the networks or the training
    (resume rules "refuse" and "warn"), except the seed."""
    from gan_lightning.commands.train.runconfig import flags_with

    keys = sorted({*flags_with("refuse"), *flags_with("warn")} - {"seed"})
    return tuple((k, repr(config.get(k))) for k in keys)


def write_summary(tables: dict[str, list[dict[str, Any]]], folder: Path) -> list[dict[str, Any]]:
    """Print the summary rows of these runs and write `evaluation_summary.{csv,json,png}` into `folder`; the rows
    ([] and nothing written when there is nothing to summarize)."""
    rows = summarize(tables)
    if not rows:
        return rows
    for row in rows:
        print_row(row, summary=f"{len(tables)} runs")
    write_table(rows, folder, SUMMARY)
    label = f"mean ± std of {len(tables)} runs"
    series = {label + (f" psi={r['truncation']:g}" if "truncation" in r else ""): [] for r in rows}
    for row in rows:
        series[label + (f" psi={row['truncation']:g}" if "truncation" in row else "")].append((row["iteration"], row))
    plot_series(series, PLOTTED, "iteration", folder / f"{SUMMARY}.png")
    return rows
