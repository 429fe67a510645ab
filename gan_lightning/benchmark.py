"""Lightning overhead benchmark: `scripts/train.py`'s training run versus a plain PyTorch loop doing the same work.

(a) is the real thing: `cli.run` builds the GAN, the data module, the TensorBoard logger, the sample-grid,
checkpoint and progress-bar callbacks and the Trainer exactly as `scripts/train.py` does, and trains.
(b) is a plain PyTorch loop over copies of the same networks (taken before Lightning's first update), with the
same losses, optimizers (rebuilt from the module's, so the same Adam settings) and data batches (the same
in-memory dataset, batch size, collate and per-epoch permutation), doing the same work per iteration: `d_steps`
discriminator updates on fakes made without a graph, then one generator update on fresh noise with D frozen.

Both run in one process, interleaved: a callback passed to `cli.run` runs the plain loop in blocks between
Lightning's blocks, so Trainer start-up is excluded and drifts of the machine hit both alike. Lightning's time
per iteration is the wall time from one `on_train_batch_start` to the next (data fetch, hooks, training step,
logging, progress bar, callbacks: the whole cycle) with the plain blocks cut out; the plain loop's is the time of
one iteration including its own data fetch. On CUDA the device is synchronized before every clock reading.

The last line printed is `overhead_ratio=<lightning / plain>`: the median over rounds of the ratio of the two
loops' mean time per iteration in adjacent blocks (pairing adjacent blocks cancels slow drifts).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gan_lightning.data.base import default_data_dir
from gan_lightning.errors import ConfigError, DataError
from gan_lightning.losses import get_loss, gradient_penalty
from gan_lightning.models import MODELS

ADAM_VARIANTS: dict[str, dict[str, bool]] = {
    "default": {},  # what GAN.configure_optimizers asks for: torch's default (the for-loop kernels on CPU)
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}
PRECISIONS = ("32-true", "bf16-mixed")
SYNTHETIC_IMAGES = 60_000  # as many as MNIST's training file, so epochs are as long as with the real data
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class BenchConfig:
    model: str = "mlp"
    batch_size: int = 128
    loss: str = "bce"
    d_steps: int | None = None
    iters: int = 20
    rounds: int = 15
    warmup: int = 20
    accelerator: str = "auto"
    device: int | None = None
    precision: str = "32-true"
    data_dir: str | None = None
    synthetic: bool = False
    threads: int | None = None
    seed: int = 0
    adam: str = "default"
    adam_sweep: bool = False
    json: str | None = None


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
    return all((Path(data_dir) / "MNIST" / "raw" / name).is_file() for name in MNIST_FILES)


# -------------------------------------------------------------------------------------------------- plain loop
def _rebuild_optimizer(opt: torch.optim.Optimizer, params: dict[int, torch.nn.Parameter], **overrides: Any) -> Any:
    """`opt`'s class and hyperparameters, per group, over the mapped copies of its parameters."""
    missing = sum(id(p) not in params for g in opt.param_groups for p in g["params"])
    if missing:
        raise ValueError(f"{missing} optimizer parameters are outside G and D (conditional/InfoGAN heads)")
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, **overrides, "params": [params[id(p)] for p in g["params"]]}
        for g in opt.param_groups
    ]
    return type(opt)(groups)


class PlainLoop:
    """The GAN iteration in plain PyTorch: `d_steps` D updates on fakes made without a graph, then one G update.

    The same gradients as the module computes: it freezes G's parameters while D learns (so G's forward records
    no graph, as under `torch.no_grad` here) and D's while G learns (as `requires_grad_(False)` here), so neither
    loop computes weight gradients it would throw away.
    """

    def __init__(
        self, module: Any, dataset: Dataset, *, batch_size: int, seed: int, precision: str, adam: str | None = None
    ) -> None:
        self.device = module.device
        self.G = copy.deepcopy(module.generator).train()
        self.D = copy.deepcopy(module.discriminator).train()
        mapping = {
            id(p): q
            for net, dup in ((module.generator, self.G), (module.discriminator, self.D))
            for p, q in zip(net.parameters(), dup.parameters(), strict=True)
        }
        optimizers = [o.optimizer if hasattr(o, "optimizer") else o for o in module.trainer.optimizers]
        g_ids = {id(p) for p in module.generator.parameters()}
        opt_g = next(o for o in optimizers if any(id(p) in g_ids for g in o.param_groups for p in g["params"]))
        opt_d = next(o for o in optimizers if o is not opt_g)
        overrides = ADAM_VARIANTS[adam] if adam is not None else {}
        if adam is not None:
            overrides = {"foreach": None, "fused": None, **overrides}
        self.opt_g = _rebuild_optimizer(opt_g, mapping, **overrides)
        self.opt_d = _rebuild_optimizer(opt_d, mapping, **overrides)
        self.d_params = list(self.D.parameters())
        hp = module.hparams
        self.adversarial = get_loss(hp.loss)
        self.gp_weight = hp.gp_weight
        self.noise_fn = module.noise_fn
        self.latent_dim = hp.latent_dim + getattr(module, "code_dim", 0)
        self.d_steps = module.d_steps
        self.seed, self.iteration = seed, 0
        self.gen = torch.Generator(device=self.device)
        self.autocast: Callable[[], Any] = (
            (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16))
            if precision == "bf16-mixed"
            else nullcontext
        )
        # The Lightning loader's batches: same dataset, batch size, collate and per-epoch permutation.
        self.sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=True)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=0,
            collate_fn=getattr(dataset, "collate_fn", None),
            pin_memory=self.device.type == "cuda",
        )
        self.epoch = 0
        self._it: Iterator[Any] | None = None

    def next_batch(self) -> torch.Tensor:
        while True:
            if self._it is None:
                self.sampler.set_epoch(self.epoch)
                self._it = iter(self.loader)
            try:
                batch = next(self._it)
                break
            except StopIteration:
                self._it, self.epoch = None, self.epoch + 1
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        return real.to(self.device, non_blocking=True)

    def _noise(self, n: int) -> torch.Tensor:
        return self.noise_fn((n, self.latent_dim), device=self.device, generator=self.gen)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.D(x).reshape(x.shape[0])

    def step(self, real: torch.Tensor, noise_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration on a batch of `d_steps` chunks; returns the last (d_loss, g_loss), detached."""
        if noise_state is not None:
            self.gen.set_state(noise_state)
        else:  # a fresh noise seed per iteration, as the module does
            self.gen.manual_seed(self.seed * 1_000_003 + self.iteration)
        self.iteration += 1
        adv = self.adversarial
        with self.autocast():
            for chunk in real.chunk(self.d_steps):
                with torch.no_grad():
                    fake = self.G(self._noise(chunk.shape[0]))
                d_loss = adv.d(self._logits(chunk), self._logits(fake))
                if adv.gradient_penalty:
                    d_loss = d_loss + self.gp_weight * gradient_penalty(self._logits, chunk, fake, self.gen)
                self.opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                self.opt_d.step()
            for p in self.d_params:
                p.requires_grad_(False)
            g_loss = adv.g(self._logits(self.G(self._noise(real.shape[0] // self.d_steps))))
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
            for p in self.d_params:
                p.requires_grad_(True)
        return d_loss.detach(), g_loss.detach()

    def run(self, n: int, clock: Callable[[], float]) -> list[float]:
        """`n` iterations (data fetch included); the seconds each one took."""
        times = []
        t0 = clock()
        for _ in range(n):
            self.step(self.next_batch())
            t1 = clock()
            times.append(t1 - t0)
            t0 = t1
        return times


# ------------------------------------------------------------------------------------------------ interleaving
@dataclass
class Timings:
    lightning: list[list[float]] = field(default_factory=list)  # per block, seconds per iteration
    plain: list[list[float]] = field(default_factory=list)
    threads_seen: set[int] = field(default_factory=set)
    check: dict[str, Any] = field(default_factory=dict)
    module: Any = None
    dataset: Any = None


def make_clock(device: torch.device) -> Callable[[], float]:
    """perf_counter, after synchronizing the device on CUDA."""
    if device.type == "cuda":

        def clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return clock
    return time.perf_counter


def _snapshot(generator: torch.nn.Module, discriminator: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of both networks' floating-point parameters and buffers (BatchNorm statistics included)."""
    state = {f"G.{k}": v for k, v in generator.state_dict().items()}
    state.update({f"D.{k}": v for k, v in discriminator.state_dict().items()})
    return {k: v.detach().float().cpu().clone() for k, v in state.items() if v.is_floating_point()}


def interleave_callback(bench: BenchConfig, timings: Timings) -> Any:
    """The callback that times Lightning's iterations and runs the plain loop's blocks between them."""
    from lightning.pytorch import Callback

    warmup, iters, rounds = bench.warmup, bench.iters, bench.rounds

    class Interleave(Callback):
        def __init__(self) -> None:
            self.plain: PlainLoop | None = None
            self.clock: Callable[[], float] = time.perf_counter
            self.started = 0  # Lightning iterations started before the current one
            self.prev: float | None = None
            self.first: dict[str, torch.Tensor] = {}
            self.noise_state: torch.Tensor | None = None

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if bench.adam != "default":  # the module's own optimizers, with another Adam implementation
                configure = pl_module.configure_optimizers
                options = {"foreach": None, "fused": None, **ADAM_VARIANTS[bench.adam]}

                def configure_optimizers() -> Any:
                    return [_rebuild_optimizer(o, _identity(o), **options) for o in configure()]

                pl_module.configure_optimizers = configure_optimizers

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            datamodule = trainer.datamodule
            timings.module, timings.dataset = pl_module, datamodule.train_set
            # Copies of the networks and optimizers before Lightning's first update.
            self.plain = PlainLoop(
                pl_module,
                datamodule.train_set,
                batch_size=datamodule.batch_size,
                seed=datamodule.seed,
                precision=bench.precision,
                adam=None if bench.adam == "default" else bench.adam,
            )
            self.clock = make_clock(pl_module.device)
            self._spy_noise(pl_module)

        def _spy_noise(self, pl_module: Any) -> None:
            # Record the noise stream's state at the module's first draw, for the plain loop's first iteration.
            sample_noise = pl_module.sample_noise

            def spy(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
                gen = generator if generator is not None else pl_module._noise_generator()
                if self.noise_state is None and gen is pl_module._noise_generator():  # not e.g. SampleGrid's
                    self.noise_state = gen.get_state()
                return sample_noise(n, generator)

            pl_module.sample_noise = spy

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            now = self.clock()
            n, self.started = self.started, self.started + 1
            done = n - 1 - warmup  # index of the timed iteration that just ended
            if self.prev is not None and 0 <= done < rounds * iters:
                if done % iters == 0:
                    timings.lightning.append([])
                timings.lightning[-1].append(now - self.prev)
            timings.threads_seen.add(torch.get_num_threads())
            assert self.plain is not None
            if n == warmup:
                self._check_first_iteration()
                self.plain.run(warmup - 1, self.clock)
            elif n > warmup and (n - warmup) % iters == 0 and len(timings.plain) < rounds:
                timings.plain.append(self.plain.run(iters, self.clock))
            self.prev = self.clock()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.started == 1:  # the module's first iteration, to compare with the plain loop's
                vars(pl_module).pop("sample_noise", None)  # drop the spy
                self.first = _snapshot(pl_module.generator, pl_module.discriminator)

        def _check_first_iteration(self) -> None:
            # Same initial weights, batch and noise: the plain loop's first iteration must land on the module's
            # weights after its first iteration (up to rounding), which checks that both do the same work.
            assert self.plain is not None
            self.plain.step(self.plain.next_batch(), noise_state=self.noise_state)
            after = _snapshot(self.plain.G, self.plain.D)
            diff = max((after[k] - v).abs().max().item() for k, v in self.first.items()) if self.first else None
            timings.check = {"max_abs_diff": diff if self.noise_state is not None else None, "tensors": len(after)}

    return Interleave()


def _identity(opt: torch.optim.Optimizer) -> dict[int, Any]:
    return {id(p): p for g in opt.param_groups for p in g["params"]}


# ---------------------------------------------------------------------------------------------------- the run
def cli_argv(bench: BenchConfig, data_dir: str, log_dir: str) -> list[str]:
    """`scripts/train.py` flags for this benchmark; everything else stays at the CLI's defaults."""
    iterations = bench.warmup + bench.rounds * bench.iters + 1  # +1: the last plain block runs in one more
    devices = "1" if bench.device is None or bench.accelerator == "cpu" else f"{bench.device},"
    argv = [
        "--model",
        bench.model,
        "--batch-size",
        str(bench.batch_size),
        "--loss",
        bench.loss,
        "--precision",
        bench.precision,
        "--accelerator",
        bench.accelerator,
        "--devices",
        devices,
        "--seed",
        str(bench.seed),
        "--data-dir",
        data_dir,
        "--no-download",
        "--log-dir",
        log_dir,
        "--max-steps",
        str(iterations),
    ]
    if bench.d_steps is not None:
        argv += ["--d-steps", str(bench.d_steps)]
    return argv


def run_benchmark(bench: BenchConfig) -> dict[str, Any]:
    """Run `cli.run` with the interleaving callback; returns the report (see `summarize`)."""
    return _run(bench)[0]


def _run(bench: BenchConfig) -> tuple[dict[str, Any], Timings]:
    from gan_lightning import cli

    if bench.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {bench.precision!r}")
    for name in ("iters", "rounds", "warmup", "batch_size"):
        if getattr(bench, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    for message in (".*log_every_n_steps.*", ".*does not have many workers.*", ".*GPU available but not used.*"):
        warnings.filterwarnings("ignore", message=message)
    if bench.threads is not None:
        torch.set_num_threads(bench.threads)
    threads = torch.get_num_threads()
    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as tmp:
        data_dir = bench.data_dir or default_data_dir()
        if bench.synthetic or not has_mnist(data_dir):
            data_dir, data = str(write_synthetic_mnist(Path(tmp) / "data", seed=bench.seed)), "synthetic"
        else:
            data = f"MNIST from {Path(data_dir) / 'MNIST' / 'raw'}"
        cfg = cli._resolve(cli.build_parser().parse_args(cli_argv(bench, data_dir, str(Path(tmp) / "logs"))))
        with redirect_stdout(sys.stderr):  # progress bar and the (temporary) paths: stdout is the report
            cli.run(cfg, callbacks=[interleave_callback(bench, timings)])
    if len(timings.plain) != bench.rounds or len(timings.lightning) != bench.rounds:
        raise RuntimeError(f"benchmark ended early: {len(timings.lightning)} / {len(timings.plain)} blocks timed")
    if timings.threads_seen != {threads}:
        raise RuntimeError(f"torch threads changed under Lightning: {sorted(timings.threads_seen)} != {threads}")
    module = timings.module
    info = {
        "device": str(module.device),
        "threads": threads,
        "data": data,
        "d_steps": module.d_steps,
        "images_per_iteration": bench.batch_size * module.d_steps,
        "latent_dim": cfg.latent_dim,
        "image_size": cfg.image_size,
        "noise": cfg.noise,
        "lr": cfg.lr,
        "sample_every": cfg.sample_every,
        "log_every": cfg.log_every,
        "checkpoint_every": cfg.checkpoint_every,
    }
    return summarize(bench, timings, info), timings


def _stats(blocks: list[list[float]], images: int) -> dict[str, Any]:
    flat = sorted(t for block in blocks for t in block)
    means = [statistics.fmean(block) for block in blocks]
    return {
        "median_ms": 1e3 * statistics.median(flat),
        "mean_ms": 1e3 * statistics.fmean(flat),
        "p90_ms": 1e3 * flat[min(len(flat) - 1, int(0.9 * len(flat)))],
        "block_mean_ms": [1e3 * m for m in means],
        "median_block_mean_ms": 1e3 * statistics.median(means),
        "images_per_s": images / statistics.median(means),
        "iteration_ms": [[1e3 * t for t in block] for block in blocks],
    }


def summarize(bench: BenchConfig, timings: Timings, info: dict[str, Any]) -> dict[str, Any]:
    images = info["images_per_iteration"]
    a, b = _stats(timings.lightning, images), _stats(timings.plain, images)
    ratios = [x / y for x, y in zip(a["block_mean_ms"], b["block_mean_ms"], strict=True)]
    return {
        "config": {**vars(bench), **info},
        "lightning": a,
        "plain": b,
        "round_ratios": ratios,
        "median_iteration_ratio": a["median_ms"] / b["median_ms"],
        "first_iteration_check": timings.check,
        "overhead_ratio": statistics.median(ratios),
    }


def format_report(report: dict[str, Any]) -> str:
    c, a, b = report["config"], report["lightning"], report["plain"]
    diff = report["first_iteration_check"].get("max_abs_diff")
    header = ("loop", "median ms/it", "mean ms/it", "p90 ms/it", "block-mean ms/it", "images/s")
    lines = [
        f"model={c['model']} loss={c['loss']} d_steps={c['d_steps']} batch={c['batch_size']} "
        f"images/iteration={c['images_per_iteration']} precision={c['precision']} adam={c['adam']} "
        f"device={c['device']} threads={c['threads']}",
        f"data: {c['data']}; {c['rounds']} rounds x {c['iters']} iterations per loop after {c['warmup']} warm-up",
        "weights after one iteration, lightning vs plain: "
        + (f"max |diff| = {diff:.2e}" if diff is not None else "not compared (no noise draw seen)"),
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
        "round ratios (block means): " + " ".join(f"{r:.3f}" for r in report["round_ratios"]),
        f"ratio of per-iteration medians: {report['median_iteration_ratio']:.3f}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- Adam variants
def adam_sweep(bench: BenchConfig, timings: Timings) -> dict[str, float]:
    """The plain loop's ms/iteration with each Adam implementation: interleaved blocks, median of block means."""
    module, dataset = timings.module, timings.dataset
    clock = make_clock(module.device)
    loops = {
        name: PlainLoop(
            module,
            dataset,
            batch_size=bench.batch_size * module.d_steps,
            seed=bench.seed,
            precision=bench.precision,
            adam=name,
        )
        for name in ADAM_VARIANTS
    }
    means: dict[str, list[float]] = {name: [] for name in loops}
    for loop in loops.values():
        loop.run(bench.warmup, clock)
    for r in range(bench.rounds):
        for name in loops if r % 2 == 0 else reversed(loops):
            means[name].append(statistics.fmean(loops[name].run(bench.iters, clock)))
    return {name: 1e3 * statistics.median(m) for name, m in means.items()}


# -------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Time scripts/train.py's Lightning training against a plain PyTorch loop doing the same work, "
        "interleaved in one process. The last line printed is overhead_ratio=<lightning/plain>.",
    )
    p.add_argument("--model", default="mlp", choices=MODELS.names(), help="architecture (default mlp)")
    p.add_argument("--batch-size", type=int, default=128, help="images per D step (default 128)")
    p.add_argument("--loss", default="bce", help="adversarial loss (default bce)")
    p.add_argument("--d-steps", type=int, help="D updates per iteration (default: the loss's)")
    p.add_argument("--iters", type=int, default=20, help="iterations per timed block (default 20)")
    p.add_argument("--rounds", type=int, default=15, help="timed blocks per loop (default 15)")
    p.add_argument("--warmup", type=int, default=20, help="untimed iterations per loop first (default 20)")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default auto)")
    p.add_argument("--device", type=int, help="device index (default: the first)")
    p.add_argument("--precision", default="32-true", choices=PRECISIONS, help="default 32-true")
    p.add_argument("--data-dir", help="MNIST root (DIR/MNIST/raw; default as the CLI); synthetic data when absent")
    p.add_argument("--synthetic", action="store_true", help="random images in MNIST's shape even if MNIST is there")
    p.add_argument("--threads", type=int, help="torch.set_num_threads for both loops (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--adam",
        default="default",
        choices=sorted(ADAM_VARIANTS),
        help="Adam implementation for both loops (default: the module's own optimizers)",
    )
    p.add_argument(
        "--adam-sweep",
        action="store_true",
        help="also time the plain loop with each Adam implementation (default/foreach/fused)",
    )
    p.add_argument("--json", help="write the numbers to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bench = BenchConfig(**vars(args))
    try:
        report, timings = _run(bench)
    except (ConfigError, DataError, ValueError) as err:
        print(f"benchmark.py: error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    if bench.adam_sweep:
        sweep = adam_sweep(bench, timings)
        report["adam_sweep_plain_ms"] = sweep
        print("plain loop with each Adam: " + ", ".join(f"{k} {v:.3f} ms/it" for k, v in sweep.items()))
    if bench.json:
        Path(bench.json).write_text(json.dumps(report, indent=1))
    ratio = report["overhead_ratio"]
    if not math.isfinite(ratio) or ratio <= 0:
        print(f"benchmark.py: error: bad ratio {ratio}", file=sys.stderr)
        return 1
    print(f"overhead_ratio={ratio:.3f}", flush=True)
    return 0
