"""The evaluate command (`scripts/evaluate.py`): one checkpoint (`--ckpt`) or every checkpoint of whole runs
(`RUN_DIR ...`), scored with the MNIST classifier (FID, KID, precision/recall, density/coverage, modes; label accuracy
and InfoGAN code purity) or, given `--fid-weights`, the FID Inception, or any registered extractor (`--extractor NAME
--extractor-weights PATH`: `torchscript`, your own network). The scoring is `metrics/evaluator.py`'s, whole
runs `evaluate_runs.py`'s, the tables and plots `evaluate_report.py`'s.

`evaluate.py RUN_DIR [RUN_DIR ...]` scores `checkpoints/iter_*.ckpt` (kept by `train.py --keep-checkpoints`) and
`last.ckpt` of each run, and writes `evaluation.csv`, `evaluation.json` and `evaluation.png` (the metrics against
iterations; every run given on one plot) into each run directory. `--truncation PSI [PSI ...]` scores each checkpoint
at each psi (a `truncation` column), plotting FID, precision and recall against psi when there are several;
`--truncation-threshold T` truncates every score BigGAN's way (a `truncation_threshold` column). With several
runs (seeds of one recipe), every metric's mean and standard deviation over them, at each iteration they all scored,
go to `evaluation_summary.{csv,json,png}` (by default, for the seeds of one recipe, in the runs' closest common folder;
`--summary DIR` for any runs).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_lightning.commands.base import Parser, run_command, seed
from gan_lightning.commands.evaluate_report import plot_truncation, print_row
from gan_lightning.commands.evaluate_runs import evaluate_runs, reference_dir, run_evaluator
from gan_lightning.commands.sample import load_gan, read_checkpoint
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.files import check_writable_file
from gan_lightning.core.options import Options
from gan_lightning.data import DATASETS
from gan_lightning.metrics import options as metric_options
from gan_lightning.metrics.evaluator import REFERENCE_SPLITS
from gan_lightning.metrics.protocols import PROTOCOLS
from gan_lightning.training.latents import Truncation, truncation_options


def build_parser() -> Parser:
    """The evaluate command's argument parser."""
    p = Parser(
        prog="evaluate.py",
        description="Score checkpoints offline: MNIST-like data with the project "
        "classifier, any data with the FID Inception (--fid-weights) or any registered extractor (--extractor NAME "
        "--extractor-weights PATH); every score with its protocol.",
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
    p.add_argument("--protocol", choices=PROTOCOLS.names(), help="a named protocol: sets -n, --reference, the "
                   "extractor and the KID/PRDC sizes as the papers' metric of that name (docs/evaluation.md); "
                   "contradicting flags are refused")  # fmt: skip
    p.add_argument(
        "-n",
        "--num",
        type=int,
        default=None,
        help="generated images per checkpoint (default 5000; the papers' FID protocol: 50000)",
    )
    for name in ("fid_weights", "fid_weights_unchecked", "extractor", "extractor_weights", "extractor_resize"):
        Options(metric_options)[name].add_to(p)
    p.add_argument(
        "--reference",
        choices=REFERENCE_SPLITS,
        default=None,
        help="the dataset split the samples are "
        "compared with (default val; the papers' FID protocol: train, the full training set)",
    )
    p.add_argument(
        "--num-reference",
        type=int,
        default=None,
        help="use at most this many reference images (default all of the split)",
    )
    p.add_argument("--seed", type=seed, default=0, help="seed for the noise (default 0)")
    p.add_argument("--summary", metavar="DIR", help="several RUN_DIRs: write every metric's mean and standard "
                   "deviation over them to DIR/evaluation_summary.{csv,json,png} (default: for the seeds of one "
                   "recipe, the runs' closest common folder)")  # fmt: skip
    p.add_argument("--plot", help="RUN_DIR mode: also write the plot here; --ckpt with several --truncation values: "
                   "write the plot against psi here")  # fmt: skip
    Options(truncation_options)["truncation"].add_to(p, nargs="+")  # several psi: the same checkpoint scored at each
    Options(truncation_options)["truncation_threshold"].add_to(p)
    return p


def run(cfg: argparse.Namespace) -> None:
    """Evaluate as configured: one JSON line per checkpoint, and the run tables and plots."""
    expand_protocol(cfg)
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
                      truncations, threshold, cfg.summary, **_reference_options(cfg))  # fmt: skip
        plots = ".png and evaluation_truncation.png" if truncations and len(truncations) > 1 else ".png"
        for run_dir in cfg.run_dirs:
            print(f"wrote {Path(run_dir) / 'evaluation.csv'}, .json and {plots}")
        return
    if cfg.summary is not None:
        raise ConfigError("--summary summarizes several RUN_DIRs; drop it with --ckpt")
    if cfg.plot is not None:
        check_writable_file(cfg.plot, "--plot")
    ckpt = read_checkpoint(cfg.ckpt)
    info = ckpt.get("gan_lightning_run", {})
    dataset = cfg.dataset or info.get("dataset", "mnist")
    data_dir = reference_dir(info, dataset, cfg.data_dir)
    gan = load_gan(cfg.ckpt, ckpt=ckpt)
    # real features once for every psi
    evaluator = run_evaluator(info, dataset, data_dir, gan.hparams.image_size, cfg.classifier, _reference_options(cfg))
    rows = []
    for psi in truncations or (None,):
        truncation = Truncation(psi, threshold)
        rows.append({**truncation.fields(), **evaluator(gan, cfg.num, cfg.seed, truncation)})
        print_row(rows[-1])
    if cfg.plot is not None and truncations and len(truncations) > 1:
        plot_truncation({cfg.ckpt: rows}, Path(cfg.plot))
        print(f"wrote {cfg.plot}")


def expand_protocol(cfg: argparse.Namespace) -> None:
    """Fill in `--protocol`'s settings (printing them), refusing explicit flags that contradict it; without one,
    the defaults (5000 generated images against the validation split)."""
    if cfg.protocol is None:
        cfg.num = 5000 if cfg.num is None else cfg.num
        cfg.reference = cfg.reference or "val"
        return
    protocol = PROTOCOLS.get(cfg.protocol)
    flag = f"--protocol {protocol.name}"
    for given, expected, name in ((cfg.num, protocol.num, "-n"), (cfg.reference, protocol.split, "--reference"),
                                  (cfg.num_reference, protocol.num_reference, "--num-reference")):  # fmt: skip
        if given is not None and given != expected:
            raise ConfigError(f"{flag} scores with {name} {expected if expected is not None else 'all'}, not {given}: "
                              f"drop {name} (or drop {flag} to choose freely)")  # fmt: skip
    if cfg.extractor not in (None, protocol.extractor):
        raise ConfigError(f"{flag} scores in {protocol.extractor}'s features, not {cfg.extractor}'s: drop --extractor")
    if cfg.extractor_resize not in (None, protocol.resize):
        raise ConfigError(f"{flag} resizes with {protocol.resize or 'the extractor its own way'}, not "
                          f"{cfg.extractor_resize}: drop --extractor-resize")  # fmt: skip
    if protocol.extractor != "inception_fid" and not cfg.extractor_weights:
        raise ConfigError(f"{flag} scores in {protocol.extractor}'s features: pass --extractor-weights PATH (its "
                          "weights file; docs/evaluation.md says where to get it)")  # fmt: skip
    if protocol.extractor == "inception_fid" and not (cfg.fid_weights or cfg.extractor_weights):
        raise ConfigError(f"{flag} scores with the FID Inception: pass --fid-weights PATH (its weights file; "
                          "docs/evaluation.md says where to get it)")  # fmt: skip
    cfg.num, cfg.reference, cfg.num_reference = protocol.num, protocol.split, protocol.num_reference
    cfg.extractor_resize = protocol.resize
    if protocol.extractor != "inception_fid" or not cfg.fid_weights:
        cfg.extractor = protocol.extractor
    cfg.protocol = protocol
    print(
        f"protocol {protocol.name}: {protocol.description}; "
        + ", ".join(f"{k} {v}" for k, v in protocol.fields().items() if k not in ("protocol_name", "description"))
    )


def _reference_options(cfg: argparse.Namespace) -> dict[str, Any]:
    if cfg.num_reference is not None and cfg.num_reference < 2:
        raise ConfigError(f"--num-reference must be at least 2, got {cfg.num_reference}")
    return {"fid_weights": cfg.fid_weights, "fid_weights_unchecked": cfg.fid_weights_unchecked,
            "extractor": cfg.extractor, "extractor_weights": cfg.extractor_weights,
            "extractor_resize": cfg.extractor_resize, "split": cfg.reference, "num_reference": cfg.num_reference,
            "protocol": cfg.protocol}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/evaluate.py`: 0 on success, 2 on bad input or data."""
    return run_command(build_parser, run, argv)
