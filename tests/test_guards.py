"""The non-finite guard defers its test to the checks (no device op per iteration) yet names the first bad
iteration; the AMP skip counter reuses its buffers."""

from __future__ import annotations

import pytest
import torch

from gan_lightning.training.guards import AmpSkipCounter, FiniteGuard, NonFiniteLossError

GOOD, NAN, INF = torch.tensor(1.0), torch.tensor(float("nan")), torch.tensor(float("inf"))


def test_the_first_bad_iteration_is_reported_at_the_next_check():
    guard = FiniteGuard(check_every=5)
    for it in range(1, 6):
        guard.step(it, (GOOD, GOOD))  # checked at 5: all finite
    guard.step(6, (GOOD, GOOD))
    guard.step(7, (NAN, GOOD))
    guard.step(8, (GOOD, INF))
    guard.step(9, (GOOD, GOOD))
    with pytest.raises(NonFiniteLossError, match="iteration 7"):
        guard.step(10, (GOOD, GOOD))
    with pytest.raises(NonFiniteLossError, match="iteration 7"):  # remembered, e.g. for the checkpoint's check
        guard.check()


def test_observing_keeps_the_losses_and_checking_releases_them():
    guard = FiniteGuard(check_every=1000)
    guard.observe(1, GOOD, GOOD)
    guard.observe(2, GOOD)  # any number of losses per iteration
    assert len(guard._pending) == 2
    guard.check()
    assert guard._pending == [] and guard.first_bad is None


def test_amp_skip_counter_counts_lowered_scales_without_new_buffers():
    class Scaler:
        def __init__(self) -> None:
            self._scale = torch.tensor(8.0)

    scaler, counter = Scaler(), AmpSkipCounter()
    counter.step(scaler, lambda: scaler._scale.mul_(0.5))  # skipped: the scale halves
    buffers = counter._scale_before, counter._lowered
    counter.step(scaler, lambda: None)  # applied: the scale stays
    counter.step(scaler, lambda: scaler._scale.mul_(2.0))  # applied: growth
    assert int(counter.skipped) == 1
    assert counter._scale_before is buffers[0] and counter._lowered is buffers[1]
    counter.step(None, lambda: None)  # no scaler (32-true, bf16-mixed): just the step
    assert int(counter.skipped) == 1
