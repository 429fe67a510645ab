"""The GPU measurement (`scripts/gpu_measure.py`): one command, one JSON file, within a time budget.

What it measures, in this order, each on the same card:
1. the FID Inception's images/s (torch-fidelity's network with random weights in the published file's layout,
   unless `--fid-weights` names the real file: the speed is the same);
2. the prepared loader's images/s into GPU memory (a generated CelebA-layout folder prepared once, its training
   loader's batches copied to the device, timed after the prefetch pipeline has filled);
3. training speed, the Trainer (`scripts/train.py`'s run) against the plain loop over the same phases
   (`bench/trainer.py`), for `dcgan` at 64 px and every CIFAR-10 preset (bf16, each preset's own batch; dcgan's
   128; r3gan_cifar10 in micro-batches, `gpu_one.ACCUMULATE`), with the loader, then with `--data-on-device`,
   then that plus `--channels-last`, then plus `--compile`; every configuration's first variant runs before any
   configuration's second, so a tight budget still covers every model.

Each measurement runs in a process of its own (`bench/gpu_one.py`) with a hard deadline: the time left in
`--budget-s` or `--cap-s`, whichever comes first; at the deadline its process group is killed and the row says so.
A measurement with under `MIN_START_S` left is recorded as skipped. So the budget bounds the whole command. SIGTERM,
SIGINT or SIGHUP kill the running measurement, write the JSON and exit with 128 + the signal's number. The JSON is
rewritten (atomically) after every measurement: a run killed outright keeps what it had. Synthetic data stands in
for every dataset (the card's machine has no downloads; the JSON's `data` says what stood in): the numbers are
speeds, not sample quality.

    python scripts/gpu_measure.py --out gpu.json             # about --budget-s seconds at most
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

import gan_lightning
from gan_lightning.bench.gpu_one import LOADER_BATCH, LOADER_DISTINCT, VARIANTS, configurations, loader_skip, write_json
from gan_lightning.commands.base import Parser, run_command
from gan_lightning.core.errors import ConfigError
from gan_lightning.data.loading import split_lengths

MIN_START_S = 10.0  # a measurement with less time left is skipped: its process would barely have started
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
STAND_INS = {
    "training": "generated data in each dataset's file layout: dcgan_64 trains on synthetic MNIST (60,000 random "
    "28x28 1-channel digits, resized to 64 px: 1-channel networks), the CIFAR-10 presets on synthetic CIFAR-10 "
    "(10,000 random 32x32 RGB images); each row's 'data', 'channels' and 'image_size' say which",
    "fid_inception": "uniform random 32x32 RGB images (resized to 299 inside the network)",
    "prepared_loader": f"a CelebA-layout folder of photo-like 178x218 JPEGs ({LOADER_DISTINCT} generated, the others "
    "hard links to them), prepared once at 64 px",
}


class Stopped(Exception):
    """A stop signal reached the command."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP raise `Stopped` (the first one; later ones are ignored while it cleans up)."""
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL `proc`'s process group (it leads one: its loader and compile workers go too, even after it exited);
    reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_one(spec: dict[str, Any], seconds: float, why: str, tmp: str) -> dict[str, Any]:
    """Run the measurement `spec` in its own process, killed after `seconds` (`why` says whose limit that is)."""
    result = Path(tmp) / "row.json"
    result.unlink(missing_ok=True)
    # a wall-clock deadline: the child's own clock starts after its imports, which count against its time
    spec = {**spec, "deadline": time.time() + seconds, "parent": os.getpid()}
    env = dict(os.environ)  # the child imports this very package, however the parent found it
    root = str(Path(gan_lightning.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "gan_lightning.bench.gpu_one", json.dumps(spec), str(result)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # its own group: killed whole, no terminal's ^C
    timed_out = False
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on a stop signal while it runs
        kill_group(proc)
    row = json.loads(result.read_text()) if result.is_file() else None
    if timed_out and row is not None:  # it wrote its row, then did not exit in time
        return {**row, "note": f"its process was killed at its time limit, {seconds:.0f} s, after writing this"}
    if timed_out:
        return {"error": f"killed at its time limit, {seconds:.0f} s ({why})"}
    if row is not None:
        return row
    code = proc.returncode
    status = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else code
    return {"error": f"its process ended ({status}) without writing a result (its output is in the log above)"}


def plan(cfg: argparse.Namespace, tmp: str) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """(where in the JSON, what to measure) in the order they run: FID, loader, then training breadth-first."""
    options = {k: getattr(cfg, k) for k in ("precision", "accelerator", "device", "iters", "rounds", "warmup",
                                            "fid_weights", "fid_batch_size", "loader_images", "workers")}  # fmt: skip
    options["tmp"] = tmp
    steps: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    if "fid" not in cfg.skip:
        steps.append((("fid_inception",), {"kind": "fid", "options": options}))
    if "loader" not in cfg.skip:
        steps.append((("prepared_loader",), {"kind": "loader", "options": options}))
    if "training" not in cfg.skip:
        configs = configurations()
        for variant_name, variant in VARIANTS.items():  # breadth first: every model gets its first variant
            if cfg.variants and variant_name not in cfg.variants:
                continue
            for name, config in configs.items():
                if not cfg.configs or name in cfg.configs:
                    spec = {"kind": "training", "config": config, "variant": variant, "options": options}
                    steps.append((("training", name, variant_name), spec))
    return steps


def place(result: dict[str, Any], where: tuple[str, ...], row: dict[str, Any]) -> None:
    """Put `row` at `where` in the JSON; the first environment reported goes to the top, a different one stays."""
    env = row.pop("environment", None)
    if env is not None and result.get("environment") is None:
        result["environment"] = env
    elif env is not None and env != result["environment"]:
        row["environment"] = env
    node = result
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = row


def at(tree: dict[str, Any], where: tuple[str, ...]) -> Any:
    """What the JSON holds at `where`, or None."""
    for key in where:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def summary(result: dict[str, Any]) -> list[str]:
    """One line per measurement that ran, in its order: images/s (Trainer and plain loop for training) or why not."""
    lines = []
    for name in result["order"]:
        row = at(result, tuple(name.split("/")))
        if not isinstance(row, dict) or "images_per_s" not in row and "lightning" not in row:
            text = (row or {}).get("error") or (row or {}).get("skipped") or "no result"
        elif "lightning" in row:
            text = (f"{row['lightning']['images_per_s']:,.0f} / {row['plain']['images_per_s']:,.0f} images/s "
                    f"(Trainer / plain), ratio {row['overhead_ratio']:.3f}")  # fmt: skip
        else:
            text = f"{row['images_per_s']:,.0f} images/s"
        if isinstance(row, dict) and "max_memory_allocated_gib" in row:
            text += f", peak {row['max_memory_allocated_gib']} GiB"
        if isinstance(row, dict) and "graph_breaks" in row:
            text += f", {row['graph_breaks']} graph breaks"
        lines.append(f"  {name}: {text}")
    return ["summary:", *lines]


def build_parser() -> Parser:
    """The measurement's flags."""
    p = Parser(prog="gpu_measure.py", description="The GPU measurement: the FID Inception's and the prepared "
               "loader's images/s, then training speed of dcgan 64 px and every CIFAR-10 preset (Trainer and plain "
               "loop, four data/memory/compile variants); one JSON file. Each measurement runs in its own process, "
               "killed at its time limit")  # fmt: skip
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--budget-s", type=float, default=420, help="seconds for the whole command: a measurement still "
                   "running then is killed (default 420: the whole run stays under 8 minutes)")  # fmt: skip
    p.add_argument("--cap-s", type=float, default=150, help="seconds at most for one measurement; a training run "
                   "cuts its timed iterations to end in time (default 150)")  # fmt: skip
    p.add_argument("--accelerator", default="cuda", help="cuda (default) or cpu (a smoke test)")
    p.add_argument("--precision", default="bf16-mixed", choices=("bf16-mixed", "32-true"), help="default bf16-mixed")
    p.add_argument("--configs", nargs="+", help="only these configurations (default: dcgan_64 and every CIFAR-10 "
                   "preset)")  # fmt: skip
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="only these variants (default: all)")
    p.add_argument("--iters", type=int, default=10, help="iterations per timed block (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="timed blocks per loop (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per loop first (default 3: the first "
                   "compiles; the budget buys more timed ones)")  # fmt: skip
    p.add_argument("--fid-weights", help="the published FID Inception weights (default: random weights, same speed)")
    p.add_argument("--fid-batch-size", type=int, default=256, help="default 256")
    p.add_argument("--loader-images", type=int, default=8192, help="images in the prepared loader's folder "
                   "(default 8192; at least enough for the untimed batches and 2 timed)")  # fmt: skip
    p.add_argument("--workers", type=int, default=4, help="loader workers (default 4)")
    p.add_argument("--skip", nargs="+", default=[], choices=("training", "fid", "loader"), help="parts to leave out")
    return p


def check(cfg: argparse.Namespace) -> None:
    """One-line ConfigError for flags that cannot work."""
    configs = configurations()
    for name in cfg.configs or []:
        if name not in configs:
            raise ConfigError(f"--configs {name}: choose from {', '.join(configs)}")
    for flag in ("iters", "rounds", "warmup", "fid_batch_size", "loader_images", "budget_s", "cap_s"):
        if not getattr(cfg, flag) > 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(cfg, flag)}")
    if cfg.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {cfg.workers}")
    need = loader_skip(cfg.workers) + 2
    if "loader" not in cfg.skip and split_lengths(cfg.loader_images, 0.05)[0] // LOADER_BATCH < need:
        raise ConfigError(f"--loader-images {cfg.loader_images}: with --workers {cfg.workers} the loader needs "
                          f"{need} training batches of {LOADER_BATCH} (its 5% validation split aside)")  # fmt: skip
    if cfg.accelerator not in ("cuda", "cpu"):
        raise ConfigError(f"--accelerator {cfg.accelerator}: choose cuda or cpu")
    if cfg.accelerator == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--accelerator cuda: no CUDA device here; run it where one is, or pass --accelerator cpu")


def run(cfg: argparse.Namespace) -> int:
    """Measure, each measurement in its own process, rewriting the JSON after each; 128 + signal when stopped."""
    began = time.monotonic()
    check(cfg)
    cfg.device = cfg.accelerator
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = ("accelerator", "precision", "budget_s", "cap_s", "iters", "rounds", "warmup", "fid_batch_size",
                "loader_images", "workers")  # fmt: skip
    result: dict[str, Any] = {"options": {k: getattr(cfg, k) for k in settings}, "environment": None,
                              "data": STAND_INS, "order": [], "wall_s": 0.0}  # fmt: skip
    deadline, status, done = began + cfg.budget_s, 0, 0

    def finish() -> None:
        result["wall_s"] = round(time.monotonic() - began, 1)
        write_json(out, result)

    with tempfile.TemporaryDirectory(prefix="gan_gpu_measure_") as tmp, stop_signals():
        steps = plan(cfg, tmp)
        try:
            for where, spec in steps:
                name, left = "/".join(where), deadline - time.monotonic()
                if left < MIN_START_S:
                    row: dict[str, Any] = {"skipped": "time budget spent"}
                else:
                    seconds, why = min(cfg.cap_s, left), "--cap-s" if cfg.cap_s <= left else "the end of --budget-s"
                    place(result, where, {"running": True})  # a command killed outright shows where it was
                    result["order"].append(name)
                    finish()
                    start = time.monotonic()
                    row = run_one(spec, seconds, why, tmp)
                    row["wall_s"] = round(time.monotonic() - start, 1)
                place(result, where, row)
                done += 1
                print(f"{name}: {json.dumps(row)}", flush=True)
                finish()
        except Stopped as stop:  # the handler ignores further signals: this part is not interrupted
            status = 128 + stop.signum
            result["stopped"] = f"{stop} after {time.monotonic() - began:.1f} s"
            for where, _ in steps[done:]:
                running = at(result, where) is not None  # placed as running; the later ones are absent
                place(result, where, {"error" if running else "skipped": f"stopped by {stop}"})
            finish()
    print("\n".join(summary(result)), flush=True)
    print(f"wrote {out}" + (f" (stopped: {result['stopped']})" if status else ""), flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/gpu_measure.py`: 0 on success, 2 on bad input, 128 + N when stopped by signal N."""
    return run_command(build_parser, run, argv)
