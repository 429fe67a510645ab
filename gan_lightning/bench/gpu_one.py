"""One measurement of the GPU measurement (`bench/gpu.py`) in a process of its own:
`python -m gan_lightning.bench.gpu_one SPEC RESULT` runs the measurement that the JSON text SPEC describes and
writes its row to the JSON file RESULT.

A process per measurement, because the parent must be able to end one at a deadline: a training run catches
SIGTERM to save a checkpoint and go on, so only a kill of its process group stops it. It also isolates what a
measurement leaves behind: an out-of-memory error or a broken CUDA context, torch._dynamo's compiled graphs and
recompile counts (in one process, later configurations compiled with dynamic shapes), signal handlers. The process
dies with its parent (PR_SET_PDEATHSIG on Linux), so a parent killed outright leaves nothing holding the GPU.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gan_lightning.bench.timing import BenchConfig
from gan_lightning.commands.train.presets import PRESETS
from gan_lightning.core.errors import ConfigError

VARIANTS: dict[str, dict[str, bool]] = {
    "loader": {},
    "data_on_device": {"data_on_device": True},
    "data_on_device+channels_last": {"data_on_device": True, "channels_last": True},
    "data_on_device+channels_last+compile": {"data_on_device": True, "channels_last": True, "compile": True},
}
# Micro-batches per update where a preset's batch does not fit one card: r3gan_cifar10's 512 images with R1 and R2
# on every D step were estimated to hold about 120 GiB of activations; 8 micro-batches of 64 are what its reference
# run put on each of its 8 GPUs. images/s still counts the whole batch.
ACCUMULATE = {"r3gan_cifar10": 8}
LOADER_BATCH = 128
LOADER_DISTINCT = 256  # JPEGs generated for the loader's folder; the others are links to them
LOADER_PREFETCH = 4  # the training loader's prefetch_factor (data/loading.py), for the check of --loader-images
# What a training run needs after its timed blocks (the final checkpoint, teardown, this row): kept out of its budget
TEARDOWN_S, TEARDOWN_SHARE = 10.0, 0.15


def configurations() -> dict[str, dict[str, Any]]:
    """`dcgan` at 64 px (batch 128) and every CIFAR-10 preset at its own batch, by name."""
    configs: dict[str, dict[str, Any]] = {"dcgan_64": {"model": "dcgan", "image_size": 64, "batch_size": 128}}
    for name, values in PRESETS.items():
        if values.get("dataset") == "cifar10":
            configs[name] = {"preset": name, "model": None, "batch_size": None, "loss": None}
            if name in ACCUMULATE:
                configs[name]["accumulate"] = ACCUMULATE[name]
    return configs


def loader_skip(workers: int) -> int:
    """Batches the loader measurement leaves untimed: those in flight when the first arrives, and one per worker."""
    return workers * LOADER_PREFETCH + max(1, workers)


def write_json(path: str | Path, value: Any) -> None:
    """`value` as JSON at `path`, atomically (a temporary file in the same folder, then os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1)
        os.chmod(tmp, 0o644)  # mkstemp's file is private; the result is not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def one_line(err: BaseException) -> str:
    """An exception as one line of at most 300 characters."""
    return (f"{type(err).__name__}: {err}".splitlines() or [type(err).__name__])[0][:300]


def environment(device: str) -> dict[str, Any]:
    """The card, the versions and the numeric settings that the speeds depend on, as they are now."""
    import lightning

    cuda = device == "cuda"
    env: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "lightning": lightning.__version__,
        "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }  # fmt: skip
    return env


def training_speed(
    config: dict[str, Any], variant: dict[str, bool], opts: dict[str, Any], deadline: float
) -> dict[str, Any]:
    """Trainer and plain-loop iterations/s and images/s of one configuration and variant, within `deadline`."""
    from gan_lightning.bench.trainer import run_benchmark

    left = deadline - time.perf_counter()
    bench = BenchConfig(**config, **variant, precision=opts["precision"], accelerator=opts["accelerator"],
                        iters=opts["iters"], rounds=opts["rounds"], warmup=opts["warmup"], synthetic=True,
                        budget_s=max(1.0, left * (1 - TEARDOWN_SHARE) - TEARDOWN_S))  # fmt: skip
    report = run_benchmark(bench)
    c = report["config"]
    keys = ("model", "image_size", "channels", "batch_size", "accumulate", "d_steps", "images_per_iteration",
            "iters", "rounds", "warmup", "compiled", "device", "data")  # fmt: skip
    row: dict[str, Any] = {k: c[k] for k in keys}
    for loop in ("lightning", "plain"):
        seconds = report[loop]["median_block_mean_ms"] / 1e3
        row[loop] = {"iterations_per_s": round(1 / seconds, 3), "images_per_s": round(report[loop]["images_per_s"], 1)}
    row["overhead_ratio"] = round(report["overhead_ratio"], 4)
    # the plain loop's first iteration against the Trainer's, from the same weights and batch (0 in fp32 on CPU)
    row["first_iteration_max_abs_diff"] = report["first_iteration_check"].get("max_abs_diff")
    return row


def graph_breaks() -> dict[str, Any]:
    """torch._dynamo's graph breaks and graphs in this process: both loops' copies, every recompilation."""
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    top = sorted(breaks.items(), key=lambda kv: -kv[1])[:5]
    return {"graph_breaks": sum(breaks.values()), "graph_break_reasons": {k.splitlines()[0][:200]: v for k, v in top},
            "unique_graphs": counters["stats"].get("unique_graphs", 0)}  # fmt: skip


def fid_speed(opts: dict[str, Any]) -> dict[str, Any]:
    """The FID Inception's images/s on 32 px images (real weights when given, else random ones in their layout)."""
    from gan_lightning.bench.fid import seconds, write_random_fid_weights
    from gan_lightning.metrics.extractors import load_fid_inception

    weights = opts["fid_weights"]
    path = weights or write_random_fid_weights(Path(opts["tmp"]) / "random_fid_inception.pth")
    extractor = load_fid_inception(path, checked=weights is not None, torchvision_ok=False).to(opts["device"])
    n = opts["fid_batch_size"]
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(opts["device"])
    with torch.inference_mode():
        extractor.extract(images)  # warm-up
        if images.device.type == "cuda":  # its kernels end before the first timed round begins
            torch.cuda.synchronize(images.device)
        best = min(seconds(lambda: extractor.extract(images)[0], images.device) for _ in range(opts["rounds"]))
    return {"batch_size": n, "image_size": 32, "images_per_s": round(n / best, 1),
            "weights": "published" if weights else "random, published layout"}  # fmt: skip


def loader_speed(opts: dict[str, Any]) -> dict[str, Any]:
    """The prepared loader's images/s into device memory, timed in the steady state after its pipeline filled."""
    from gan_lightning.bench.data import write_celeba_like
    from gan_lightning.data.celeba import CelebADataModule
    from gan_lightning.data.images import list_image_files
    from gan_lightning.data.prepared import default_prepared_dir, prepare_images

    tmp, n, workers, device = opts["tmp"], opts["loader_images"], opts["workers"], torch.device(opts["device"])
    began = time.perf_counter()
    image_dir = write_celeba_like(tmp, n, distinct=LOADER_DISTINCT)
    out = default_prepared_dir(image_dir, 64, 3)
    prepare_images(image_dir, list_image_files(image_dir), out, image_size=64, channels=3, num_workers=workers)
    prepared_s = time.perf_counter() - began
    data = CelebADataModule(tmp, prepared=str(out), batch_size=LOADER_BATCH, num_workers=workers, image_size=64,
                            pin_memory=device.type == "cuda")  # fmt: skip
    loader = data.train_dataloader()
    workers = loader.num_workers  # a prepared dataset is read in the main process (memory-mapped), whatever was asked
    skip, batches = loader_skip(workers), len(loader)
    if batches < skip + 2:
        raise ConfigError(f"--loader-images {n}: {batches} batches, fewer than the {skip} untimed and 2 timed")
    count, start = 0, 0.0
    for i, (images, _) in enumerate(loader):
        images = images.to(device, non_blocking=True)
        if i == skip - 1:  # the pipeline's start-up is behind: the clock starts as this batch is on the device
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        elif i >= skip:
            count += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"images": n, "distinct_jpegs": min(n, LOADER_DISTINCT), "batch_size": LOADER_BATCH,
            "workers": workers, "prepare_workers": opts["workers"],
            "batches_untimed": skip, "batches_timed": batches - skip, "prepare_s": round(prepared_s, 1),
            "images_per_s": round(count / (time.perf_counter() - start), 1)}  # fmt: skip


def peak_memory() -> dict[str, float]:
    """The CUDA caching allocator's peaks since the last reset, in GiB."""
    # A training row's peak holds both loops' networks and optimizer states: one run alone holds one copy less.
    return {"max_memory_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "max_memory_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}  # fmt: skip


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """The row of the measurement `spec` describes; a failure is recorded in it, not raised."""
    opts, kind = spec["options"], spec["kind"]
    deadline = time.perf_counter() + spec["deadline"] - time.time()  # the parent's kill, on this clock
    cuda = opts["device"] == "cuda"
    row: dict[str, Any]
    try:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        if kind == "training":
            row = training_speed(spec["config"], spec["variant"], opts, deadline)
        elif kind == "fid":
            row = fid_speed(opts)
        else:
            row = loader_speed(opts)
    except Exception as err:  # noqa: BLE001 - the parent records it and goes on with the next measurement
        row = {"error": one_line(err)}
    extras = {
        "graph_breaks": lambda: graph_breaks() if spec.get("variant", {}).get("compile") else {},
        "memory": lambda: peak_memory() if cuda else {},
        "environment": lambda: {"environment": environment(opts["device"])},
    }
    for name, read in extras.items():
        try:  # after a broken CUDA context these may fail too: the row keeps what could be read
            row.update(read())
        except Exception as err:  # noqa: BLE001
            row[f"{name}_error"] = one_line(err)
    return row


def die_with_parent(parent: int | None) -> None:
    """Have the kernel kill this process when its parent dies (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:  # it died before the call
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m gan_lightning.bench.gpu_one SPEC RESULT`: one measurement, its row written."""
    spec_text, result = sys.argv[1:] if argv is None else argv
    spec = json.loads(spec_text)
    die_with_parent(spec.get("parent"))
    write_json(result, measure(spec))
    return 0


if __name__ == "__main__":
    main()
    # The row is on disk: skip the interpreter's teardown (CUDA context, compile worker pools), which can take long
    # enough to reach the deadline; the parent kills whatever is left in this process group.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
