"""Training safeguards, each with its own state: the non-finite loss guard and the AMP skipped-step counter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Tensor = torch.Tensor
NOT_YET = torch.iinfo(torch.int64).max  # the rank-wise minimum of `first_bad` when no rank saw a bad loss


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; raised before any checkpoint could store the broken state."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        super().__init__(
            f"non-finite loss at iteration {iteration}: training stopped and no checkpoint was written after it. "
            "Lower --lr, try --precision 32-true or bf16-mixed, or another --loss."
        )


class FiniteGuard(nn.Module):
    """Remembers the first iteration with a non-finite loss, and raises at the next check; watching costs no sync.

    `observe` only keeps the (detached, 0-d) losses; `check`, every `check_every` iterations and before every
    checkpoint, tests them all at once: a few device ops and one host sync per check instead of per iteration.
    """

    def __init__(self, check_every: int = 10) -> None:
        super().__init__()
        self.check_every = check_every
        self.first_bad: int | None = None
        self._pending: list[tuple[int, tuple[Tensor, ...]]] = []  # (iteration, losses) since the last check

    @property
    def unchecked(self) -> tuple[int, ...]:
        """The iterations observed since the last check, whose losses the next check tests."""
        return tuple(it for it, _ in self._pending)

    def observe(self, iteration: int, *losses: Tensor) -> None:
        """Keep `losses` (detached) of `iteration` for the next check (no device op, no host sync)."""
        self._pending.append((iteration, losses))

    def step(self, iteration: int, losses: tuple[Tensor, ...], strategy: Any = None) -> None:
        """`observe` every iteration, `check` every `check_every` iterations."""
        self.observe(iteration, *losses)
        if iteration % self.check_every == 0:
            self.check(strategy)

    def check(self, strategy: Any = None) -> None:
        """Raise `NonFiniteLossError` if a loss so far was non-finite; all ranks raise together (one host sync)."""
        pending, self._pending = self._pending, []
        if pending and self.first_bad is None:
            # every loss of every pending iteration in one test and one transfer
            finite = iter(torch.isfinite(torch.stack([loss.float() for _, ls in pending for loss in ls])).tolist())
            self.first_bad = next((it for it, ls in pending if not all([next(finite) for _ in ls])), None)
        first = self.first_bad
        if strategy is not None and strategy.world_size > 1:
            # every rank must raise together, or the others would wait forever in the next collective
            local = torch.tensor(NOT_YET if first is None else first, device=strategy.root_device)
            first = int(strategy.reduce(local, reduce_op="min"))
            first = None if first == NOT_YET else first
        if first is not None:
            raise NonFiniteLossError(first)


class AmpSkipCounter(nn.Module):
    """Counts optimizer steps that a 16-mixed gradient scaler skipped for inf/NaN gradients, on the device; the
    count is checkpointed, so a resumed run's `train/amp_skipped_steps` goes on from it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("skipped", torch.tensor(0))
        self.register_load_state_dict_pre_hook(count_from_zero_if_unrecorded)
        self._scale_before: Tensor | None = None  # reused every step: no allocation per step
        self._lowered: Tensor | None = None

    @property
    def scale_before(self) -> Tensor | None:
        """The loss scale before the last counted step, on the scaler's device (None before the first one)."""
        return self._scale_before

    @property
    def last_skipped(self) -> Tensor | None:
        """Whether the last counted step was skipped, a 0-d bool on the scaler's device (None before the first)."""
        return self._lowered

    def step(self, scaler: Any, step: Callable[..., Any], *args: Any) -> None:
        """`step(*args)`, an optimizer step ending in `scaler.update()`, counted as skipped when the scale dropped."""
        scale = scaler._scale if scaler is not None else None
        if scale is None:
            step(*args)
            return
        if self._scale_before is None or self._scale_before.device != scale.device:
            self._scale_before, self._lowered = torch.empty_like(scale), torch.empty_like(scale, dtype=torch.bool)
        self._scale_before.copy_(scale)
        step(*args)
        # update() (Lightning's, after every optimizer step, or DirectUpdate's) lowers the scale exactly when that
        # step found inf/NaN gradients and was skipped
        torch.lt(scaler._scale, self._scale_before, out=self._lowered)
        self.skipped.add_(self._lowered)


def count_from_zero_if_unrecorded(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints from before the count was saved load with a count of 0."""
    state_dict.setdefault(prefix + "skipped", torch.zeros_like(module.skipped))
