"""What offline evaluation writes: one JSON line per score, each run's `evaluation.csv` and `evaluation.json`, and
the plots of the metrics against iterations (`evaluation.png`) and against truncation psi."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_lightning.core.files import atomic_write, write_text

# Plotted when present, in this order; lower is better for the first four.
PLOTTED = ("fid", "intra_fid", "kid", "mode_kl", "class_kl", "modes", "precision", "recall", "density", "coverage")
# Plotted against psi: the quality (FID, precision) / diversity (recall) trade-off truncation makes.
PLOTTED_TRUNCATION = ("fid", "precision", "recall")


def print_row(row: dict[str, Any], **context: Any) -> None:
    """One scored checkpoint as a JSON line on stdout, after `context` (the run), its floats rounded."""
    print(json.dumps({**context, **rounded(row)}), flush=True)


def rounded(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its floats rounded to 4 decimals, as printed and written to the CSV."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its `protocol` fields as `protocol.<field>` columns (the CSV's form)."""
    protocol = row.get("protocol") or {}
    return {**{k: v for k, v in row.items() if k != "protocol"}, **{f"protocol.{k}": v for k, v in protocol.items()}}


def write_table(rows: list[dict[str, Any]], run_dir: Path, name: str = "evaluation") -> None:
    """`NAME.csv` and `NAME.json` (default `evaluation`) of a run's scored checkpoints, one row each."""
    columns = list(dict.fromkeys(k for row in rows for k in _flat(row)))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(_flat(rounded(r) | {k: json.dumps(v) for k, v in r.items() if isinstance(v, list)}) for r in rows)
    write_text(run_dir / f"{name}.csv", table.getvalue(), "the evaluation table")
    write_text(run_dir / f"{name}.json", json.dumps(rows, indent=1) + "\n", "the evaluation table")


def plot_runs(tables: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """One panel per metric, iterations on x, one line per run (per run and psi with --truncation); a PNG."""
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for run, rows in tables.items():
        for row in rows:
            label = _short(run) + (f" psi={row['truncation']:g}" if "truncation" in row else "")
            series.setdefault(label, []).append((row["iteration"], row))
    plot_series(series, PLOTTED, "iteration", path)


def plot_truncation(tables: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """FID, precision and recall against psi, one line per run and checkpoint (iteration); a PNG."""
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for run, rows in tables.items():
        for row in rows:
            label = _short(run) + (f" iter {row['iteration']}" if "iteration" in row else "")
            series.setdefault(label, []).append((row["truncation"], row))
    plot_series(series, PLOTTED_TRUNCATION, "truncation psi", path)


def plot_series(series: dict[str, list[tuple[float, dict[str, Any]]]], metrics: Sequence[str], xlabel: str,
                path: Path) -> None:  # fmt: skip
    """One panel per metric present, each series a line of (x, row) points sorted by x (with a band of one
    standard deviation where the rows hold `<metric>_sd`, as summaries across runs do); written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed (and none on a cluster node)
    import matplotlib.pyplot as plt

    names = [m for m in metrics if any(m in row for points in series.values() for _, row in points)]
    cols = min(3, len(names))
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for label, points in series.items():
            xy = sorted((x, row[name], row.get(f"{name}_sd")) for x, row in points if name in row)
            xs, ys, stds = zip(*xy, strict=True)
            ax.plot(xs, ys, marker="o", label=label)
            if all(s is not None for s in stds):
                ax.fill_between(xs, [y - s for y, s in zip(ys, stds, strict=True)],
                                [y + s for y, s in zip(ys, stds, strict=True)], alpha=0.2)  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    fig.tight_layout()
    try:
        atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"), "the evaluation plot")
    finally:
        plt.close(fig)


def _short(run: str) -> str:
    parts = Path(run).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else run
