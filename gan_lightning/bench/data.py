"""Loader benchmark (`scripts/benchmark_data.py`): images per second of the training loader on a CelebA-layout
folder of photo-like JPEGs, decoded lazily versus prepared once (`gan-prepare`), against the in-memory limit.

In one run, for each worker count: (1) the lazy path, the folder DataModule's own training loader in its first
epoch (every image decoded, resized and cropped: what CelebA, far above the decode-cache budget, costs every
epoch); (2) the prepared path, the same DataModule with `--prepared`; (3) the in-memory limit, the same number of
images gathered by random index from one uint8 tensor in memory and converted to [-1, 1] in a plain loop. Each is
timed from its first batch (worker start-up excluded) over `--batches` batches (the prepared and in-memory paths
over a whole epoch). The last line is one JSON object with every number.

    python scripts/benchmark_data.py --data-dir /tmp/celeba_bench --num-images 20000 --workers 0 2
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan_lightning.commands.base import Parser, run_command
from gan_lightning.core.errors import ConfigError
from gan_lightning.data.celeba import CelebADataModule
from gan_lightning.data.images import list_image_files, uint8_to_signed
from gan_lightning.data.prepared import PreparedImages, default_prepared_dir, prepare_images

WIDTH, HEIGHT = 178, 218  # CelebA's aligned-and-cropped images


def photo_like(rng: np.random.Generator) -> np.ndarray:
    """A (218, 178, 3) uint8 image with smooth gradients, soft blobs and sensor-like noise: JPEG-compressed and
    decoded at about a real photo's cost (pure noise or flat colour would be far slower or faster to decode)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    gx, gy = rng.uniform(-0.5, 0.5, 3), rng.uniform(-0.5, 0.5, 3)
    image = rng.uniform(40, 200, 3) + gx * x[..., None] + gy * y[..., None]
    for _ in range(4):
        cy, cx, r = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), rng.uniform(15, 60)
        image += rng.uniform(-60, 60, 3) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_celeba_like(data_dir: str | Path, n: int, seed: int = 0, distinct: int | None = None) -> Path:
    """`n` photo-like JPEGs as DATA_DIR/celeba/img_align_celeba/000001.jpg ...; files already there are kept.
    With `distinct`, only that many are generated and the others are hard links to them (copies where the file
    system has none): generating is the slow part, and a loader's speed does not depend on which images it reads."""
    image_dir = Path(data_dir) / "celeba" / "img_align_celeba"
    image_dir.mkdir(parents=True, exist_ok=True)
    unique = n if distinct is None else max(1, min(n, distinct))
    for i in range(1, n + 1):
        path = image_dir / f"{i:06d}.jpg"
        if path.is_file():
            continue
        if i <= unique:
            Image.fromarray(photo_like(np.random.default_rng([seed, i]))).save(path, quality=90)
            continue
        source = image_dir / f"{(i - 1) % unique + 1:06d}.jpg"
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)
    return image_dir


CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def random_cifar_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """A (3, 32, 32) uint8 image of uniform noise (the label plays no part)."""
    return rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)


ImageMaker = Callable[[int, np.random.Generator], np.ndarray]


def write_cifar10_like(
    root: str | Path,
    per_batch: int = 2000,
    n_test: int = 1000,
    seed: int = 0,
    names: Sequence[str] = CIFAR10_NAMES,
    image: ImageMaker = random_cifar_image,
) -> Path:
    """CIFAR-10 in torchvision's layout, root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}:
    protocol-2 pickled dicts with the published keys ('data' uint8 (N, 3072) rows of R, G, B planes, 'labels',
    'filenames', 'batch_label'; the meta's 'label_names'), labels cycling through the classes from a per-file
    offset, each image `image(label, rng)` (3, 32, 32) uint8. Returns `root`."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    files = [(f"data_batch_{i}", per_batch, f"training batch {i} of 5") for i in range(1, 6)]
    for index, (name, n, batch_label) in enumerate([*files, ("test_batch", n_test, "testing batch 1 of 1")]):
        labels = [(index + i) % len(names) for i in range(n)]
        data = np.stack([image(c, rng).reshape(-1) for c in labels]) if n else np.zeros((0, 3072), np.uint8)
        entry = {"batch_label": batch_label, "labels": labels, "data": data,
                 "filenames": [f"{name}_{i:05d}.png" for i in range(n)]}  # fmt: skip
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)  # the published files are protocol-2 pickles from Python 2
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": list(names), "num_vis": 3072}, f, protocol=2)
    return Path(root)


def images_per_second(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], limit: int) -> float:
    """Images per second over at most `limit` batches after the first (which pays for any start-up)."""
    it = iter(batches)
    next(it)
    count, began = 0, time.perf_counter()
    for i, (images, _labels) in enumerate(it):
        count += len(images)
        if i + 1 >= limit:
            break
    return count / (time.perf_counter() - began)


def in_memory(images: torch.Tensor, batch_size: int, seed: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The limit: batches gathered by random index from one uint8 tensor and converted, nothing else."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    for b in range(len(images) // batch_size):
        idx = order[b * batch_size : (b + 1) * batch_size]
        yield uint8_to_signed(images[idx]), idx


def build_parser() -> Parser:
    """The loader benchmark's argument parser."""
    p = Parser(prog="benchmark_data.py", description="Training-loader images/s: lazy decoding vs a prepared dataset "
               "vs the in-memory limit, on a generated CelebA-layout folder of photo-like JPEGs.")  # fmt: skip
    p.add_argument(
        "--data-dir",
        default=None,
        help="CelebA-layout root (DIR/celeba/img_align_celeba); missing "
        "images are generated there and kept for the next run (default: a new temporary folder)",
    )
    p.add_argument("--num-images", type=int, default=20_000, help="images in the folder (default 20000)")
    p.add_argument("--image-size", type=int, default=64, help="training resolution (default 64)")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch (default 128)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try (default 0 2)")
    p.add_argument("--batches", type=int, default=40, help="batches timed on the lazy path (default 40); the others "
                   "are timed over a whole epoch")  # fmt: skip
    return p


def run(cfg: argparse.Namespace) -> None:
    """Generate and prepare the folder if needed, then time the three paths at each worker count."""
    for flag in ("num_images", "image_size", "batch_size", "batches"):
        if getattr(cfg, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(cfg, flag)}")
    if any(w < 0 for w in cfg.workers):
        raise ConfigError(f"--workers must be >= 0, got {cfg.workers}")
    if cfg.data_dir is None:
        import tempfile

        cfg.data_dir = tempfile.mkdtemp(prefix="gan_loader_bench_")
    began = time.perf_counter()
    image_dir = write_celeba_like(cfg.data_dir, cfg.num_images)
    files = list_image_files(image_dir)[: cfg.num_images]
    if len(files) < cfg.num_images:
        raise ConfigError(f"{image_dir} holds {len(files)} images, fewer than --num-images {cfg.num_images}")
    generated = time.perf_counter() - began
    out = default_prepared_dir(image_dir, cfg.image_size, 3)
    began = time.perf_counter()
    how = prepare_images(image_dir, list_image_files(image_dir), out, image_size=cfg.image_size, channels=3,
                         num_workers=max(cfg.workers))  # fmt: skip
    print(f"folder {image_dir}: {len(files)} JPEGs ({generated:.0f} s to list/generate); prepared dataset {out}: "
          f"{how} in {time.perf_counter() - began:.0f} s")  # fmt: skip
    memory = torch.from_numpy(np.array(PreparedImages.open(out).images()))  # read into RAM: the limit's source
    results: dict[str, dict[str, float]] = {}
    for workers in cfg.workers:
        kwargs = {"batch_size": cfg.batch_size, "num_workers": workers, "image_size": cfg.image_size,
                  "pin_memory": False}  # fmt: skip
        lazy = CelebADataModule(cfg.data_dir, **kwargs)
        fast = CelebADataModule(cfg.data_dir, prepared=str(out), **kwargs)
        epoch = len(memory) // cfg.batch_size
        row = {
            "lazy": images_per_second(lazy.train_dataloader(), cfg.batches),
            "prepared": images_per_second(fast.train_dataloader(), epoch),
            "in_memory": images_per_second(in_memory(memory, cfg.batch_size), epoch),
        }
        row["prepared_vs_lazy"] = row["prepared"] / row["lazy"]
        row["in_memory_vs_prepared"] = row["in_memory"] / row["prepared"]
        results[f"workers={workers}"] = row
        print(f"workers={workers}: lazy {row['lazy']:,.0f} images/s, prepared {row['prepared']:,.0f} images/s "
              f"({row['prepared_vs_lazy']:.1f}x lazy), in-memory limit {row['in_memory']:,.0f} images/s "
              f"({row['in_memory_vs_prepared']:.2f}x prepared)", flush=True)  # fmt: skip
    print(json.dumps({"num_images": len(files), "image_size": cfg.image_size, "batch_size": cfg.batch_size,
                      "results": results}))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/benchmark_data.py`."""
    return run_command(build_parser, run, argv)
