"""Shared fixtures: tiny fake MNIST files, the real MNIST when present, CPU-only trainers."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_MNIST_ROOT = Path(os.environ.get("GAN_TEST_MNIST", REPO.parent / "shared" / "data"))


def run_all(argvs: Sequence[Sequence[str]], timeout: float = 600, envs: Sequence[dict | None] | None = None,
            **kwargs) -> list[subprocess.CompletedProcess]:  # fmt: skip
    """Run independent commands at once (each mostly waits on its own single-threaded imports), in order of `argvs`;
    `timeout` is each command's, running beside the others; `envs`, if given, is each command's environment."""
    envs = envs if envs is not None else [kwargs.pop("env", None)] * len(argvs)
    with ThreadPoolExecutor(max_workers=max(1, len(argvs))) as pool:
        runs = [
            pool.submit(subprocess.run, list(argv), capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
            for argv, env in zip(argvs, envs, strict=True)
        ]
        return [run.result() for run in runs]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 array in the IDX format MNIST ships in."""
    magic = 0x0800 | array.ndim
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def make_fake_mnist(root: Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """A tiny MNIST-layout dataset under root/MNIST/raw: class c is a bright horizontal bar at row 2c+4."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 6, 4:24] = 255
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """A (3, 32, 32) uint8 image whose class shows: a bright bar at row 3 * label in the red plane only."""
    image = rng.integers(0, 40, (3, 32, 32)).astype(np.uint8)
    image[0, 3 * label : 3 * label + 2, 4:28] = 255
    return image


def make_fake_cifar10(root: Path, per_batch: int = 6, n_test: int = 10, seed: int = 0,
                      names: list[str] = CIFAR_NAMES) -> Path:  # fmt: skip
    """A tiny CIFAR-10 in torchvision's layout (`write_cifar10_like`) whose classes show (`cifar_image`)."""
    from gan_lightning.bench.data import write_cifar10_like

    return write_cifar10_like(root, per_batch, n_test, seed, names, cifar_image)


@pytest.fixture(scope="session")
def fake_cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a 30 + 10 image fake CIFAR-10 (root/cifar-10-batches-py/...)."""
    return make_fake_cifar10(tmp_path_factory.mktemp("fake_cifar10"))


@pytest.fixture(scope="session")
def fake_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a 600-image fake MNIST (root/MNIST/raw/*-ubyte)."""
    return make_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """Root of the real MNIST; skips the test when it is not on this machine."""
    if not (REAL_MNIST_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {REAL_MNIST_ROOT}/MNIST/raw (set GAN_TEST_MNIST)")
    return REAL_MNIST_ROOT


@pytest.fixture(scope="session")
def fake_classifier(fake_mnist_dir, tmp_path_factory) -> dict:
    """A classifier trained for one epoch on the fake bars (trivially separable), saved to disk."""
    from gan_lightning.metrics.classifier import train_classifier

    path = tmp_path_factory.mktemp("classifier") / "mnist_classifier.pt"
    return train_classifier(fake_mnist_dir, path, epochs=1, batch_size=32, seed=0)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Classifiers the commands train on demand go to a per-session folder, never the user's ~/.cache."""
    monkeypatch.setenv("GAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gan_cache"))


def cpu_trainer(tmp_path: Path, **kwargs):
    """A quiet single-process CPU Trainer for tests."""
    import lightning.pytorch as pl

    defaults = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )  # fmt: skip
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


@pytest.fixture
def mounted(tmp_path):
    """`mounted(options)`: a fresh tmpfs mounted with `options` (e.g. "ro" or "size=3m"); skipped without root."""
    mounts = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mount{len(mounts)}"
        point.mkdir()
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()})")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=False)


@pytest.fixture
def read_only_dir(tmp_path, mounted) -> Path:
    """A directory this process cannot write into: mode 0o555, or for root (whom modes do not stop) a read-only
    tmpfs."""
    if os.geteuid() == 0:
        return mounted("ro,size=1m")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    return locked
