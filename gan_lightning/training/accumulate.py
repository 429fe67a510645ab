"""Gradient accumulation (`--accumulate N`): each D update and the G update backpropagate N micro-batches, then
step once. Lightning's `accumulate_grad_batches` does not apply under manual optimization, so the module does it.

The phase's real chunk and the latents drawn for the whole chunk (drawn first, then split, so an accumulated run
sees the same noise as the full-batch run) are cut into N equal micro-batches; each micro-batch's loss / N is
backpropagated at once, so only one micro-batch's graph is alive at a time, and the gradients add up to the
full batch's. For networks without BatchNorm and losses that are means over the batch (this package's but
`ragan`, penalties included) the update is the full batch's up to float rounding. What differs:

- BatchNorm normalises each micro-batch with its own statistics, so with BatchNorm the update is not the full
  batch's (as StyleGAN2-ADA's `--batch-gpu` and StudioGAN's `acml_steps`); its running statistics see N updates.
  So does anything else computed across the batch: `ragan`'s mean logit, StyleGAN2's minibatch standard
  deviation, path length's first 1/`pl_batch_shrink` (of each micro-batch), LeCam's term (each micro-batch's
  uses the anchors moved by its own means; `lecam.py`).
- The objective runs once per micro-batch: stateful regularizers and augmentations see every micro-batch (with
  the same step index) and move their state once per update (`Objective.end_d_update`, `end_g_update`), and
  randomness drawn inside the objective (augmentation parameters, the WGAN-GP interpolation) comes from the same
  per-iteration stream in another order than the full batch's.
- Logged statistics: scalars are the mean over the micro-batches (the full batch's mean loss), per-sample ones
  (D's logits) are concatenated.

Under DDP every micro-batch but the last backpropagates inside the strategy's `block_backward_sync()` (public
Lightning API; `ddp_per_network` enters each network's `no_sync()`), so gradients are all-reduced once per update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option
from gan_lightning.training.ema import BATCHNORMS
from gan_lightning.training.latents import Latents
from gan_lightning.training.objectives import Batch, PhaseLoss

Tensor = torch.Tensor
Phase = Callable[[Batch, Latents], PhaseLoss]  # a phase's loss on (real batch, latents), e.g. a bound `d_loss`

# Resume rule "warn": a resumed run may change it (say, on a device with less memory): the networks and the data
# are the same, but with BatchNorm, or randomness inside the objective, the updates differ from the checkpoint's run.
options = (
    Option("accumulate", 1, "split every D and G update into N micro-batches and add up their gradients: less "
           "memory, the full batch's update without BatchNorm (per-micro-batch statistics with it)", positive=True,
           metavar="N"),
)  # fmt: skip


def check_divisible(size: int, n: int) -> None:
    """Raise one-line ConfigError unless a phase's batch of `size` images splits into `n` equal micro-batches."""
    if size % n:
        raise ConfigError(f"--accumulate {n}: a D or G update's batch of {size} images does not split into {n} "
                          f"equal micro-batches; use a --batch-size that is a multiple of {n}")  # fmt: skip


def check_batchnorm_micro_batches(networks: dict[str, nn.Module], size: int, n: int) -> None:
    """One-line ConfigError when `n` micro-batches of a `size`-image batch leave a single image per BatchNorm batch
    in one of `networks` (by name): training-mode BatchNorm cannot normalise one value per channel."""
    if n < 2 or size // n > 1:
        return
    with_bn = [name for name, net in networks.items() if any(isinstance(m, BATCHNORMS) for m in net.modules())]
    if with_bn:
        who = " and ".join(with_bn) + (" use" if len(with_bn) > 1 else " uses")
        fits = max(d for d in range(1, size + 1) if size % d == 0 and size // d >= 2) if size >= 2 else 1
        raise ConfigError(f"--accumulate {n} splits each batch of {size} images into micro-batches of {size // n}, "
                          f"but {who} BatchNorm, which needs at least 2 images per batch; use --accumulate "
                          f"{fits} or less (a divisor of {size}), or a larger --batch-size")  # fmt: skip


def micro_batches(real: Batch, latents: Latents, n: int) -> list[tuple[Batch, Latents]]:
    """`real` and `latents` cut into `n` equal slices along the batch, paired in order."""
    check_divisible(len(real.images), n)
    parts = {f.name: getattr(latents, f.name) for f in dataclasses.fields(latents)}
    slices = {k: v.tensor_split(n) if v is not None else [None] * n for k, v in parts.items()}
    return [(chunk, Latents(**{k: s[i] for k, s in slices.items()})) for i, chunk in enumerate(real.split(n))]


def merge(parts: list[PhaseLoss]) -> PhaseLoss:
    """One phase's loss and statistics from its micro-batches': scalars averaged, per-sample tensors concatenated."""
    stats = {}
    for key in parts[0].stats:
        values = [p.stats[key] for p in parts]
        stats[key] = torch.stack(values).mean(0) if values[0].ndim == 0 else torch.cat(values)
    return PhaseLoss(torch.stack([p.loss for p in parts]).mean(), stats)


def accumulate(
    phase: Phase, real: Batch, latents: Latents, n: int, backward: Callable[[Tensor], None], strategy: Any = None
) -> PhaseLoss:
    """`backward` of `phase(real, latents)`'s loss over `n` micro-batches (each loss / n; all but the last inside
    the `strategy`'s `block_backward_sync()` where it has one); returns the phase's loss and statistics, detached
    where merged. `n == 1` is the plain single backward."""
    no_sync: Callable[[], AbstractContextManager[Any]] = getattr(strategy, "block_backward_sync", nullcontext)
    if n == 1:
        out = phase(real, latents)
        backward(out.loss)
        return out
    parts = []
    for i, (chunk, drawn) in enumerate(micro_batches(real, latents, n)):
        with no_sync() if i < n - 1 else nullcontext():
            out = phase(chunk, drawn)
            backward(out.loss / n)
        parts.append(PhaseLoss(out.loss.detach(), out.stats))  # stats are detached already: no graph is kept
    return merge(parts)
