"""Lightning overhead benchmark (`scripts/benchmark.py`): `scripts/train.py`'s training run versus a plain PyTorch
loop doing the same work.

(a) is the real thing: `cli.run` builds the GAN, the data module, the TensorBoard logger, the sample-grid,
checkpoint, progress-bar and health callbacks and the Trainer exactly as `scripts/train.py` does, and trains.
(b) is a plain PyTorch loop over deep copies of the same networks (G, and D with its heads: the module's `Critic`),
taken before Lightning's first update. It has no training step of its own: it runs the module's components, so
it cannot drift from them. The module's latent space draws G's inputs, the module's objective computes both
phases' losses (regularizers included), on a generator seeded per iteration by `iteration_seed` as the module's is, over
the same `tensor_split(d_steps)` chunks as `GAN.training_step` (the last chunk feeds the G phase). What it does
without Lightning: freezing the other network with `requires_grad_` (instead of `toggled_optimizer`),
`loss.backward()`, `opt.step()` on optimizers of the module's class and settings (fused Adam, as
`GAN.configure_optimizers` asks), and fetching batches from a second copy of the DataModule's own training loader
(same dataset, batch size, collate and per-epoch permutation). What it leaves out is what is being measured:
Lightning's loop, hooks, logging, progress bar and callbacks, and the module's own bookkeeping (finite-loss
checks, step metrics).

Both run in one process, interleaved: the plain loop runs in blocks between Lightning's blocks, so Trainer
start-up is excluded and drifts of the machine hit both alike. The timing rides on the module's own
`on_train_batch_start` hook (the callback passed to `cli.run` moves it there and leaves the callback list, so the
measured run has exactly `scripts/train.py`'s callbacks). Lightning's time per iteration is the wall time from
one batch start to the next (data fetch, hooks, training step, logging, progress bar, callbacks: the whole cycle)
with the plain blocks cut out; the plain loop's is the time of one iteration including its own data fetch. On CUDA
the device is synchronized before every clock reading. `--channels-last` and `--compile` apply to both loops (the
plain loop compiles its own copies of the networks).

The report gives both loops' ms/iteration and images/s, and the fixed cost: the median over rounds of the
difference of the two loops' mean time per iteration in adjacent blocks. The last line printed is
`overhead_ratio=<lightning / plain>`, the median of the same blocks' ratio (pairing adjacent blocks cancels slow
drifts). The GPU measurement of issue 12, for instance:

    python scripts/benchmark.py --model dcgan --image-size 64 --precision bf16-mixed --batch-size 128 \
        --accelerator cuda --data-on-device [--channels-last] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import statistics
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_lightning.commands.base import CommandStopped, Parser, run_command
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data.base import default_data_dir
from gan_lightning.models import MODELS
from gan_lightning.training.gan import iteration_seed, networks_to_compile
from gan_lightning.training.objectives import OBJECTIVES, Batch

# Adam implementations to time instead of the module's own choice (`--adam module`: fused on CPU and CUDA).
ADAM_VARIANTS: dict[str, dict[str, bool | None]] = {
    "default": {"foreach": None, "fused": None},  # torch's pick: foreach kernels on CUDA, the for-loop on CPU
    "foreach": {"foreach": True, "fused": None},
    "fused": {"foreach": None, "fused": True},
}
ADAM_CHOICES = ("module", *ADAM_VARIANTS)
PRECISIONS = ("32-true", "bf16-mixed")
# Dynamo keys compiled code on the module instance and on which parameters require grad: both loops' copies of G
# and D, each in its trainable and its frozen phase, need more entries than the default 8.
COMPILE_RECOMPILE_LIMIT = 64
SYNTHETIC_IMAGES = 60_000  # as many as MNIST's training file, so epochs are as long as with the real data
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class BenchConfig:
    model: str = "mlp"
    batch_size: int = 128
    loss: str = "bce"
    d_steps: int | None = None
    conditional: bool = False
    infogan: bool = False
    image_size: int | None = None
    ngf: int | None = None
    ndf: int | None = None
    channels_last: bool = False
    compile: bool = False
    data_on_device: bool = False
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
    adam: str = "module"
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
def _unwrap(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a LightningOptimizer (or the optimizer itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def rebuild_optimizer(opt: torch.optim.Optimizer, params: dict[int, torch.Tensor], **overrides: Any) -> Any:
    """`opt`'s class and hyperparameters, per group, over the mapped copies of its parameters (fresh state)."""
    missing = sum(id(p) not in params for g in opt.param_groups for p in g["params"])
    if missing:
        raise RuntimeError(f"{missing} optimizer parameters belong to neither the generator nor the discriminator")
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, **overrides, "params": [params[id(p)] for p in g["params"]]}
        for g in opt.param_groups
    ]
    # The first group's settings as constructor arguments too: some (Adam's `fused`) are also read from there.
    accepted = inspect.signature(type(opt)).parameters
    return type(opt)(groups, **{k: v for k, v in groups[0].items() if k in accepted and k != "params"})


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(x, device) for x in batch)
    return batch


def _set_requires_grad(params: Iterable[torch.nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


class PlainLoop:
    """`GAN.training_step` in plain PyTorch, over deep copies of `module`'s networks and the module's components.

    `module` is a `gan_lightning.GAN` (its networks are copied as they are now; its latent space, objective and
    `d_steps` are used as they are), `optimizers` the module's two optimizers (rebuilt, same class and settings,
    fresh state, over the copies; `adam` picks another Adam implementation from ADAM_VARIANTS), `loader` a training
    loader equal to the one Lightning iterates (its sampler's `set_epoch` is called per pass, as Lightning does).
    """

    def __init__(
        self,
        module: Any,
        optimizers: Sequence[Any],
        loader: Iterable[Any],
        *,
        precision: str = "32-true",
        adam: str | None = None,
    ) -> None:
        self.module, self.device = module, module.device
        self.G = copy.deepcopy(module.generator).train()
        self.D = copy.deepcopy(module.discriminator).train()  # the Critic: D with its projection / Q heads
        self.channels_last = bool(module.hparams.get("channels_last"))  # the copies keep the module's layout
        if module.hparams.get("compile"):
            # A copy would keep calling the original's compiled forward: compile the copies of what the module compiles.
            compiled = {
                id(net) for net in networks_to_compile(module.generator, module.discriminator, module.objective)
            }
            for net, dup in ((module.generator, self.G), (module.discriminator, self.D)):
                if id(net) in compiled:
                    dup.compile()
        mapping = {
            id(p): q
            for net, dup in ((module.generator, self.G), (module.discriminator, self.D))
            for p, q in zip(net.parameters(), dup.parameters(), strict=True)
        }
        optimizers = [_unwrap(o) for o in optimizers]
        g_ids = {id(p) for p in module.generator.parameters()}
        opt_g = next(o for o in optimizers if any(id(p) in g_ids for g in o.param_groups for p in g["params"]))
        opt_d = next(o for o in optimizers if o is not opt_g)
        overrides = ADAM_VARIANTS[adam] if adam is not None else {}
        self.opt_g = rebuild_optimizer(opt_g, mapping, **overrides)
        self.opt_d = rebuild_optimizer(opt_d, mapping, **overrides)
        # What `toggled_optimizer` freezes in each phase: every parameter outside the stepping optimizer.
        self.g_params = [p for g in self.opt_g.param_groups for p in g["params"]]
        self.d_params = [p for g in self.opt_d.param_groups for p in g["params"]]
        self.latents, self.objective, self.d_steps = module.latents, module.objective, module.d_steps
        self.rng = torch.Generator(device=self.device)
        self.iteration = 0
        # As Lightning's bf16-mixed: no cast cache, whose bf16 weight copies would go stale across in-place steps.
        self.autocast: Callable[[], Any] = (
            (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False))
            if precision == "bf16-mixed"
            else nullcontext
        )
        self.loader = loader
        self.epoch = 0
        self._it: Iterator[Any] | None = None

    def next_batch(self) -> Any:
        """The next training batch on the device, starting a new epoch's permutation when one runs out."""
        while True:
            if self._it is None:
                sampler = getattr(self.loader, "sampler", None)
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self.epoch)
                self._it = iter(self.loader)
            try:
                return _to_device(next(self._it), self.device)
            except StopIteration:
                self._it, self.epoch = None, self.epoch + 1

    def _iteration_rng(self) -> torch.Generator:
        # The module's own seeding (one process, rank 0): the plain loop draws what the module draws in the same
        # iteration.
        return self.rng.manual_seed(iteration_seed(self.module.hparams.seed, 0, self.iteration))

    def step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration on a batch (images, or (images, labels)); returns the last (d_loss, g_loss), detached."""
        real = Batch.of(batch)
        if self.channels_last and real.images.ndim == 4:
            real = real._replace(images=real.images.contiguous(memory_format=torch.channels_last))
        G, D, latents, objective, device = self.G, self.D, self.latents, self.objective, self.device
        rng = self._iteration_rng()
        iteration = self.iteration
        first_d_step = iteration * self.d_steps
        self.iteration += 1
        with self.autocast():
            _set_requires_grad(self.g_params, False)
            for i, chunk in enumerate(real.split(self.d_steps)):
                # conditional fakes take the chunk's real labels, as in the module
                drawn = latents.draw(len(chunk.images), rng, device, labels=chunk.labels)
                d = objective.d_loss(G, D, chunk, drawn, rng, step=first_d_step + i)
                self.opt_d.zero_grad(set_to_none=True)
                d.loss.backward()
                self.opt_d.step()
                objective.end_d_update(first_d_step + i)
            _set_requires_grad(self.g_params, True)
            _set_requires_grad(self.d_params, False)
            drawn = latents.draw(len(chunk.images), rng, device)
            g = objective.g_loss(G, D, chunk, drawn, rng, step=iteration)  # on the last chunk
            self.opt_g.zero_grad(set_to_none=True)
            g.loss.backward()
            self.opt_g.step()
            _set_requires_grad(self.d_params, True)
        return d.stats["d_loss"], g.stats["g_loss"]

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
    adam_sweep: dict[str, float] = field(default_factory=dict)
    module: Any = None


def make_clock(device: torch.device) -> Callable[[], float]:
    """perf_counter, after synchronizing the device on CUDA."""
    if device.type == "cuda":

        def clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return clock
    return time.perf_counter


def snapshot(generator: torch.nn.Module, discriminator: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of both networks' floating-point parameters and buffers (BatchNorm statistics, D's heads included)."""
    state = {f"G.{k}": v for k, v in generator.state_dict().items()}
    state.update({f"D.{k}": v for k, v in discriminator.state_dict().items()})
    return {k: v.detach().float().cpu().clone() for k, v in state.items() if v.is_floating_point()}


def _identity(opt: torch.optim.Optimizer) -> dict[int, torch.Tensor]:
    return {id(p): p for g in opt.param_groups for p in g["params"]}


def interleave_callback(bench: BenchConfig, timings: Timings) -> Any:
    """The callback that times Lightning's iterations and runs the plain loop's blocks between them.

    It is passed to `cli.run` like any callback, but at train start it moves its per-batch work into the module's
    own batch hooks (which Lightning calls every batch anyway) and leaves the Trainer's callback list: every
    callback costs Lightning a dispatch per hook per batch, and `scripts/train.py` has no such callback.
    """
    from lightning.pytorch import Callback

    warmup, iters, rounds = bench.warmup, bench.iters, bench.rounds
    hooks = ("on_train_batch_start", "on_train_batch_end", "on_train_end")

    class Interleave(Callback):
        def __init__(self) -> None:
            self.plain: PlainLoop | None = None
            self.clock: Callable[[], float] = time.perf_counter
            self.started = 0  # Lightning iterations started before the current one
            self.prev: float | None = None
            self.first: dict[str, torch.Tensor] = {}

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if bench.adam != "module":  # the module's own optimizers, with another Adam implementation
                configure = pl_module.configure_optimizers

                def configure_optimizers() -> Any:
                    return [rebuild_optimizer(o, _identity(o), **ADAM_VARIANTS[bench.adam]) for o in configure()]

                pl_module.configure_optimizers = configure_optimizers

        def _plain_loop(self, trainer: Any, pl_module: Any, adam: str | None = None) -> PlainLoop:
            # A second copy of the DataModule's own training loader: the batches Lightning gets, in the same order.
            loader = trainer.datamodule.train_dataloader()
            return PlainLoop(pl_module, trainer.optimizers, loader, precision=bench.precision, adam=adam)

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            timings.module = pl_module
            self.plain = self._plain_loop(trainer, pl_module)  # copies from before Lightning's first update
            self.clock = make_clock(pl_module.device)
            module_end = pl_module.on_train_end

            def on_train_end() -> None:
                self.finish(trainer, pl_module)
                module_end()

            # Instance attributes shadow the module's class hooks; a new list leaves the one being iterated intact.
            pl_module.on_train_batch_start, pl_module.on_train_batch_end = self.batch_start, self.batch_end
            pl_module.on_train_end = on_train_end
            trainer.callbacks = [cb for cb in trainer.callbacks if cb is not self]

        def batch_start(self, batch: Any, batch_idx: int) -> None:
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

        def batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.started == 1:  # the module's first iteration, to compare with the plain loop's
                self.first = snapshot(timings.module.generator, timings.module.discriminator)

        def _check_first_iteration(self) -> None:
            # Same initial weights, batch and per-iteration seed: the plain loop's first iteration must land on the
            # module's weights after its first iteration (up to rounding), which checks that both do the same work.
            assert self.plain is not None
            self.plain.step(self.plain.next_batch())
            after = snapshot(self.plain.G, self.plain.D)
            diff = max((after[k] - v).abs().max().item() for k, v in self.first.items()) if self.first else None
            timings.check = {"max_abs_diff": diff, "tensors": len(after)}

        def finish(self, trainer: Any, pl_module: Any) -> None:
            # Before the Trainer's teardown, which may move the module off the accelerator.
            for name in hooks:
                vars(pl_module).pop(name, None)
            if bench.adam_sweep:
                loops = {name: self._plain_loop(trainer, pl_module, name) for name in ADAM_VARIANTS}
                timings.adam_sweep = adam_sweep(bench, loops)

    return Interleave()


def adam_sweep(bench: BenchConfig, loops: dict[str, PlainLoop]) -> dict[str, float]:
    """The plain loop's ms/iteration with each Adam implementation: interleaved blocks, median of block means."""
    clock = make_clock(next(iter(loops.values())).device)
    means: dict[str, list[float]] = {name: [] for name in loops}
    for loop in loops.values():
        loop.run(bench.warmup, clock)
    for r in range(bench.rounds):
        for name in loops if r % 2 == 0 else reversed(loops):
            means[name].append(statistics.fmean(loops[name].run(bench.iters, clock)))
    return {name: 1e3 * statistics.median(m) for name, m in means.items()}


# ---------------------------------------------------------------------------------------------------- the run
def cli_argv(bench: BenchConfig, data_dir: str, log_dir: str) -> list[str]:
    """`scripts/train.py` flags for this benchmark; everything else stays at the CLI's defaults."""
    iterations = bench.warmup + bench.rounds * bench.iters + 1  # +1: the last block's time ends at the next batch start
    devices = "1" if bench.device is None or bench.accelerator == "cpu" else f"{bench.device},"
    argv = [
        "--model", bench.model, "--batch-size", str(bench.batch_size), "--loss", bench.loss,
        "--precision", bench.precision, "--accelerator", bench.accelerator, "--devices", devices,
        "--seed", str(bench.seed), "--data-dir", data_dir, "--no-download", "--log-dir", log_dir,
        "--max-steps", str(iterations),
    ]  # fmt: skip
    for flag in ("d_steps", "image_size", "ngf", "ndf"):
        if getattr(bench, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(bench, flag))]
    for flag in ("conditional", "infogan", "channels_last", "compile", "data_on_device"):
        argv += [f"--{flag.replace('_', '-')}"] * getattr(bench, flag)
    return argv


def _validate(bench: BenchConfig) -> None:
    for name in ("iters", "rounds", "warmup", "batch_size", "threads", "image_size", "ngf", "ndf"):
        value = getattr(bench, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if bench.device is not None and bench.device < 0:
        raise ConfigError(f"--device must be >= 0, got {bench.device}")
    if bench.synthetic and bench.data_dir is not None:
        raise ConfigError("--synthetic and --data-dir exclude each other")
    if bench.data_dir is not None and not has_mnist(bench.data_dir):
        raise DataError(f"no MNIST under {Path(bench.data_dir) / 'MNIST' / 'raw'}; fix --data-dir or use --synthetic")


def run_benchmark(bench: BenchConfig) -> dict[str, Any]:
    """Run `cli.run` with the interleaving callback; returns the report (see `summarize`)."""
    from gan_lightning.commands import train as cli

    _validate(bench)
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
    diffs = [x - y for x, y in zip(a["block_mean_ms"], b["block_mean_ms"], strict=True)]
    return {
        "config": {**vars(bench), **info},
        "lightning": a,
        "plain": b,
        "round_ratios": ratios,
        "round_diffs_ms": diffs,
        # the fixed cost per iteration, paired like the ratio: median of adjacent blocks' difference
        "overhead_ms": statistics.median(diffs),
        "median_iteration_ratio": a["median_ms"] / b["median_ms"],
        "first_iteration_check": timings.check,
        "overhead_ratio": statistics.median(ratios),
    }


def format_report(report: dict[str, Any]) -> str:
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
    p.add_argument("--model", default="mlp", choices=MODELS.names(), help="architecture (default mlp)")
    p.add_argument("--batch-size", type=int, default=128, help="images per D step (default 128)")
    p.add_argument("--loss", default="bce", choices=OBJECTIVES.names(), help="adversarial loss (default bce)")
    p.add_argument("--d-steps", type=int, help="D updates per iteration (default: the loss's)")
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
    p.add_argument("--accelerator", default="auto", help="cpu, cuda (gpu) or auto (default auto)")
    p.add_argument("--device", type=int, help="device index (default: the first)")
    p.add_argument("--precision", default="32-true", choices=PRECISIONS, help="default 32-true")
    p.add_argument(
        "--data-dir",
        help="MNIST root (DIR/MNIST/raw); default: the CLI's data dir when it holds MNIST, else synthetic data",
    )
    p.add_argument("--synthetic", action="store_true", help="random images in MNIST's shape even if MNIST is there")
    p.add_argument("--threads", type=int, help="torch.set_num_threads for both loops (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
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
    return run_command(build_parser(), run, argv)
