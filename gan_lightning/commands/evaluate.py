"""Offline evaluation: one checkpoint (`--ckpt`) or every checkpoint of whole runs (`RUN_DIR ...`), scored with the
MNIST classifier (FID, KID, precision/recall, density/coverage, modes; label accuracy and InfoGAN code purity).

`evaluate.py RUN_DIR [RUN_DIR ...]` scores `checkpoints/iter_*.ckpt` (kept by `train.py --keep-checkpoints`) and
`last.ckpt` of each run, and writes `evaluation.csv`, `evaluation.json` and `evaluation.png` (the metrics against
iterations; every run given on one plot) into each run directory. `--truncation PSI [PSI ...]` scores each checkpoint
at each psi (a `truncation` column), plotting FID, precision and recall against psi when there are several;
`--truncation-threshold T` truncates every score BigGAN's way (a `truncation_threshold` column).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gan_lightning.commands.base import Parser, run_command
from gan_lightning.commands.sample import load_gan, read_checkpoint
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.core.files import atomic_write, check_writable_dir, load_weights_file, write_text
from gan_lightning.core.options import Options
from gan_lightning.data import DATASETS, default_data_dir
from gan_lightning.metrics import (
    FeatureExtractor,
    Scorer,
    build_extractor,
    classifier_datasets,
    load_extractor,
    reference_extractor,
)
from gan_lightning.metrics import options as metric_options
from gan_lightning.metrics.callback import real_batches, real_labels
from gan_lightning.metrics.classifier import cached_classifier, default_cache_dir
from gan_lightning.metrics.quality import REFERENCE_FEATURES
from gan_lightning.training.gan import GAN
from gan_lightning.training.latents import Truncation, truncation_options

Tensor = torch.Tensor
REFERENCE_SPLITS = ("train", "val")  # the DataModule's train_set / val_set (CIFAR-10: train / test)

# Plotted when present, in this order; lower is better for the first four.
PLOTTED = ("fid", "intra_fid", "kid", "mode_kl", "class_kl", "modes", "precision", "recall", "density", "coverage")
# Plotted against psi: the quality (FID, precision) / diversity (recall) trade-off truncation makes.
PLOTTED_TRUNCATION = ("fid", "precision", "recall")


@torch.no_grad()
def predict(classifier: torch.nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """The classifier's predicted class for each image in [-1, 1]."""
    return torch.cat([classifier(chunk).argmax(1) for chunk in images.split(batch_size)])


def label_accuracy(gan: GAN, classifier: torch.nn.Module, per_class: int, seed: int = 0,
                   truncation: Truncation | float | None = None) -> float:  # fmt: skip
    """Conditional GAN: the fraction of samples asked for label y that the classifier calls y."""
    labels = torch.arange(gan.hparams.num_classes).repeat_interleave(per_class)
    rng = torch.Generator(gan.device).manual_seed(seed)
    latents = gan.latents.draw(len(labels), rng, gan.device, labels=labels)
    images = gan.sample(latents=latents, rng=rng, truncation=truncation)
    return (predict(classifier, images.cpu()) == labels).float().mean().item()


def code_purity(gan: GAN, classifier: torch.nn.Module, per_code: int, seed: int = 0,
                truncation: Truncation | float | None = None) -> tuple[float, list[int]]:  # fmt: skip
    """InfoGAN: how well categorical code values map to classes (mean share of each value's majority class).

    Returns the purity and the majority class of each code value; 1.0 with 10 distinct classes means the code
    learned the digits, unsupervised.
    """
    cat = torch.arange(gan.hparams.n_cat).repeat_interleave(per_code)
    rng = torch.Generator(gan.device).manual_seed(seed)
    latents = gan.latents.draw(len(cat), rng, gan.device, cat=cat)
    images = gan.sample(latents=latents, rng=rng, truncation=truncation)
    pred = predict(classifier, images.cpu()).view(gan.hparams.n_cat, per_code)
    counts = torch.stack([torch.bincount(row, minlength=10) for row in pred])  # (n_cat, 10)
    return (counts.max(1).values.sum() / pred.numel()).item(), counts.argmax(1).tolist()


def real_images(dataset: str, data_dir: str, image_size: int) -> Tensor:
    """The validation images (uint8, (N, C, S, S)) of an MNIST-like dataset: the reference set of every metric."""
    if reference_extractor(dataset) is None:
        raise ConfigError(
            f"offline evaluation without --fid-weights scores MNIST-like runs "
            f"({', '.join(classifier_datasets())}); this run used --dataset {dataset}: pass "
            "--fid-weights PATH (the FID Inception), or --dataset mnist when its images are MNIST digits"
        )
    dm = DATASETS.get(dataset)(data_dir, batch_size=1, image_size=image_size, download=False)
    dm.setup("fit")
    return dm.val_set.images


def reference_set(dataset: str, data_dir: str, image_size: int, split: str = "val",
                  options: dict[str, Any] | None = None) -> Dataset:  # fmt: skip
    """A dataset's `split` ("train" or "val") at `image_size`, built with the run's dataset `options`."""
    if split not in REFERENCE_SPLITS:
        raise ConfigError(f"--reference must be one of {', '.join(REFERENCE_SPLITS)}, got {split!r}")
    spec = DATASETS.get(dataset)
    given = {k: v for k, v in (options or {}).items() if k != "data_dir"}  # the run's; `data_dir` is decided here
    dm = spec(data_dir, **{**given, "batch_size": 1, "image_size": image_size, "download": False})
    dm.setup("fit")
    source = getattr(dm, f"{split}_set", None)
    if source is None or len(source) == 0:
        raise DataError(f"--dataset {dataset} has no {split} images under {data_dir}; pick another --reference")
    return source


def reference_cache(extractor: FeatureExtractor, source: Tensor | Dataset, limit: int, name: str,
                    cache_dir: str | Path | None = None) -> Path:  # fmt: skip
    """Where the reference statistics of these images under this extractor are cached: keyed by a SHA-256 of the
    images themselves (as the extractor receives them), the extractor's protocol (its weights' SHA-256 included),
    the reference's name and count, and the KID/PRDC subset rule; any change gives another file. The labels are
    hashed too: the per-class statistics (intra-class FID) depend on them."""
    data = hashlib.sha256()
    for batch in real_batches(source, limit, 500):
        data.update(batch.cpu().numpy().tobytes())
    labels = real_labels(source, limit)
    if labels is not None:
        data.update(labels.numpy().tobytes())
    # format 2: the per-class sums of labelled references are in the file
    key = {"data": data.hexdigest(), "reference": name, "num_reference": limit, **extractor.protocol(),
           "kid_prdc_reference": REFERENCE_FEATURES, "format": 2}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"reference-{extractor.name or 'features'}-{digest}.pt"


class Evaluator:
    """Scores GANs against one dataset's reference images (`split`, at most `num_reference` of them); the real
    features are extracted once for all, and their statistics cached across runs (`reference_cache`).

    MNIST-like datasets use the MNIST classifier at `classifier_path` (it also reads labels and InfoGAN codes);
    with `fid_weights` the FID Inception gives the features (and the classifier, when given, the mode statistics).
    """

    def __init__(
        self,
        classifier_path: str | Path | None,
        dataset: str,
        data_dir: str,
        image_size: int,
        *,
        fid_weights: str | Path | None = None,
        fid_weights_unchecked: bool = False,
        split: str = "val",
        num_reference: int | None = None,
        options: dict[str, Any] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        spec = DATASETS.get(dataset)
        if fid_weights is None:
            if spec.extractor is None:
                raise ConfigError(f"--dataset {dataset} has no classifier to score it: pass evaluate.py --dataset "
                                  "mnist (and --data-dir) when its images are MNIST digits, else --fid-weights PATH "
                                  "(the FID Inception's weights file; see the README)")  # fmt: skip
            extractor = load_extractor(spec.extractor, classifier_path)
        else:
            channels = spec.channels or (options or {}).get("channels") or 3
            extractor = build_extractor(channels, classifier=classifier_path if spec.extractor else None,
                                        fid_weights=fid_weights, dataset=dataset,
                                        fid_weights_unchecked=fid_weights_unchecked)  # fmt: skip
        classes = getattr(extractor, "classes", extractor)
        self.classifier = getattr(classes, "classifier", None)  # reads labels and codes; None on RGB data
        self.scorer = Scorer(extractor)  # the scoring path training-time metrics use too
        source = reference_set(dataset, data_dir, image_size, split, options)
        limit = len(source) if num_reference is None else min(num_reference, len(source))
        name = f"{dataset}/{split}"
        self.cache = reference_cache(extractor, source, limit, name, cache_dir)
        self.cached = self.cache.is_file()
        if self.cached:
            self.scorer.load_real_state(load_weights_file(self.cache, "reference statistics", "delete it"))
            self.scorer.reference = name
        else:
            self.scorer.add_real(real_batches(source, limit, 500), reference=name, total=limit,
                                 labels=real_labels(source, limit))  # fmt: skip
            state = self.scorer.real_state()
            atomic_write(self.cache, lambda path: torch.save(state, path), "the reference statistics cache")

    def __call__(
        self, gan: GAN, num_samples: int = 5000, seed: int = 0, truncation: Truncation | float | None = None
    ) -> dict[str, Any]:
        """Every metric of `num_samples` samples from `gan` (fixed noise from `seed`, truncated as `truncation`, a
        `Truncation` or psi, says), and under `protocol` how they were measured."""
        results: dict[str, Any] = self.scorer.score(gan, num_samples, seed, truncation, per_class=True)
        if gan.hparams.conditional and self.classifier is not None:
            per_class = num_samples // gan.hparams.num_classes
            results["label_accuracy"] = label_accuracy(gan, self.classifier, per_class, seed, truncation)
        if gan.hparams.infogan and self.classifier is not None:
            results["code_purity"], results["code_classes"] = code_purity(
                gan, self.classifier, num_samples // 10, seed, truncation
            )
        results["protocol"] = self.scorer.protocol(num_samples, seed, truncation, gan.latents.num_classes)
        return results


def evaluate(gan: GAN, classifier_path: str, data_dir: str, num_samples: int = 5000, seed: int = 0,
             dataset: str = "mnist", truncation: Truncation | float | None = None) -> dict[str, Any]:  # fmt: skip
    """Sample-quality metrics of `gan` against `dataset`'s validation images, with the project's classifier."""
    return Evaluator(classifier_path, dataset, data_dir, gan.hparams.image_size)(gan, num_samples, seed, truncation)


# ------------------------------------------------------------------------------------------------------ runs
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
    **reference: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Score every checkpoint of each run; write `evaluation.{csv,json,png}` into each run directory.

    Checks every run and checkpoint path before scoring anything, so a typo costs no time. The plot shows all
    runs (one line each); `plot` writes one more copy there. `dataset` overrides the runs' own reference data.
    `truncations`: score each checkpoint at each psi (rows gain a `truncation` field); with several, also write
    `evaluation_truncation.png` (FID, precision and recall against psi) into each run directory;
    `truncation_threshold` truncates every score BigGAN's way too (rows gain a `truncation_threshold` field).
    `reference`: `Evaluator`'s keyword options (fid_weights, split, num_reference, ...).
    """
    runs = {Path(d): run_checkpoints(Path(d)) for d in run_dirs}
    for run_dir in runs:
        if not os.access(run_dir, os.W_OK):
            raise ConfigError(f"cannot write the evaluation into {run_dir}: not writable")
    if plot is not None:
        check_writable_dir(Path(plot).parent, "--plot")
    evaluators: dict[tuple[str, int], Evaluator] = {}
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
            reference_name = dataset or info.get("dataset", "mnist")
            root = _reference_dir(info, reference_name, data_dir)
            key = (reference_name, gan.hparams.image_size)
            if key not in evaluators:
                evaluators[key] = _evaluator(info, reference_name, root, gan.hparams.image_size, classifier, reference)
            for psi in truncations or (None,):
                truncation = Truncation(psi, truncation_threshold)
                results = evaluators[key](gan, num_samples, seed, truncation)
                row = {"iteration": iteration, "checkpoint": path.name, **truncation.fields(), **results}
                rows.append(row)
                print(json.dumps({"run": str(run_dir), **_rounded(row)}), flush=True)
        rows.sort(key=lambda r: r["iteration"])
        tables[str(run_dir)] = rows
        write_table(rows, run_dir)
    for run_dir in runs:
        plot_runs(tables, run_dir / "evaluation.png")
        if truncations and len(truncations) > 1:
            plot_truncation(tables, run_dir / "evaluation_truncation.png")
    if plot is not None:
        plot_runs(tables, Path(plot))
    return tables


def _evaluator(info: dict[str, Any], dataset: str, root: str, image_size: int, classifier: str | None,
               reference: dict[str, Any]) -> Evaluator:  # fmt: skip
    """The Evaluator of a checkpoint's run: its dataset options, the classifier (cached) for MNIST-like data."""
    if classifier is None and DATASETS.get(dataset).extractor is not None:
        classifier = str(cached_classifier(root))
    options = info.get("config", {}) if dataset == info.get("dataset") else {}
    return Evaluator(classifier, dataset, root, image_size, options=options, **reference)


def _reference_dir(info: dict[str, Any], dataset: str, data_dir: str | None) -> str:
    """Where the reference data lives: --data-dir, else the run's own folder when it trained on it, else default."""
    own = info.get("data_dir") if dataset == info.get("dataset") else None
    return data_dir or own or default_data_dir()


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its `protocol` fields as `protocol.<field>` columns (the CSV's form)."""
    protocol = row.get("protocol") or {}
    return {**{k: v for k, v in row.items() if k != "protocol"}, **{f"protocol.{k}": v for k, v in protocol.items()}}


def write_table(rows: list[dict[str, Any]], run_dir: Path) -> None:
    """`evaluation.csv` and `evaluation.json` of a run's scored checkpoints, one row each."""
    columns = list(dict.fromkeys(k for row in rows for k in _flat(row)))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(_flat(_rounded(r) | {k: json.dumps(v) for k, v in r.items() if isinstance(v, list)}) for r in rows)
    write_text(run_dir / "evaluation.csv", table.getvalue(), "the evaluation table")
    write_text(run_dir / "evaluation.json", json.dumps(rows, indent=1) + "\n", "the evaluation table")


def plot_runs(tables: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """One panel per metric, iterations on x, one line per run (per run and psi with --truncation); a PNG."""
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for run, rows in tables.items():
        for row in rows:
            label = _short(run) + (f" psi={row['truncation']:g}" if "truncation" in row else "")
            series.setdefault(label, []).append((row["iteration"], row))
    _plot(series, PLOTTED, "iteration", path)


def plot_truncation(tables: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """FID, precision and recall against psi, one line per run and checkpoint (iteration); a PNG."""
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for run, rows in tables.items():
        for row in rows:
            label = _short(run) + (f" iter {row['iteration']}" if "iteration" in row else "")
            series.setdefault(label, []).append((row["truncation"], row))
    _plot(series, PLOTTED_TRUNCATION, "truncation psi", path)


def _plot(series: dict[str, list[tuple[float, dict[str, Any]]]], metrics: Sequence[str], xlabel: str,
          path: Path) -> None:  # fmt: skip
    """One panel per metric present, each series a line of (x, row) points sorted by x; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed (and none on a cluster node)
    import matplotlib.pyplot as plt

    names = [m for m in metrics if any(m in row for points in series.values() for _, row in points)]
    cols = min(3, len(names))
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for label, points in series.items():
            xy = sorted((x, row[name]) for x, row in points if name in row)
            ax.plot(*zip(*xy, strict=True), marker="o", label=label)
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


# ---------------------------------------------------------------------------------------------------- command
def build_parser() -> Parser:
    """The evaluate command's argument parser."""
    p = Parser(
        prog="evaluate.py",
        description="Score checkpoints offline: MNIST-like data with the project "
        "classifier, any data with the FID Inception (--fid-weights); every score with its protocol.",
    )
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="runs (LOG_DIR/NAME/version_N) to score wholly")
    p.add_argument("--ckpt", help="score this one checkpoint instead (one JSON line)")
    p.add_argument("--classifier", help="MNIST classifier (default: trained once and cached for --data-dir's data)")
    p.add_argument("--data-dir", default=None, help="MNIST root (default: the run's, else $GAN_DATA_DIR or ./data)")
    p.add_argument(
        "--dataset",
        choices=DATASETS.names(),
        help="score against this dataset's images instead of the run's own (e.g. MNIST for a folder of MNIST PNGs)",
    )
    p.add_argument(
        "-n",
        "--num",
        type=int,
        default=5000,
        help="generated images per checkpoint (default 5000; the papers' FID protocol: 50000)",
    )
    for name in ("fid_weights", "fid_weights_unchecked"):
        Options(metric_options)[name].add_to(p)
    p.add_argument(
        "--reference",
        choices=REFERENCE_SPLITS,
        default="val",
        help="the dataset split the samples are "
        "compared with (default val; the papers' FID protocol: train, the full training set)",
    )
    p.add_argument(
        "--num-reference",
        type=int,
        default=None,
        help="use at most this many reference images (default all of the split)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the noise (default 0)")
    p.add_argument("--plot", help="RUN_DIR mode: also write the plot here; --ckpt with several --truncation values: "
                   "write the plot against psi here")  # fmt: skip
    Options(truncation_options)["truncation"].add_to(p, nargs="+")  # several psi: the same checkpoint scored at each
    Options(truncation_options)["truncation_threshold"].add_to(p)
    return p


def run(cfg: argparse.Namespace) -> None:
    """Evaluate as configured: one JSON line per checkpoint, and the run tables and plots."""
    if cfg.num < 10:
        raise ConfigError(f"--num must be at least 10, got {cfg.num}")
    if bool(cfg.ckpt) == bool(cfg.run_dirs):
        raise ConfigError("give either RUN_DIR ... or --ckpt CKPT")
    truncations, threshold = cfg.truncation, cfg.truncation_threshold
    for psi in truncations or ():
        Options(truncation_options)["truncation"].validate(psi)
    Options(truncation_options)["truncation_threshold"].validate(threshold)
    if cfg.run_dirs:
        evaluate_runs(cfg.run_dirs, cfg.classifier, cfg.data_dir, cfg.num, cfg.seed, cfg.plot, cfg.dataset,
                      truncations, threshold, **_reference_options(cfg))  # fmt: skip
        plots = ".png and evaluation_truncation.png" if truncations and len(truncations) > 1 else ".png"
        for run_dir in cfg.run_dirs:
            print(f"wrote {Path(run_dir) / 'evaluation.csv'}, .json and {plots}")
        return
    if cfg.plot is not None:
        check_writable_dir(Path(cfg.plot).parent, "--plot")
    ckpt = read_checkpoint(cfg.ckpt)
    info = ckpt.get("gan_lightning_run", {})
    dataset = cfg.dataset or info.get("dataset", "mnist")
    data_dir = _reference_dir(info, dataset, cfg.data_dir)
    gan = load_gan(cfg.ckpt, ckpt=ckpt)
    # real features once for every psi
    evaluator = _evaluator(info, dataset, data_dir, gan.hparams.image_size, cfg.classifier, _reference_options(cfg))
    rows = []
    for psi in truncations or (None,):
        truncation = Truncation(psi, threshold)
        rows.append({**truncation.fields(), **evaluator(gan, cfg.num, cfg.seed, truncation)})
        print(json.dumps(_rounded(rows[-1])), flush=True)
    if cfg.plot is not None and truncations and len(truncations) > 1:
        plot_truncation({cfg.ckpt: rows}, Path(cfg.plot))
        print(f"wrote {cfg.plot}")


def _reference_options(cfg: argparse.Namespace) -> dict[str, Any]:
    if cfg.num_reference is not None and cfg.num_reference < 2:
        raise ConfigError(f"--num-reference must be at least 2, got {cfg.num_reference}")
    return {"fid_weights": cfg.fid_weights, "fid_weights_unchecked": cfg.fid_weights_unchecked,
            "split": cfg.reference, "num_reference": cfg.num_reference}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/evaluate.py`: 0 on success, 2 on bad input or data."""
    return run_command(build_parser(), run, argv)
