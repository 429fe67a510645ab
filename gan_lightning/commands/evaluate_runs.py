"""Scoring whole runs: a run directory's checkpoints to score, the `Evaluator` each checkpoint's run needs (its
dataset, data folder and options), and `evaluate_runs`, which scores them all and writes each run's tables and
plots."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_lightning.commands.evaluate_report import plot_runs, plot_truncation, print_row, write_table
from gan_lightning.commands.evaluate_summary import SUMMARY, recipe, summary_dir, write_summary
from gan_lightning.commands.sample import load_gan, read_checkpoint
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.core.files import check_writable_dir, check_writable_file
from gan_lightning.data import DATASETS, default_data_dir
from gan_lightning.metrics.evaluator import Evaluator
from gan_lightning.metrics.extractors import build_extractor, default_extractor_weights
from gan_lightning.training.latents import Truncation


def run_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoints to score, oldest first: the kept `iter_*.ckpt` files, then `last.ckpt`."""
    folder = run_dir / "checkpoints"
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a run directory (LOG_DIR/NAME/version_N)")
    kept = sorted(folder.glob("iter_*.ckpt"))
    last = folder / "last.ckpt"
    found = kept + ([last] if last.is_file() else [])
    if not found:
        raise DataError(f"{run_dir} holds no checkpoints/iter_*.ckpt or checkpoints/last.ckpt to evaluate")
    return found


def evaluate_runs(
    run_dirs: Sequence[str | Path],
    classifier: str | None,
    data_dir: str | None,
    num_samples: int,
    seed: int,
    plot: str | Path | None = None,
    dataset: str | None = None,
    truncations: Sequence[float] | None = None,
    truncation_threshold: float | None = None,
    summary: str | Path | None = None,
    **reference: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Score every checkpoint of each run; write `evaluation.{csv,json,png}` into each run directory.

    Checks every run and checkpoint path before scoring anything, so a typo costs no time. The plot shows all
    runs (one line each); `plot` writes one more copy there. `dataset` overrides the runs' own reference data.
    `truncations`: score each checkpoint at each psi (rows gain a `truncation` field); with several, also write
    `evaluation_truncation.png` (FID, precision and recall against psi) into each run directory;
    `truncation_threshold` truncates every score BigGAN's way too (rows gain a `truncation_threshold` field).
    `reference`: `Evaluator`'s keyword options (fid_weights, split, num_reference, ...). With several runs, the
    mean and standard deviation of every metric over them go to `evaluation_summary.{csv,json,png}` in `summary`
    (default: the runs' closest common folder).
    """
    runs = {Path(d): run_checkpoints(Path(d)) for d in run_dirs}
    for path in (path for paths in runs.values() for path in paths):
        load_gan(path)  # a damaged or foreign checkpoint fails now, before any run's tables are written
    for run_dir in runs:
        if not os.access(run_dir, os.W_OK):
            raise ConfigError(f"cannot write the evaluation into {run_dir}: not writable")
    if plot is not None:
        check_writable_file(plot, "--plot")
    if summary is not None and len(runs) < 2:
        raise ConfigError("--summary averages several RUN_DIRs (the seeds of one recipe); give two or more")
    if summary is not None:
        check_writable_dir(Path(summary), "--summary")
    recipes = {}
    evaluators: dict[str, Evaluator] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    for run_dir, paths in runs.items():
        rows, seen = [], set()
        for path in paths:
            ckpt = read_checkpoint(path)
            gan = load_gan(path, ckpt=ckpt)
            iteration = int(ckpt.get("global_step", 0)) // gan.steps_per_iteration
            if iteration in seen:  # last.ckpt duplicates the final kept checkpoint
                continue
            seen.add(iteration)
            info = ckpt.get("gan_lightning_run", {})
            recipes[run_dir] = recipe(info.get("config") or {})
            reference_name = dataset or info.get("dataset", "mnist")
            root = reference_dir(info, reference_name, data_dir)
            # runs share an Evaluator only when their reference images and feature network are the same: same data,
            # size and options, same classifier
            key = reference_key(info, reference_name, root, gan.hparams.image_size,
                                run_classifier(info, reference_name, classifier))  # fmt: skip
            if key not in evaluators:
                evaluators[key] = run_evaluator(info, reference_name, root, gan.hparams.image_size, classifier,
                                                reference)  # fmt: skip
            for psi in truncations or (None,):
                truncation = Truncation(psi, truncation_threshold)
                results = evaluators[key](gan, num_samples, seed, truncation)
                row = {"iteration": iteration, "checkpoint": path.name, **truncation.fields(), **results}
                rows.append(row)
                print_row(row, run=str(run_dir))
        rows.sort(key=lambda r: r["iteration"])
        tables[str(run_dir)] = rows
        write_table(rows, run_dir)
    for run_dir in runs:
        plot_runs(tables, run_dir / "evaluation.png")
        if truncations and len(truncations) > 1:
            plot_truncation(tables, run_dir / "evaluation_truncation.png")
    if plot is not None:
        plot_runs(tables, Path(plot))
    if len(runs) > 1:
        summarize_runs(tables, summary, same_recipe=len(set(recipes.values())) == 1)
    return tables


def summarize_runs(tables: dict[str, list[dict[str, Any]]], summary: str | Path | None, same_recipe: bool) -> None:
    """Write the mean and spread over the runs: into `summary` when given; else, for the seeds of one recipe,
    into their common folder when it can be written. Says what it wrote, or why it wrote nothing."""
    folder = Path(summary) if summary is not None else summary_dir(list(tables))
    if summary is None and not same_recipe:
        print("no summary: the runs differ in more than their seed; pass --summary DIR to average them anyway")
    elif summary is None and not os.access(folder, os.W_OK):
        print(f"no summary: {folder} is not writable; pass --summary DIR")
    elif write_summary(tables, folder):
        print(f"wrote {folder / SUMMARY}.csv, .json and .png")
    else:
        print("no summary: the runs share no scored iteration, or were scored under different protocols")


def run_evaluator(info: dict[str, Any], dataset: str, root: str, image_size: int, classifier: str | None,
                  reference: dict[str, Any]) -> Evaluator:  # fmt: skip
    """The Evaluator of a checkpoint's run: its dataset options; for a dataset scored by its own extractor, the
    weights given, else those the run recorded (as it scored itself), else its extractor's own (the MNIST
    classifier, trained once and cached)."""
    options = dataset_options(info, dataset)
    classifier = run_classifier(info, dataset, classifier)
    if classifier is None and DATASETS.get(dataset).extractor is not None:
        if reference.get("fid_weights") or reference.get("extractor_weights"):
            # the feature network's weights are checked before a classifier may take minutes to train
            build_extractor(1, fid_weights=reference.get("fid_weights"), dataset=dataset,
                            fid_weights_unchecked=reference.get("fid_weights_unchecked", False),
                            extractor=reference.get("extractor"), extractor_weights=reference.get("extractor_weights"),
                            extractor_resize=reference.get("extractor_resize"))  # fmt: skip
        classifier = default_extractor_weights(dataset, root)
    return Evaluator(classifier, dataset, root, image_size, options=options, **reference)


def run_classifier(info: dict[str, Any], dataset: str, classifier: str | None) -> str | None:
    """The classifier weights that score a run: `classifier` when given, else the file the run recorded for
    `dataset` when it is still there, else None (its extractor's own)."""
    recorded = dataset_options(info, dataset).get("classifier")
    if classifier is None and recorded and Path(recorded).is_file():
        return str(recorded)
    return classifier


# DataModule options that change how images are loaded, not which: the held-out split never follows the training seed,
# and --mirror flips the training loader's images, not the split a reference is drawn from
LOADING = ("data_dir", "batch_size", "num_workers", "pin_memory", "seed", "download", "data_on_device", "mirror")


def dataset_options(info: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The run's recorded options for its reference data: its own when it trained on `dataset`, else none."""
    if dataset != info.get("dataset"):
        return {}
    options = dict(info.get("config", {}))
    if info.get("prepared"):  # resolved where the run started; the config holds it as typed
        options["prepared"] = info["prepared"]
    return options


def reference_key(info: dict[str, Any], dataset: str, root: str, image_size: int, classifier: str | None = None) -> str:
    """What decides a run's scoring: the dataset, its folder, the size and the options its DataModule takes (a
    `folder` run on other photos, or a conditional or prepared one, gets its own reference), and the classifier
    weights (`run_classifier`)."""
    spec = DATASETS.get(dataset)
    options = {k: v for k, v in dataset_options(info, dataset).items() if spec.accepts(k) and k not in LOADING}
    where = str(Path(root).resolve())
    return json.dumps([dataset, where, image_size, options, classifier], sort_keys=True, default=str)


def reference_dir(info: dict[str, Any], dataset: str, data_dir: str | None) -> str:
    """Where the reference data lives: --data-dir, else the run's own folder when it trained on it, else default."""
    own = info.get("data_dir") if dataset == info.get("dataset") else None
    return data_dir or own or default_data_dir()
