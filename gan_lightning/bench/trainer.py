"""Lightning overhead benchmark (`scripts/benchmark.py`): `scripts/train.py`'s training run versus a plain PyTorch
loop doing the same work; this module is the command (the run, its report, parser and main).

(a) is the real thing: `cli.run` builds the GAN, the data module, the TensorBoard logger, the sample-grid,
checkpoint, progress-bar and health callbacks and the Trainer exactly as `scripts/train.py` does, and trains.
(b) is the plain PyTorch loop of `plain_loop.py` over deep copies of the same networks, running the module's own
components. Both run in one process, interleaved (`timing.py`).

The report gives both loops' ms/iteration and images/s, and the fixed cost: the median over rounds of the
difference of the two loops' mean time per iteration in adjacent blocks. The last line printed is
`overhead_ratio=<lightning / plain>`, the median of the same blocks' ratio (pairing adjacent blocks cancels slow
drifts). The GPU measurement of issue 12, for instance:

    python scripts/benchmark.py --model dcgan --image-size 64 --precision bf16-mixed --batch-size 128 \
        --accelerator cuda --data-on-device [--channels-last] [--compile]
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_lightning.bench.data import write_cifar10_like
from gan_lightning.bench.plain_loop import ADAM_VARIANTS
from gan_lightning.bench.timing import BenchConfig, Timings, interleave_callback, summarize
from gan_lightning.commands.base import CommandStopped, Parser, run_command, seed
from gan_lightning.commands.train.presets import PRESETS
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data.base import default_data_dir
from gan_lightning.models import MODELS
from gan_lightning.training.objectives import OBJECTIVES
from gan_lightning.training.steps import networks_to_compile

ADAM_CHOICES = ("module", *ADAM_VARIANTS)
PRECISIONS = ("32-true", "bf16-mixed")
# Dynamo keys compiled code on the module instance and on which parameters require grad: both loops' copies of G
# and D, each in its trainable and its frozen phase, need more entries than the default 8.
COMPILE_RECOMPILE_LIMIT = 64
SYNTHETIC_IMAGES = 60_000  # as many as MNIST's training file, so epochs are as long as with the real data
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# -------------------------------------------------------------------------------------------------------- data
def _write_idx(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 | array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_synthetic_mnist(root: Path, n: int = SYNTHETIC_IMAGES, seed: int = 0) -> Path:
    """Random 28x28 uint8 digits in MNIST's file layout under root/MNIST/raw, for the CLI's MNIST loader."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", n), ("t10k", max(1, n // 6))):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count, dtype=np.uint8))
    return root


def has_mnist(data_dir: str) -> bool:
    """Whether `data_dir` holds MNIST's four raw files."""
    return all((Path(data_dir) / "MNIST" / "raw" / name).is_file() for name in MNIST_FILES)


# ---------------------------------------------------------------------------------------------------- the run
def cli_argv(bench: BenchConfig, data_dir: str, log_dir: str) -> list[str]:
    """`scripts/train.py` flags for this benchmark; everything else stays at the CLI's defaults."""
    iterations = bench.warmup + bench.rounds * bench.iters + 1  # +1: the last block's time ends at the next batch start
    devices = "1" if bench.device is None or bench.accelerator == "cpu" else f"{bench.device},"
    argv = [
        "--precision", bench.precision, "--accelerator", bench.accelerator, "--devices", devices,
        "--seed", str(bench.seed), "--data-dir", data_dir, "--no-download", "--log-dir", log_dir,
        "--max-steps", str(iterations),
    ]  # fmt: skip
    if bench.preset is not None:  # the preset's dataset, model, loss, batch and recipe; explicit flags override
        argv = ["--preset", bench.preset, *argv]
    for flag in ("model", "batch_size", "loss", "d_steps", "image_size", "ngf", "ndf", "accumulate"):
        if getattr(bench, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(bench, flag))]
    for flag in ("conditional", "infogan", "channels_last", "compile", "data_on_device"):
        argv += [f"--{flag.replace('_', '-')}"] * getattr(bench, flag)
    return argv


def _validate(bench: BenchConfig) -> None:
    for name in ("iters", "rounds", "warmup", "batch_size", "threads", "image_size", "ngf", "ndf", "accumulate"):
        value = getattr(bench, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if bench.budget_s is not None and not bench.budget_s > 0:
        raise ConfigError(f"--budget-s must be positive, got {bench.budget_s}")
    if bench.device is not None and bench.device < 0:
        raise ConfigError(f"--device must be >= 0, got {bench.device}")
    if bench.synthetic and bench.data_dir is not None:
        raise ConfigError("--synthetic and --data-dir exclude each other")
    if bench.preset is not None and bench.preset not in PRESETS:
        raise ConfigError(f"--preset {bench.preset!r}: choose one of {', '.join(PRESETS)}")
    if bench.data_dir is not None and bench_dataset(bench) == "mnist" and not has_mnist(bench.data_dir):
        raise DataError(f"no MNIST under {Path(bench.data_dir) / 'MNIST' / 'raw'}; fix --data-dir or use --synthetic")


def bench_dataset(bench: BenchConfig) -> str:
    """The dataset the run trains on: its preset's, else MNIST (real, or synthetic in its layout)."""
    dataset = PRESETS[bench.preset].get("dataset", "mnist") if bench.preset else "mnist"
    if dataset not in ("mnist", "cifar10"):
        raise ConfigError(f"--preset {bench.preset} trains on {dataset}; the benchmark generates MNIST and CIFAR-10 "
                          "only: pick a preset of those")  # fmt: skip
    return dataset


def bench_data(bench: BenchConfig, tmp: str) -> tuple[str, str]:
    """(data dir, description): MNIST from --data-dir or the CLI's, else data generated in `tmp` in the layout."""
    if bench_dataset(bench) == "cifar10":
        if bench.data_dir is not None:
            return bench.data_dir, f"CIFAR-10 from {bench.data_dir}"
        return str(write_cifar10_like(Path(tmp) / "data", seed=bench.seed)), "synthetic CIFAR-10 (10,000 images)"
    data_dir = bench.data_dir or default_data_dir()
    if bench.synthetic or not has_mnist(data_dir):
        described = f"synthetic MNIST ({SYNTHETIC_IMAGES:,} random 28x28 1-channel digits)"
        return str(write_synthetic_mnist(Path(tmp) / "data", seed=bench.seed)), described
    return data_dir, f"MNIST from {Path(data_dir) / 'MNIST' / 'raw'}"


def run_benchmark(bench: BenchConfig) -> dict[str, Any]:
    """Run `cli.run` with the interleaving callback; returns the report (see `summarize`)."""
    from gan_lightning.commands import train as cli

    _validate(bench)
    deadline = None if bench.budget_s is None else time.perf_counter() + bench.budget_s
    for message in (".*log_every_n_steps.*", ".*does not have many workers.*", ".*GPU available but not used.*"):
        warnings.filterwarnings("ignore", message=message)
    if bench.threads is not None:
        torch.set_num_threads(bench.threads)
    if bench.compile:
        from torch import _dynamo

        _dynamo.config.recompile_limit = max(_dynamo.config.recompile_limit, COMPILE_RECOMPILE_LIMIT)
    threads = torch.get_num_threads()
    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as tmp:
        data_dir, data = bench_data(bench, tmp)
        cfg = cli.resolve(cli.build_parser().parse_args(cli_argv(bench, data_dir, str(Path(tmp) / "logs"))))
        with redirect_stdout(sys.stderr):  # progress bar and the (temporary) paths: stdout is the report
            cli.run(cfg, callbacks=[interleave_callback(bench, timings, deadline)])
    if len(timings.plain) != timings.rounds or len(timings.lightning) != timings.rounds:
        raise RuntimeError(f"benchmark ended early: {len(timings.lightning)} / {len(timings.plain)} blocks timed")
    if timings.threads_seen != {threads}:
        raise RuntimeError(f"torch threads changed under Lightning: {sorted(timings.threads_seen)} != {threads}")
    module = timings.module
    compiled = networks_to_compile(module.generator, module.discriminator, module.objective) if bench.compile else []
    info = {
        "device": timings.device,  # read at train start: the teardown may have moved the module to the CPU
        "threads": threads,
        "data": data,
        "d_steps": module.d_steps,
        "preset": bench.preset,
        "model": cfg.model,
        "batch_size": cfg.batch_size,
        "accumulate": cfg.accumulate,
        "images_per_iteration": cfg.batch_size * module.d_steps,
        "iters": timings.iters,  # as timed: a time budget may have cut the planned ones
        "rounds": timings.rounds,
        "planned_iters_rounds": [bench.iters, bench.rounds],
        "compiled": [
            name
            for name, net in (("generator", module.generator), ("discriminator", module.discriminator))
            if net in compiled
        ],
        "latent_dim": cfg.latent_dim,
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "noise": cfg.noise,
        "lr": cfg.lr,
        "sample_every": cfg.sample_every,
        "log_every": cfg.log_every,
        "checkpoint_every": cfg.checkpoint_every,
    }
    report = summarize(bench, timings, info)
    if timings.adam_sweep:
        report["adam_sweep_plain_ms"] = timings.adam_sweep
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as the text the command prints before its last line."""
    c, a, b = report["config"], report["lightning"], report["plain"]
    diff = report["first_iteration_check"].get("max_abs_diff")
    variant = "conditional " if c["conditional"] else "infogan " if c["infogan"] else ""
    speed = " ".join(f for f in ("channels_last", "compile", "data_on_device") if c[f]) or "eager"
    header = ("loop", "median ms/it", "mean ms/it", "p90 ms/it", "block-mean ms/it", "images/s")
    lines = [
        f"model={c['model']} {variant}{c['image_size']}px x{c['channels']} loss={c['loss']} d_steps={c['d_steps']} "
        f"batch={c['batch_size']} images/iteration={c['images_per_iteration']} precision={c['precision']} "
        f"adam={c['adam']} {speed} device={c['device']} threads={c['threads']}",
        f"data: {c['data']}; {c['rounds']} rounds x {c['iters']} iterations per loop after {c['warmup']} warm-up",
        "weights after one iteration, lightning vs plain: "
        + (f"max |diff| = {diff:.2e}" if diff is not None else "not compared"),
        "",
        "{:<10} {:>13} {:>11} {:>10} {:>17} {:>9}".format(*header),
    ]
    for name, s in (("lightning", a), ("plain", b)):
        lines.append(
            f"{name:<10} {s['median_ms']:>13.3f} {s['mean_ms']:>11.3f} {s['p90_ms']:>10.3f} "
            f"{s['median_block_mean_ms']:>17.3f} {s['images_per_s']:>9.0f}"
        )
    lines += [
        "",
        f"images/s: lightning {a['images_per_s']:.0f}, plain {b['images_per_s']:.0f} "
        f"(lightning/plain {a['images_per_s'] / b['images_per_s']:.3f})",
        f"lightning - plain: {report['overhead_ms']:+.3f} ms/iteration (median over rounds of adjacent blocks' "
        f"difference; of the block-mean medians: {a['median_block_mean_ms'] - b['median_block_mean_ms']:+.3f})",
        "round ratios (block means): " + " ".join(f"{r:.3f}" for r in report["round_ratios"]),
        f"ratio of per-iteration medians: {report['median_iteration_ratio']:.3f}",
    ]
    if "adam_sweep_plain_ms" in report:
        sweep = report["adam_sweep_plain_ms"]
        lines.append("plain loop with each Adam: " + ", ".join(f"{k} {v:.3f} ms/it" for k, v in sweep.items()))
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- main
def build_parser() -> Parser:
    """The benchmark command's argument parser."""
    p = Parser(
        prog="benchmark.py",
        description="Time scripts/train.py's Lightning training against a plain PyTorch loop doing the same work, "
        "interleaved in one process. The last line printed is overhead_ratio=<lightning/plain>.",
    )
    p.add_argument("--preset", help="a train.py preset (its dataset, model, loss, batch, recipe); the explicit flags "
                   "below override it; MNIST and CIFAR-10 presets run on generated data in their layout")  # fmt: skip
    p.add_argument("--model", choices=MODELS.names(), help="architecture (default mlp, or the preset's)")
    p.add_argument("--batch-size", type=int, help="images per D step (default 128, or the preset's)")
    p.add_argument("--loss", choices=OBJECTIVES.names(), help="adversarial loss (default bce, or the preset's)")
    p.add_argument("--d-steps", type=int, help="D updates per iteration (default: the loss's)")
    p.add_argument("--accumulate", type=int, help="micro-batches per update, as train.py's --accumulate (less "
                   "memory; default: the CLI's, 1)")  # fmt: skip
    variant = p.add_mutually_exclusive_group()
    variant.add_argument("--conditional", action="store_true", help="class-conditional GAN (D's projection head)")
    variant.add_argument("--infogan", action="store_true", help="InfoGAN (D's Q head)")
    p.add_argument("--image-size", type=int, help="image side (default: the CLI's, 28; 32 or 64 for dcgan)")
    p.add_argument("--ngf", type=int, help="dcgan generator width (default: the CLI's, 64)")
    p.add_argument("--ndf", type=int, help="dcgan discriminator width (default: the CLI's, 64)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format in both loops")
    p.add_argument("--compile", action="store_true", help="torch.compile in both loops what the module compiles")
    p.add_argument("--data-on-device", action="store_true", help="MNIST held on the accelerator (no DataLoader)")
    p.add_argument("--iters", type=int, default=20, help="iterations per timed block (default 20)")
    p.add_argument("--rounds", type=int, default=15, help="timed blocks per loop (default 15)")
    p.add_argument("--warmup", type=int, default=20, help="untimed iterations per loop first (default 20)")
    p.add_argument("--budget-s", type=float, help="seconds for the whole run: after the warm-up, fewer iterations "
                   "per block (then fewer blocks) when the planned ones would not fit (default: no limit)")  # fmt: skip
    p.add_argument("--accelerator", default="auto", help="cpu, cuda (gpu) or auto (default auto)")
    p.add_argument("--device", type=int, help="device index (default: the first)")
    p.add_argument("--precision", default="32-true", choices=PRECISIONS, help="default 32-true")
    p.add_argument(
        "--data-dir",
        help="MNIST root (DIR/MNIST/raw); default: the CLI's data dir when it holds MNIST, else synthetic data",
    )
    p.add_argument("--synthetic", action="store_true", help="random images in MNIST's shape even if MNIST is there")
    p.add_argument("--threads", type=int, help="torch.set_num_threads for both loops (default: torch's)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--adam",
        default="module",
        choices=ADAM_CHOICES,
        help="Adam implementation for both loops (default module: the module's own optimizers, fused Adam; "
        "default: torch's pick)",
    )
    p.add_argument(
        "--adam-sweep",
        action="store_true",
        help="also time the plain loop with each Adam implementation (default/foreach/fused)",
    )
    p.add_argument("--json", help="write the numbers to this JSON file")
    return p


def run(cfg: argparse.Namespace) -> int:
    """Benchmark, print the report and, last, `overhead_ratio=<x.xxx>`; 0 on success."""
    if cfg.preset is None:  # without a preset, the benchmark's own defaults
        cfg.model, cfg.batch_size, cfg.loss = cfg.model or "mlp", cfg.batch_size or 128, cfg.loss or "bce"
    bench = BenchConfig(**vars(cfg))
    report = run_benchmark(bench)
    if bench.json:
        Path(bench.json).write_text(json.dumps(report, indent=1))
    print(format_report(report))
    ratio = report["overhead_ratio"]
    if not math.isfinite(ratio) or ratio <= 0:
        raise CommandStopped(f"error: bad ratio {ratio}", status=1)
    print(f"overhead_ratio={ratio:.3f}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/benchmark.py`: 0 on success, 2 bad input or data."""
    return run_command(build_parser, run, argv)
