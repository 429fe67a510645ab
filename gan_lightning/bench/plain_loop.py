"""The plain side of the Lightning overhead benchmark: `GAN.training_step` as a plain PyTorch loop (`PlainLoop`)
over copies of the module's networks, with the optimizers rebuilt for them, and `snapshot` to compare its weights with
the module's.

It runs over deep copies of the same networks (G, and D with its heads: the module's `Critic`), taken before
Lightning's first update. It has no training step of its own: it runs the module's iteration
(`training.steps.adversarial_iteration`, the D updates then the G update, with the module's latent space, objective,
regularizers and `--accumulate` micro-batches) on a generator seeded per iteration by `iteration_seed` as the
module's is. What it does without Lightning: freezing the other network with `requires_grad_` (instead of
`toggled_optimizer`), `loss.backward()`, `opt.step()` on optimizers of the module's class and settings (fused Adam,
as `GAN.configure_optimizers` asks), and fetching batches from a second copy of the DataModule's own training loader
(same dataset, batch size, collate and per-epoch permutation). What it leaves out is what is being measured:
Lightning's loop, hooks, logging, progress bar and callbacks, and the module's own bookkeeping (schedules, EMA,
finite-loss checks, step metrics).
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

import torch

from gan_lightning.training.accumulate import Phase, accumulate
from gan_lightning.training.batch import PhaseLoss
from gan_lightning.training.latents import Latents
from gan_lightning.training.objectives import Batch
from gan_lightning.training.steps import adversarial_iteration, iteration_seed, networks_to_compile

# Adam implementations to time instead of the module's own choice (`--adam module`: fused on CPU and CUDA).
ADAM_VARIANTS: dict[str, dict[str, bool | None]] = {
    "default": {"foreach": None, "fused": None},  # torch's pick: foreach kernels on CUDA, the for-loop on CPU
    "foreach": {"foreach": True, "fused": None},
    "fused": {"foreach": None, "fused": True},
}


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


@contextmanager
def frozen(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """The other network's parameters frozen for one phase, as Lightning's `toggled_optimizer` does."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


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
        self.accumulate = int(module.hparams.get("accumulate", 1))
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

    def _iteration_rng(self, iteration: int) -> torch.Generator:
        # The module's own seeding (one process, rank 0): the plain loop draws what the module draws in the same
        # iteration.
        return self.rng.manual_seed(iteration_seed(self.module.hparams.seed, 0, iteration))

    def step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration on a batch (images, or (images, labels)); returns the last (d_loss, g_loss), detached."""
        real = Batch.of(batch)
        if self.channels_last and real.images.ndim == 4:
            real = real._replace(images=real.images.contiguous(memory_format=torch.channels_last))
        iteration, self.iteration = self.iteration, self.iteration + 1
        with self.autocast():
            d, g = adversarial_iteration(
                real, iteration, G=self.G, D=self.D, latents=self.latents, objective=self.objective,
                d_steps=self.d_steps, rng=self._iteration_rng(iteration),
                update_d=partial(self.update, self.opt_d), update_g=partial(self.update, self.opt_g),
                d_phase=partial(frozen, self.g_params), g_phase=partial(frozen, self.d_params),
            )  # fmt: skip
        return d.stats["d_loss"], g.stats["g_loss"]

    def update(self, optimizer: torch.optim.Optimizer, phase: Phase, real: Batch, latents: Latents) -> PhaseLoss:
        """zero_grad, backward of `phase`'s loss over the module's `--accumulate` micro-batches, one step."""
        optimizer.zero_grad(set_to_none=True)
        out = accumulate(phase, real, latents, self.accumulate, torch.Tensor.backward)
        optimizer.step()
        return out

    def run(self, n: int, clock: Callable[[], float]) -> list[float]:
        """`n` iterations (data fetch included); the seconds each one took. `clock` (which may synchronize the
        device) is read before the first and after the last only: in between, the host queues work ahead as in
        training, so the iterations' sum is the block's time and each one's is a host time."""
        times = []
        t0 = clock()
        for i in range(n):
            self.step(self.next_batch())
            t1 = clock() if i == n - 1 else time.perf_counter()
            times.append(t1 - t0)
            t0 = t1
        return times


def snapshot(generator: torch.nn.Module, discriminator: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of both networks' floating-point parameters and buffers (BatchNorm statistics, D's heads included)."""
    state = {f"G.{k}": v for k, v in generator.state_dict().items()}
    state.update({f"D.{k}": v for k, v in discriminator.state_dict().items()})
    return {k: v.detach().float().cpu().clone() for k, v in state.items() if v.is_floating_point()}
