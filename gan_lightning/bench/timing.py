"""How the overhead benchmark times both loops: a run's settings (`BenchConfig`), the callback that interleaves
the plain loop's blocks with Lightning's iterations, the Adam sweep, and the medians of the report (`summarize`).

Both run in one process, interleaved: the plain loop runs in blocks between Lightning's blocks, so Trainer
start-up is excluded and drifts of the machine hit both alike. The timing rides on the module's own
`on_train_batch_start` hook (the callback passed to `cli.run` moves it there and leaves the callback list, so the
measured run has exactly `scripts/train.py`'s callbacks). Lightning's time per iteration is the wall time from
one batch start to the next (data fetch, hooks, training step, logging, progress bar, callbacks: the whole cycle)
with the plain blocks cut out; the plain loop's is the time of one iteration including its own data fetch. On CUDA
the device is synchronized at the start and the end of every timed block only, so the host queues work ahead as in
training (a synchronization per iteration would remove that overlap and slow the faster loop the most): block
means are the device's time, single iterations' times are host times in between. `--channels-last` and `--compile`
apply to both loops (the plain loop compiles its own copies of the networks).

With a time budget (`budget_s`), the warm-up's iterations give the cost of one iteration of each loop, and the
timed blocks get fewer iterations (then fewer rounds) when the planned ones would end after it; the run then stops
once both loops' blocks are timed (`trainer.should_stop`), and the report says how many it timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gan_lightning.bench.plain_loop import ADAM_VARIANTS, PlainLoop, rebuild_optimizer, snapshot


@dataclass
class BenchConfig:
    """A benchmark run's settings: the command's flags, one field each."""

    model: str | None = "mlp"  # None with a preset: the preset's (likewise batch_size and loss)
    batch_size: int | None = 128
    loss: str | None = "bce"
    preset: str | None = None
    d_steps: int | None = None
    conditional: bool = False
    infogan: bool = False
    accumulate: int | None = None  # micro-batches per update (`--accumulate`); None: the CLI's (or preset's)
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
    budget_s: float | None = None  # from run_benchmark's start: fewer timed iterations when the planned would not fit


@dataclass
class Timings:
    """What the interleaved run measured: both loops' seconds per iteration, block by block, and its checks."""

    lightning: list[list[float]] = field(default_factory=list)  # per block, seconds per iteration
    plain: list[list[float]] = field(default_factory=list)
    threads_seen: set[int] = field(default_factory=set)
    check: dict[str, Any] = field(default_factory=dict)
    adam_sweep: dict[str, float] = field(default_factory=dict)
    module: Any = None
    device: str = ""  # the module's, read at train start (the Trainer's teardown may move it to the CPU)
    iters: int = 0  # per timed block and
    rounds: int = 0  # blocks per loop, as run (fewer than planned under a time budget)


def make_clock(device: torch.device) -> Callable[[], float]:
    """perf_counter, after synchronizing the device on CUDA."""
    if device.type == "cuda":

        def clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return clock
    return time.perf_counter


def _identity(opt: torch.optim.Optimizer) -> dict[int, torch.Tensor]:
    return {id(p): p for g in opt.param_groups for p in g["params"]}


def interleave_callback(bench: BenchConfig, timings: Timings, deadline: float | None = None) -> Any:
    """The callback that times Lightning's iterations and runs the plain loop's blocks between them.

    It is passed to `cli.run` like any callback, but at train start it moves its per-batch work into the module's
    own batch hooks (which Lightning calls every batch anyway) and leaves the Trainer's callback list: every
    callback costs Lightning a dispatch per hook per batch, and `scripts/train.py` has no such callback.
    `deadline` (a `time.perf_counter()` value): the timed blocks are cut so that both loops' end before it.
    """
    from lightning.pytorch import Callback

    warmup = bench.warmup
    timings.iters, timings.rounds = bench.iters, bench.rounds
    hooks = ("on_train_batch_start", "on_train_batch_end", "on_train_end")

    class Interleave(Callback):
        def __init__(self) -> None:
            self.plain: PlainLoop | None = None
            self.trainer: Any = None
            self.clock: Callable[[], float] = time.perf_counter  # synchronizes the device: block boundaries only
            self.started = 0  # Lightning iterations started before the current one
            self.prev: float | None = None
            self.began = self.warm = self.check_s = 0.0
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
            timings.module, timings.device, self.trainer = pl_module, str(pl_module.device), trainer
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
            n, self.started = self.started, self.started + 1
            iters, rounds = timings.iters, timings.rounds
            # a timed block starts or ends here (and the warm-up's second iteration starts: its cost estimate)
            boundary = n == 1 or (n >= warmup and (n - warmup) % iters == 0)
            now = self.clock() if boundary else time.perf_counter()
            done = n - 1 - warmup  # index of the timed iteration that just ended
            if self.prev is not None and 0 <= done < rounds * iters:
                if done % iters == 0:
                    timings.lightning.append([])
                timings.lightning[-1].append(now - self.prev)
            timings.threads_seen.add(torch.get_num_threads())
            assert self.plain is not None
            if n == 0:
                self.began = now
            elif n == 1:
                self.warm = now
            if n == warmup:
                self._check_first_iteration()
                plain_warmup = self.plain.run(warmup - 1, self.clock)
                if deadline is not None:
                    self._fit_budget(now, plain_warmup)
            elif n > warmup and (n - warmup) % iters == 0 and len(timings.plain) < rounds:
                timings.plain.append(self.plain.run(iters, self.clock))
                if len(timings.plain) == rounds:  # both loops' blocks are timed: this iteration is the last
                    self.trainer.should_stop = True
            self.prev = self.clock() if boundary else time.perf_counter()

        def _fit_budget(self, warm_end: float, plain_warmup: list[float]) -> None:
            # The first iteration of each loop pays for compilation and autotuning: the cost of one iteration is
            # taken from the later warm-up iterations where there are any, else (conservatively) from the first.
            lightning = (warm_end - self.warm) / (warmup - 1) if warmup > 1 else warm_end - self.began
            plain = statistics.fmean(plain_warmup) if plain_warmup else self.check_s
            assert deadline is not None
            pairs = int((deadline - time.perf_counter()) / max(lightning + plain, 1e-9)) - 1  # -1: the last one
            if pairs >= timings.rounds * timings.iters:
                return
            timings.iters = max(1, min(timings.iters, pairs // timings.rounds))
            timings.rounds = max(1, min(timings.rounds, pairs // timings.iters))

        def batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.started == 1:  # the module's first iteration, to compare with the plain loop's
                self.first = snapshot(timings.module.generator, timings.module.discriminator)

        def _check_first_iteration(self) -> None:
            # Same initial weights, batch and per-iteration seed: the plain loop's first iteration must land on the
            # module's weights after its first iteration (up to rounding), which checks that both do the same work.
            assert self.plain is not None
            began = self.clock()
            self.plain.step(self.plain.next_batch())
            after = snapshot(self.plain.G, self.plain.D)
            self.check_s = self.clock() - began
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
    """The report: both loops' statistics, the paired blocks' ratios and differences, and their medians."""
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
