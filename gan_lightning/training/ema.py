"""An exponential moving average of the generator's weights, with a ramp-up, for sampling and evaluation.

Ramp-up (StyleGAN2's `ema_rampup`): the averaging horizon is at most `rampup` times the number of iterations
so far, and at most the horizon of `decay`. Without it, after 1000 updates at decay 0.999 the average still
holds 0.999^1000 = 37% of the random initial weights; with rampup 0.05 the average covers the last 5% of
training early on and reaches the full horizon of `decay` by itself.

BatchNorm: averaged weights need statistics that match them. `bn_stats` picks how the EMA generator gets them:
"recompute" (default) re-estimates them by running the averaged network in train mode on fresh latents before
it is used, as SWA does; "average" averages the running statistics like the weights; "copy" copies the raw
generator's. The choice is measured in docs/measurements.md (EMA section).
"""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Callable

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, Options

Tensor = torch.Tensor
BN_STATS = ("recompute", "average", "copy")
# torch's BatchNorm layers, by their public classes (a lazy one becomes its BatchNormNd at its first forward)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LazyBatchNorm1d,
              nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)  # fmt: skip


class EMA(nn.Module):
    """A frozen copy of `generator` tracking its weights; `module` is what sampling should use."""

    # fmt: off
    options = (
        Option("ema_decay", None, "keep an EMA of G's weights (e.g. 0.999) for sampling and metrics", type=float,
               positive=True, below=1, default_text="none"),
        Option("ema_rampup", 0.05, "EMA horizon at most this fraction of the iterations so far (StyleGAN2); 0 turns it "
               "off", minimum=0),
        Option("ema_bn_stats", "recompute", "how the EMA generator gets BatchNorm statistics (recompute: "
               "re-estimated for its weights)", choices=BN_STATS),
    )
    # fmt: on

    @classmethod
    def from_options(cls, generator: nn.Module, options: dict) -> EMA | None:
        """The EMA the declared `options` ask for, or None without `ema_decay`."""
        if options["ema_decay"] is None:
            return None
        return cls(generator, options["ema_decay"], options["ema_rampup"] or None, options["ema_bn_stats"])

    def __init__(
        self, generator: nn.Module, decay: float = 0.999, rampup: float | None = 0.05, bn_stats: str = "recompute"
    ) -> None:
        super().__init__()
        if decay is None:  # the option's "unset" means no EMA at all, which `from_options` handles
            raise ConfigError("an EMA needs a decay in (0, 1), e.g. 0.999")
        Options(self.options).validate(ema_decay=decay, ema_rampup=rampup, ema_bn_stats=bn_stats)
        self.decay, self.rampup, self.bn_stats = decay, rampup or None, bn_stats  # a rampup of 0 or None: off
        self.module = copy.deepcopy(generator).requires_grad_(False)
        self._has_bn = any(isinstance(m, BATCHNORMS) for m in self.module.modules())
        self._stale_bn = False  # whether recomputed statistics are out of date (not saved: recomputed on demand)
        self.register_load_state_dict_post_hook(self._mark_loaded)

    def beta(self, iteration: int) -> float:
        """The averaging weight kept at update number `iteration` (1-based): decay, or less while ramping up."""
        if self.rampup is None:
            return self.decay
        half_life = math.log(0.5) / math.log(self.decay)  # in iterations
        half_life = min(half_life, self.rampup * iteration)
        return 0.5 ** (1.0 / half_life) if half_life > 0 else 0.0

    @torch.no_grad()
    def update(self, generator: nn.Module, iteration: int) -> None:
        """ema <- beta * ema + (1 - beta) * G for parameters (and, with bn_stats="average", BN statistics)."""
        beta = self.beta(iteration)
        get_ema_multi_avg_fn(beta)(list(self.module.parameters()), list(generator.parameters()), None)
        weight = 1.0 - beta
        for ema_buf, buf in zip(self.module.buffers(), generator.buffers(), strict=True):
            if self.bn_stats == "average" and ema_buf.is_floating_point():
                ema_buf.lerp_(buf, weight)
            else:  # counters, and the statistics themselves under "copy" (and until recomputed)
                ema_buf.copy_(buf)
        self._stale_bn = self._has_bn and self.bn_stats == "recompute"

    @torch.no_grad()
    def recompute_bn(self, draw_inputs: Callable[[int], Tensor], batches: int = 16, batch_size: int = 256) -> None:
        """Re-estimate BatchNorm statistics of the averaged weights from `batches` batches of generator inputs."""
        bns = [m for m in self.module.modules() if isinstance(m, BATCHNORMS)]
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
            if isinstance(bn, nn.SyncBatchNorm):
                # under --sync-batchnorm this runs on rank zero alone: a synchronised forward would wait for the others
                bn.forward = types.MethodType(nn.BatchNorm2d.forward, bn)  # BatchNorm's unsynchronised forward
        was_training = self.module.training
        self.module.train()
        try:
            for _ in range(batches):
                self.module(draw_inputs(batch_size))
        finally:
            for bn, momentum in zip(bns, momenta, strict=True):
                bn.momentum = momentum
                vars(bn).pop("forward", None)
            self.module.train(was_training)
        self._stale_bn = False

    def ready(self, draw_inputs: Callable[[int], Tensor]) -> nn.Module:
        """The EMA generator, with its BatchNorm statistics brought up to date first when they are recomputed."""
        if self._stale_bn:
            self.recompute_bn(draw_inputs)
        return self.module

    def _mark_loaded(self, module: nn.Module, incompatible_keys: object) -> None:
        # statistics loaded from disk are kept for "average" and "copy"; "recompute" re-estimates them on next use
        self._stale_bn = self._has_bn and self.bn_stats == "recompute"


def adopt_ema_state(saved: dict[str, Tensor], ema: EMA | None, prefix: str = "ema.module.",
                    source: str = "generator.") -> None:  # fmt: skip
    """Resuming with the EMA switched on or off (a training setting, resume rule "warn"): a new EMA starts from
    the checkpoint's generator weights (`source`), as one started at that iteration would; a removed one's weights
    are dropped. Both with a warning, instead of a strict load refusing the checkpoint."""
    had = any(k.startswith(prefix) for k in saved)
    if ema is not None and not had:
        for key, value in ema.module.state_dict().items():
            saved[prefix + key] = saved.get(source + key, value).clone()
        rank_zero_warn("the checkpoint has no EMA of G: this run's EMA starts from its generator's weights")
    elif ema is None and had:
        for key in [k for k in saved if k.startswith(prefix)]:
            del saved[key]
        rank_zero_warn("this run has no EMA: the checkpoint's EMA generator is dropped")
