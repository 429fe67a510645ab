"""A small MNIST CNN whose features and class probabilities score generated digits (FID, KID, modes).

Trained and saved by the train_classifier command (`gan_lightning.commands.train_classifier`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.core.errors import DataError, first_line
from gan_lightning.core.files import atomic_write, load_weights_file, save_torch

ARCH = "mnist_cnn"
CACHE_ENV = "GAN_CACHE_DIR"
INPUT_SIZE = 28
TRAIN_HINT = "train one with: python scripts/train_classifier.py --data-dir DIR --out PATH"


class MNISTClassifier(nn.Module):
    """Two conv-BN-pool blocks and a 128-unit hidden layer: ~99% on MNIST after two CPU epochs.

    Inputs are (B, 1, H, W) in [-1, 1], the range of the data and of the generators; other sizes than 28x28
    (the 32x32 DCGAN samples) are resized bilinearly, so one classifier scores every MNIST model.
    """

    def __init__(self, num_features: int = 128, num_classes: int = 10, dropout: float = 0.25) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, num_features),
            nn.ReLU(inplace=True),
        )
        # Dropout sits after the features, so the features FID sees are the same in train and eval mode.
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, num_features) of images (B, 1, H, W) in [-1, 1]."""
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.body(x)  # (B, 1, 28, 28) -> (B, 64, 7, 7) -> (B, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of images (B, 1, H, W) in [-1, 1]."""
        return self.head(self.features(x))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` on uint8 images (N, 1, H, W), in eval mode."""
    from gan_lightning.data.base import to_signed

    was_training = model.training
    model.eval()
    try:
        correct = sum(
            int((model(to_signed(x)).argmax(1) == y).sum())
            for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True)
        )
    finally:
        model.train(was_training)
    return correct / max(1, len(labels))


def train_classifier(
    data_dir: str | Path,
    out_path: str | Path | None,
    epochs: int = 2,
    batch_size: int = 128,
    seed: int = 0,
    lr: float = 3e-3,
    progress: bool = False,
) -> dict[str, Any]:
    """Train an `MNISTClassifier` on MNISTDataModule's train split, save it to `out_path`, report val accuracy.

    A plain loop over the in-memory uint8 tensors: a Trainer would add nothing here but start-up time.
    `out_path=None` trains without saving; `progress` shows a bar on stderr. Returns `val_accuracy`, `epochs`,
    `seconds`, `path`, and `model`.
    """
    from gan_lightning.core.errors import ConfigError
    from gan_lightning.data import MNISTDataModule
    from gan_lightning.data.base import to_signed

    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    dm = MNISTDataModule(str(data_dir), batch_size=batch_size, download=False, image_size=INPUT_SIZE)
    dm.setup("fit")
    train, val = dm.train_set, dm.val_set
    torch.manual_seed(seed)
    model = MNISTClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(train) // batch_size)
    # One-cycle warm-up and decay: two epochs reach ~99% where a constant rate stalls near 98.5%.
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    rng = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    bar = _progress_bar(epochs * steps_per_epoch, "training the MNIST classifier") if progress else None
    for _ in range(epochs):
        for idx in torch.randperm(len(train), generator=rng).split(batch_size):
            loss = F.cross_entropy(model(to_signed(train.images[idx])), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    val_accuracy = accuracy(model, val.images, val.labels)
    meta = {
        "arch": ARCH,
        "val_accuracy": val_accuracy,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "lr": lr,
        "num_features": model.num_features,
        "num_classes": model.num_classes,
        "num_train": len(train),
        "num_val": len(val),
    }
    if out_path is not None:
        # Tensors and plain values only, so `torch.load(weights_only=True)` can read it back. Written whole or not
        # at all: a later run (or the cache) must not trust a truncated file
        checkpoint = {"state_dict": model.state_dict(), "meta": meta}
        out_path = atomic_write(out_path, lambda path: save_torch(checkpoint, path), "the classifier", shared=True)
    return {"val_accuracy": val_accuracy, "epochs": epochs, "seconds": seconds, "path": out_path, "model": model}


def load_classifier(path: str | Path) -> MNISTClassifier:
    """Load a classifier saved by `train_classifier`: eval mode, frozen, on the CPU."""
    # where nothing is yet, the hint may name the path; an existing other file must not be overwritten on its word
    hint = TRAIN_HINT if Path(path).exists() else TRAIN_HINT.replace("PATH", str(path))
    checkpoint = load_weights_file(path, "MNIST classifier", hint)
    try:
        meta = checkpoint["meta"]
        if meta.get("arch") != ARCH:
            raise DataError(f"{path} holds a {meta.get('arch')!r} model, not {ARCH!r}; {hint}")
        model = MNISTClassifier(num_features=meta["num_features"], num_classes=meta["num_classes"])
        model.load_state_dict(checkpoint["state_dict"])
    except DataError:
        raise
    except Exception as err:  # missing keys and shape mismatches all mean the same thing to the user
        raise DataError(
            f"cannot load an MNIST classifier from {path} ({type(err).__name__}: {first_line(err)}); {hint}"
        ) from err
    model.eval().requires_grad_(False)
    return model


class PlainProgress:
    """Progress for a log file: a plain line (no carriage returns) at every `share` of the steps and at the end."""

    def __init__(self, total: int, desc: str, share: float = 0.05) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self.every, self.began = max(1, round(total * share)), time.monotonic()

    def update(self, n: int = 1) -> None:
        """Count `n` more steps; print a line when a share is complete."""
        self.n += n
        if self.n % self.every == 0 or self.n == self.total:
            rate = self.n / max(time.monotonic() - self.began, 1e-9)
            print(f"{self.desc}: {self.n}/{self.total} steps ({self.n / self.total:.0%}), {rate:.1f} steps/s",
                  file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        """Nothing to clear: every line is complete."""


def _progress_bar(total: int, desc: str) -> Any:
    """A tqdm bar on a terminal; on a log file, a plain line about every 5% instead of carriage-return frames."""
    from tqdm import tqdm

    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)
    return PlainProgress(total, desc)


def default_cache_dir() -> Path:
    """Where trained classifiers are cached: `$GAN_CACHE_DIR`, else `$XDG_CACHE_HOME/gan_lightning`, else
    `~/.cache/gan_lightning`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gan_lightning"


def mnist_fingerprint(data_dir: str | Path) -> str:
    """A short SHA-256 of the four MNIST IDX files: a classifier is reused only for exactly the same data."""
    from gan_lightning.data.mnist import MNIST_FILES

    raw = Path(data_dir) / "MNIST" / "raw"
    digest = hashlib.sha256()
    for name in MNIST_FILES:
        path = raw / name
        if not path.is_file():
            raise DataError(f"MNIST not found: no {path}; pass --data-dir DIR where DIR/MNIST/raw holds the IDX files")
        digest.update(name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def cached_classifier(
    data_dir: str | Path, cache_dir: str | Path | None = None, epochs: int = 2, progress: bool = True
) -> Path:
    """The path of a classifier trained on the MNIST under `data_dir`: from the cache when there, else trained
    once (a few CPU minutes, with a progress bar) and cached as `CACHE_DIR/mnist_classifier-<data hash>.pt`."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"mnist_classifier-{mnist_fingerprint(data_dir)}.pt"
    notice = f"no cached MNIST classifier for this data: training one into {path} (once)"
    if path.is_file():
        try:
            load_classifier(path)
            return path
        except DataError as err:  # a cache entry is derived data: a damaged one is trained again
            problem = first_line(err).split("; ")[0].replace(str(path), "it")
            notice = f"the cached MNIST classifier {path} is damaged ({problem}); training it again"
    if cache_dir.exists() and not cache_dir.is_dir():
        raise DataError(f"the classifier cache {cache_dir} is a file, not a directory; remove it or set {CACHE_ENV}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the classifier cache {cache_dir} ({err.strerror}); set {CACHE_ENV}") from None
    print(notice, file=sys.stderr)
    result = train_classifier(data_dir, path, epochs=epochs, progress=progress)
    print(f"classifier val accuracy {result['val_accuracy']:.4f}", file=sys.stderr)
    return path
