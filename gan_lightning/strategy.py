"""How the GAN's optimizer steps meet Lightning's strategy and precision plugins.

`PerNetworkDDPStrategy` (`--strategy ddp_per_network`): DDP with the generator and the discriminator in separate
DDP wrappers, so each phase all-reduces only the gradients of the network it trains (the idea of Lightning's
`MultiModelDDPStrategy`). One wrapper around the whole module, as `ddp_find_unused_parameters_true` does, has
to all-reduce both networks in every phase, the idle one's gradients as zeros, after a graph walk that finds them.

`DirectUpdate`: what `manual_backward` plus `LightningOptimizer.step` do (the strategy's backward hooks, the
precision plugin's loss scaling and scaler step, Lightning's optimizer-step count) without the six per-step
callback and module hook dispatches around them; used only when no callback or module overrides those hooks.

`IdleHooks`: the per-batch hooks that a callback or the module leaves at the base class's no-op, hidden from
Lightning's dispatch for one fit. `RuntimeCudaCheck`: on a machine without a GPU, `torch.cuda.is_available()`
without reloading NVML on every optimizer step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.overrides.distributed import _register_ddp_comm_hook, _sync_module_states, prepare_for_backward
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy, Strategy, StrategyRegistry
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gan_lightning.guards import AmpSkipCounter

Tensor = torch.Tensor
STRATEGY_NAME = "ddp_per_network"
# The hooks Lightning runs inside `manual_backward` and `LightningOptimizer.step`; overriding any of them (in a
# callback or in the module) keeps Lightning's own path, so the override still runs.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
# The hooks Lightning's training loop dispatches on every batch to each callback and to the module.
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")


class PerNetworkDDPStrategy(DDPStrategy):
    """DDP with one wrapper per network the module lists in `ddp_networks()`; each backward syncs only its own.

    The wrappers are not submodules, so checkpoints keep a single-device run's keys, and their `forward` is never
    called: the networks run as they are and, before each backward, the reducer of the network whose parameters
    require grad is armed (Lightning's own manual-optimization `prepare_for_backward`, per network). Skipping the
    wrappers' forward also means no buffer broadcast per forward (D runs two to four times per update), D can be
    called with frozen parameters in the G phase without arming its reducer, and R1/R2's inner `autograd.grad`
    w.r.t. the images reaches no parameter, so no reducer hook fires before the outer backward. Buffers (BatchNorm
    statistics) are broadcast from rank zero once, at setup; afterwards each rank keeps its own (the single wrapper
    re-broadcast rank zero's at every training step), and rank zero's, the ones checkpoints and grids use, are the
    same either way.
    Without `find_unused_parameters=True`, every parameter of a network must get a gradient in its phase.
    A module without `ddp_networks()` gets Lightning's single wrapper, with a one-line notice.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wrappers: list[DistributedDataParallel] = []
        self._trainable: list[list[nn.Parameter]] = []

    def configure_ddp(self) -> None:
        """Wrap each of the module's networks in its own DDP (falling back to one wrapper for other modules)."""
        module = self.model
        assert isinstance(module, LightningModule)
        networks = getattr(module, "ddp_networks", None)
        if networks is None:
            rank_zero_info(f"{STRATEGY_NAME}: {type(module).__name__} has no ddp_networks(); wrapping the whole "
                           "module in one DDP with find_unused_parameters=True")  # fmt: skip
            self._ddp_kwargs["find_unused_parameters"] = True
            super().configure_ddp()
            return
        # Everything outside the wrapped networks (the EMA copy, counters) starts equal on every rank too.
        _sync_module_states(module)
        device_ids = self.determine_ddp_device_ids()
        ctx = torch.cuda.stream(torch.cuda.Stream()) if device_ids is not None else nullcontext()
        with ctx:
            for net in networks():
                trainable = [p for p in net.parameters() if p.requires_grad]
                if trainable:  # DDP refuses a network with nothing to train
                    self.wrappers.append(DistributedDataParallel(net, device_ids=device_ids, **self._ddp_kwargs))
                    self._trainable.append(trainable)
        self._register_ddp_hooks()

    def _register_ddp_hooks(self) -> None:
        if not self.wrappers:
            super()._register_ddp_hooks()
        elif self.root_device.type == "cuda" and self._ddp_comm_hook is not None:  # as Lightning: comm hooks on CUDA
            for wrapper in self.wrappers:
                _register_ddp_comm_hook(
                    model=wrapper,
                    ddp_comm_state=self._ddp_comm_state,
                    ddp_comm_hook=self._ddp_comm_hook,
                    ddp_comm_wrapper=self._ddp_comm_wrapper,
                )

    def pre_backward(self, closure_loss: Tensor) -> None:
        """Arm the reducer of each network whose parameters require grad, i.e. the one this phase trains."""
        if not self.wrappers:
            return super().pre_backward(closure_loss)
        for wrapper, params in zip(self.wrappers, self._trainable, strict=True):
            if any(p.requires_grad for p in params):
                prepare_for_backward(wrapper, closure_loss)
        return None

    def post_backward(self, closure_loss: Tensor) -> None:
        """Nothing to flush: the reducers all-reduce during backward (no static-graph delay)."""
        if not self.wrappers:
            super().post_backward(closure_loss)

    def teardown(self) -> None:
        """Drop the wrappers (the networks stay in the module as they are)."""
        self.wrappers, self._trainable = [], []
        super().teardown()


if STRATEGY_NAME not in StrategyRegistry:
    StrategyRegistry.register(
        STRATEGY_NAME,
        PerNetworkDDPStrategy,
        description="DDP with the generator and the discriminator wrapped separately: each phase syncs only its own",
        start_method="popen",
    )


class DirectUpdate:
    """`zero_grad`, `manual_backward`, `optimizer.step()` minus the per-step hook dispatches: same numerics and counts.

    Kept: the strategy's `pre_backward` / `post_backward` (DDP arms its reducers there), the precision plugin's
    loss scaling and `scaler.step` + `scaler.update()` (16-mixed; fused Adam unscales inside its kernel, other
    optimizers inside `scaler.step`), and the `LightningOptimizer` bookkeeping that counts `global_step`.
    Dropped: the `on_before_backward`, `on_after_backward` and `on_before_optimizer_step` dispatches to every
    callback and the module, and gradient clipping (which Lightning does not do under manual optimization).
    """

    def __init__(self, strategy: Strategy, scaler: torch.amp.GradScaler | None) -> None:
        self.strategy, self.scaler = strategy, scaler
        # single-device strategies leave both backward hooks empty: skip the calls
        self._hooks = overrides(strategy, Strategy, "pre_backward", "post_backward")

    @classmethod
    def for_trainer(cls, trainer: Trainer) -> DirectUpdate | None:
        """The direct path for `trainer`, or None when a plugin, strategy or hook override needs Lightning's."""
        plugin, strategy, module = trainer.precision_plugin, trainer.strategy, trainer.lightning_module
        if type(plugin) not in (Precision, MixedPrecision):  # e.g. double, true half, DeepSpeed, FSDP, bitsandbytes
            return None
        if not isinstance(strategy, (SingleDeviceStrategy, DDPStrategy)) or overrides(strategy, Strategy, "backward"):
            return None
        if getattr(strategy, "_model_averager", None) is not None:  # post-local SGD averages in optimizer_step
            return None
        if overrides(module, LightningModule, "backward", *STEP_HOOKS):
            return None
        if any(overrides(cb, Callback, *STEP_HOOKS) for cb in trainer.callbacks):
            return None
        return cls(strategy, getattr(plugin, "scaler", None))

    def update(self, optimizer: LightningOptimizer, loss: Tensor, amp: AmpSkipCounter) -> None:
        """zero_grad, backward and step of `optimizer` (a LightningOptimizer) on `loss`, counted as one step."""
        optimizer.optimizer.zero_grad(set_to_none=True)
        if self._hooks:
            self.strategy.pre_backward(loss)  # DDP arms its reducers here
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        if self._hooks:
            self.strategy.post_backward(loss)
        optimizer._on_before_step()  # manual optimization's step counter (global_step) and profiler
        if self.scaler is None:
            optimizer.optimizer.step()
        else:
            amp.step(self.scaler, self._scaled_step, optimizer.optimizer)
        optimizer._on_after_step()

    def _scaled_step(self, optimizer: torch.optim.Optimizer) -> None:
        # as Lightning's precision plugin: the scaler skips the step when the gradients hold inf/NaN, then updates
        self.scaler.step(optimizer)
        self.scaler.update()


class IdleHooks:
    """Hides the per-batch hooks nobody overrides from Lightning's dispatch, for the length of one fit.

    Lightning calls a callback's or the module's hook only when `getattr(obj, hook)` is callable, but it calls
    base-class no-ops too, each inside a profiler context with the module's `_current_fx_name` set and reset (and,
    for a ModelCheckpoint, its state key rebuilt): a few hundred dispatches of nothing per second of training.
    `hide` shadows each such hook with an instance attribute `None`, which Lightning's callable check skips;
    `restore` removes the shadows. A hook that an object's class or the object itself defines is left alone. After
    a fit that ended in an exception the shadows stay (Lightning has no module hook there); they only ever stand
    for no-ops, and the next `hide` starts with `restore`.
    """

    def __init__(self) -> None:
        self._hidden: list[tuple[Any, str]] = []

    def hide(self, trainer: Trainer) -> None:
        """Shadow the idle per-batch hooks of `trainer`'s callbacks and module."""
        self.restore()
        targets = [(cb, Callback) for cb in trainer.callbacks] + [(trainer.lightning_module, LightningModule)]
        for obj, base in targets:
            for name in BATCH_HOOKS:
                if name in vars(obj) or overrides(obj, base, name):
                    continue
                try:
                    setattr(obj, name, None)
                except AttributeError:  # __slots__ or a read-only property: leave it to Lightning's dispatch
                    continue
                self._hidden.append((obj, name))

    def restore(self) -> None:
        """Remove the shadows: every hook is the class's again."""
        for obj, name in self._hidden:
            if vars(obj).get(name, False) is None:
                delattr(obj, name)
        self._hidden.clear()


class RuntimeCudaCheck:
    """Undoes, on a machine without a CUDA device, the NVML-based `torch.cuda.is_available()` Lightning switches on.

    Importing Lightning sets `PYTORCH_NVML_BASED_CUDA_CHECK=1`, so that asking whether CUDA is available never
    initializes the CUDA driver before Lightning forks processes. Until CUDA is initialized, torch then answers by
    loading and initializing NVML anew on every call, and Adam asks on every step (its CUDA-graph capture check): on
    a machine without a GPU every optimizer step pays for that, which a plain PyTorch script does not. Where there
    is no device there is no driver state a fork could break, so `apply` removes the variable (torch asks the CUDA
    runtime, which answers at once) and `restore` puts it back; with a device present nothing changes.
    """

    VARIABLE = "PYTORCH_NVML_BASED_CUDA_CHECK"

    def __init__(self) -> None:
        self._saved: str | None = None

    def apply(self) -> None:
        """Use the runtime check until `restore`, if this machine has no CUDA device."""
        if self._saved is None and self.VARIABLE in os.environ and torch.cuda.device_count() == 0:
            self._saved = os.environ.pop(self.VARIABLE)

    def restore(self) -> None:
        """Put Lightning's setting back."""
        if self._saved is not None:
            os.environ[self.VARIABLE] = self._saved
            self._saved = None


def overrides(obj: Any, base: type, *names: str) -> bool:
    """Whether `obj`'s class defines any of `names` differently from `base`."""
    return any(getattr(type(obj), name, None) is not getattr(base, name, None) for name in names)


def ddp_wrappers(strategy: Strategy) -> Sequence[DistributedDataParallel]:
    """The DDP modules that all-reduce gradients under `strategy`: one per network, one for the module, or none."""
    if isinstance(strategy, PerNetworkDDPStrategy) and strategy.wrappers:
        return strategy.wrappers
    model = getattr(strategy, "model", None)
    return [model] if isinstance(model, DistributedDataParallel) else []
