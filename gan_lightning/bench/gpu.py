"""The GPU measurement (`scripts/gpu_measure.py`): one command, one JSON file, within a time budget.

What it measures, in this order, each on the same card:
1. training speed, the Trainer (`scripts/train.py`'s run) against the plain loop over the same phases
   (`bench/trainer.py`), for `dcgan` at 64 px and every CIFAR-10 preset (bf16, each preset's own batch; dcgan's
   128), with the loader, then with `--data-on-device`, then that plus `--channels-last`, then plus `--compile`;
   every configuration's first variant runs before any configuration's second, so a tight budget still covers
   every model;
2. the FID Inception's images/s (torch-fidelity's network with random weights in the published file's layout,
   unless `--fid-weights` names the real file: the speed is the same);
3. the prepared loader's images/s into GPU memory (a generated CelebA-layout folder prepared once, its training
   loader's batches copied to the device and synchronised).
A measurement that would start after `--budget-s` is recorded as skipped. Synthetic data stands in for every
dataset (the card's machine has no downloads); the numbers are speeds, not sample quality.

    python scripts/gpu_measure.py --out gpu.json             # starts no measurement after --budget-s
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from gan_lightning.bench.timing import BenchConfig
from gan_lightning.commands.base import Parser, run_command
from gan_lightning.commands.train.presets import PRESETS
from gan_lightning.core.errors import ConfigError

VARIANTS: dict[str, dict[str, bool]] = {
    "loader": {},
    "data_on_device": {"data_on_device": True},
    "data_on_device+channels_last": {"data_on_device": True, "channels_last": True},
    "data_on_device+channels_last+compile": {"data_on_device": True, "channels_last": True, "compile": True},
}


def configurations() -> dict[str, dict[str, Any]]:
    """`dcgan` at 64 px (batch 128) and every CIFAR-10 preset at its own batch, by name."""
    configs: dict[str, dict[str, Any]] = {"dcgan_64": {"model": "dcgan", "image_size": 64, "batch_size": 128}}
    for name, values in PRESETS.items():
        if values.get("dataset") == "cifar10":
            configs[name] = {"preset": name, "model": None, "batch_size": None, "loss": None}
    return configs


def training_speed(config: dict[str, Any], variant: dict[str, bool], cfg: argparse.Namespace) -> dict[str, Any]:
    """Trainer and plain-loop iterations/s and images/s of one configuration and variant."""
    from gan_lightning.bench.trainer import run_benchmark

    bench = BenchConfig(**config, **variant, precision=cfg.precision, accelerator=cfg.accelerator,
                        iters=cfg.iters, rounds=cfg.rounds, warmup=cfg.warmup, synthetic=True)  # fmt: skip
    report = run_benchmark(bench)
    row: dict[str, Any] = {"batch_size": report["config"]["batch_size"], "d_steps": report["config"]["d_steps"]}
    for loop in ("lightning", "plain"):
        seconds = report[loop]["median_block_mean_ms"] / 1e3
        row[loop] = {"iterations_per_s": round(1 / seconds, 3), "images_per_s": round(report[loop]["images_per_s"], 1)}
    row["overhead_ratio"] = round(report["overhead_ratio"], 4)
    return row


def fid_speed(cfg: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """The FID Inception's images/s on 32 px images, batch 256 (real weights when given, else random ones)."""
    from gan_lightning.bench.fid import seconds, write_random_fid_weights
    from gan_lightning.metrics.extractors import load_fid_inception

    path = cfg.fid_weights or write_random_fid_weights(Path(tmp) / "random_fid_inception.pth")
    extractor = load_fid_inception(path, checked=cfg.fid_weights is not None, torchvision_ok=False).to(cfg.device)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(cfg.fid_batch_size, 3, 32, 32, generator=g).mul(2).sub(1).to(cfg.device)
    with torch.inference_mode():
        extractor.extract(images)  # warm-up
        best = min(seconds(lambda: extractor.extract(images)[0], images.device) for _ in range(cfg.rounds))
    return {"batch_size": cfg.fid_batch_size, "images_per_s": round(cfg.fid_batch_size / best, 1),
            "weights": "published" if cfg.fid_weights else "random, published layout"}  # fmt: skip


def loader_speed(cfg: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """The prepared loader's images/s into device memory: a generated 64 px CelebA-layout folder, prepared once."""
    from gan_lightning.bench.data import write_celeba_like
    from gan_lightning.data.celeba import CelebADataModule
    from gan_lightning.data.images import list_image_files
    from gan_lightning.data.prepared import default_prepared_dir, prepare_images

    image_dir = write_celeba_like(tmp, cfg.loader_images)
    out = default_prepared_dir(image_dir, 64, 3)
    prepare_images(image_dir, list_image_files(image_dir), out, image_size=64, channels=3, num_workers=cfg.workers)
    data = CelebADataModule(tmp, prepared=str(out), batch_size=128, num_workers=cfg.workers, image_size=64,
                            pin_memory=torch.device(cfg.device).type == "cuda")  # fmt: skip
    device = torch.device(cfg.device)
    count, began = 0, None
    for images, _ in data.train_dataloader():
        images = images.to(device, non_blocking=True)
        if began is None:  # the first batch pays for worker start-up
            began = time.perf_counter()
            continue
        count += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"images": cfg.loader_images, "batch_size": 128, "workers": cfg.workers,
            "images_per_s": round(count / (time.perf_counter() - began), 1)}  # fmt: skip


def timed(name: str, measure: Callable[[], dict[str, Any]], result: dict[str, Any], deadline: float) -> None:
    """Run `measure` into `result[name]` unless the budget is spent; a failure is recorded, not raised."""
    if time.monotonic() > deadline:
        result[name] = {"skipped": "time budget spent"}
        return
    began = time.monotonic()
    try:
        result[name] = measure()
    except Exception as err:  # noqa: BLE001 - one failed measurement must not lose the others' numbers
        result[name] = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
    result[name]["wall_s"] = round(time.monotonic() - began, 1)
    print(f"{name}: {json.dumps(result[name])}", flush=True)


def build_parser() -> Parser:
    """The measurement's flags."""
    p = Parser(prog="gpu_measure.py", description="The GPU measurement: training speed of dcgan 64 px and every "
               "CIFAR-10 preset (Trainer and plain loop, four data/memory/compile variants), the FID Inception's and "
               "the prepared loader's images/s; one JSON file")  # fmt: skip
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--budget-s", type=float, default=420, help="start no measurement after this many seconds "
                   "(default 420: the whole run stays under 8 minutes)")  # fmt: skip
    p.add_argument("--accelerator", default="cuda", help="cuda (default) or cpu (a smoke test)")
    p.add_argument("--precision", default="bf16-mixed", choices=("bf16-mixed", "32-true"), help="default bf16-mixed")
    p.add_argument("--configs", nargs="+", help="only these configurations (default: dcgan_64 and every CIFAR-10 "
                   "preset)")  # fmt: skip
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="only these variants (default: all)")
    p.add_argument("--iters", type=int, default=10, help="iterations per timed block (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="timed blocks per loop (default 5)")
    p.add_argument("--warmup", type=int, default=10, help="untimed iterations per loop first (default 10)")
    p.add_argument("--fid-weights", help="the published FID Inception weights (default: random weights, same speed)")
    p.add_argument("--fid-batch-size", type=int, default=256, help="default 256")
    p.add_argument("--loader-images", type=int, default=5000, help="images in the prepared loader's folder "
                   "(default 5000)")  # fmt: skip
    p.add_argument("--workers", type=int, default=4, help="loader workers (default 4)")
    p.add_argument("--skip", nargs="+", default=[], choices=("training", "fid", "loader"), help="parts to leave out")
    return p


def run(cfg: argparse.Namespace) -> int:
    """Measure, writing the JSON after each measurement (a killed run keeps what it had)."""
    configs = configurations()
    for name in cfg.configs or []:
        if name not in configs:
            raise ConfigError(f"--configs {name}: choose from {', '.join(configs)}")
    for flag in ("iters", "rounds", "warmup", "fid_batch_size", "loader_images"):
        if getattr(cfg, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(cfg, flag)}")
    if cfg.accelerator == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--accelerator cuda: no CUDA device here; run it where one is, or pass --accelerator cpu")
    cfg.device = "cuda" if cfg.accelerator == "cuda" else "cpu"
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    card = torch.cuda.get_device_name() if cfg.device == "cuda" else platform.processor() or "cpu"
    result: dict[str, Any] = {"device": card, "torch": torch.__version__, "precision": cfg.precision,
                              "budget_s": cfg.budget_s, "training": {}}  # fmt: skip
    began = time.monotonic()
    deadline = began + cfg.budget_s
    chosen = {k: v for k, v in configs.items() if not cfg.configs or k in cfg.configs}
    variants = {k: v for k, v in VARIANTS.items() if not cfg.variants or k in cfg.variants}
    with tempfile.TemporaryDirectory(prefix="gan_gpu_measure_") as tmp:
        if "training" not in cfg.skip:
            for variant_name, variant in variants.items():  # breadth first: every model gets its first variant
                for config_name, config in chosen.items():
                    rows = result["training"].setdefault(config_name, {})
                    timed(variant_name, lambda c=config, v=variant: training_speed(c, v, cfg), rows, deadline)
                    out.write_text(json.dumps(result, indent=1))
        if "fid" not in cfg.skip:
            timed("fid_inception", lambda: fid_speed(cfg, tmp), result, deadline)
        if "loader" not in cfg.skip:
            timed("prepared_loader", lambda: loader_speed(cfg, tmp), result, deadline)
    result["wall_s"] = round(time.monotonic() - began, 1)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/gpu_measure.py`: 0 on success, 2 on bad input."""
    return run_command(build_parser, run, argv)
