"""The per-network DDP strategy.

`PerNetworkDDPStrategy` (`--strategy ddp_per_network`): DDP with the generator and the discriminator in separate
DDP wrappers, so each phase all-reduces only the gradients of the network it trains (the idea of Lightning's
`MultiModelDDPStrategy`). One wrapper around the whole module, as `ddp_find_unused_parameters_true` does, has
to all-reduce both networks in every phase, the idle one's gradients as zeros, after a graph walk that finds them.

Lightning's DDP strategy has no hook for several wrappers, so this file subclasses it and uses the private helpers
its own `configure_ddp` uses (`_sync_module_states`, `_register_ddp_comm_hook`, `_ddp_kwargs`, the comm-hook
state): the one place in the package that touches Lightning's internals, bounded by `setup.cfg`'s `lightning`
range, which is the range CI tests.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.overrides.distributed import _register_ddp_comm_hook, _sync_module_states, prepare_for_backward
from lightning.pytorch.strategies import DDPStrategy, Strategy, StrategyRegistry
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn.parallel import DistributedDataParallel

Tensor = torch.Tensor
STRATEGY_NAME = "ddp_per_network"


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

    @contextmanager
    def block_backward_sync(self) -> Generator[None, None, None]:
        """No gradient all-reduce for backward passes inside (accumulation's micro-batches before the last): every
        wrapper's `no_sync()`, so its reducer is not armed and gradients accumulate locally until a synced backward."""
        if not self.wrappers:
            with super().block_backward_sync():
                yield
            return
        with ExitStack() as stack:
            for wrapper in self.wrappers:
                stack.enter_context(wrapper.no_sync())
            yield

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


def ddp_wrappers(strategy: Strategy) -> Sequence[DistributedDataParallel]:
    """The DDP modules that all-reduce gradients under `strategy`: one per network, one for the module, or none."""
    if isinstance(strategy, PerNetworkDDPStrategy) and strategy.wrappers:
        return strategy.wrappers
    model = getattr(strategy, "model", None)
    return [model] if isinstance(model, DistributedDataParallel) else []
