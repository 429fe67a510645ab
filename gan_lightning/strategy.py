"""How the GAN's optimizer steps meet Lightning's strategy and precision plugins.

`PerNetworkDDPStrategy` (`--strategy ddp_per_network`): DDP with the generator and the discriminator in separate
DDP wrappers, so each phase all-reduces only the gradients of the network it trains (the idea of Lightning's
`MultiModelDDPStrategy`). One wrapper around the whole module, as `ddp_find_unused_parameters_true` does, has
to all-reduce both networks in every phase, the idle one's gradients as zeros, after a graph walk that finds them.

`DirectUpdate`: what `manual_backward` plus `LightningOptimizer.step` do (the strategy's backward hooks, the
precision plugin's loss scaling and scaler step, Lightning's optimizer-step count) without the six per-step
callback and module hook dispatches around them; used only when no callback or module overrides those hooks.

`drop_unloadable_nvml_check`: where NVML cannot be loaded, unset the NVML-based CUDA check that importing Lightning
switches on, which there only adds a failing library load to every optimizer step.
"""

from __future__ import annotations

import ctypes
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
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


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
        self._hooks = _overrides(strategy, Strategy, "pre_backward", "post_backward")

    @classmethod
    def for_trainer(cls, trainer: Trainer) -> DirectUpdate | None:
        """The direct path for `trainer`, or None when a plugin, strategy or hook override needs Lightning's."""
        plugin, strategy, module = trainer.precision_plugin, trainer.strategy, trainer.lightning_module
        if type(plugin) not in (Precision, MixedPrecision):  # e.g. double, true half, DeepSpeed, FSDP, bitsandbytes
            return None
        if not isinstance(strategy, (SingleDeviceStrategy, DDPStrategy)) or _overrides(strategy, Strategy, "backward"):
            return None
        if getattr(strategy, "_model_averager", None) is not None:  # post-local SGD averages in optimizer_step
            return None
        if _overrides(module, LightningModule, "backward", *STEP_HOOKS):
            return None
        if any(_overrides(cb, Callback, *STEP_HOOKS) for cb in trainer.callbacks):
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


def drop_unloadable_nvml_check() -> bool:
    """Unset `PYTORCH_NVML_BASED_CUDA_CHECK` where NVML cannot be loaded (no NVIDIA driver); True if it was unset.

    Importing Lightning sets it, so that `torch.cuda.is_available()` asks NVML instead of initializing CUDA before
    Lightning forks. Adam asks on every step (its CUDA-graph capture check), and until CUDA is initialized torch
    loads NVML anew for each answer; where that load fails it falls back to the CUDA runtime's device count, which
    is the answer, and the fork behaviour, it gives without the variable. There the variable only adds a failing
    library load to every optimizer step (a plain PyTorch script, without it, does not pay that), so unsetting it
    changes nothing else. Where NVML loads (a machine with the driver) the variable stays.
    """
    if os.environ.get(NVML_CHECK) != "1":
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # the library torch's NVML check loads
    except OSError:
        del os.environ[NVML_CHECK]
        return True
    return False


def _overrides(obj: Any, base: type, *names: str) -> bool:
    """Whether `obj`'s class defines any of `names` differently from `base` (the class only, not the instance)."""
    return any(getattr(type(obj), name, None) is not getattr(base, name, None) for name in names)


def ddp_wrappers(strategy: Strategy) -> Sequence[DistributedDataParallel]:
    """The DDP modules that all-reduce gradients under `strategy`: one per network, one for the module, or none."""
    if isinstance(strategy, PerNetworkDDPStrategy) and strategy.wrappers:
        return strategy.wrappers
    model = getattr(strategy, "model", None)
    return [model] if isinstance(model, DistributedDataParallel) else []


# Lightning is imported above, so its setting is in place: drop it once, for the process, where it only costs.
NVML_CHECK_DROPPED = drop_unloadable_nvml_check()
