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
    assert guard.unchecked == (1, 2)
    guard.check()
    assert guard.unchecked == () and guard.first_bad is None


def test_amp_skip_counter_counts_lowered_scales_without_new_buffers():
    scaler, counter = torch.amp.GradScaler("cpu", init_scale=8.0), AmpSkipCounter()
    scaler.scale(GOOD)  # the scaler creates its scale tensor lazily, at its first use
    # update(new_scale) sets the scale as the real update() does: lowered after inf/NaN gradients, grown otherwise
    counter.step(scaler, lambda: scaler.update(4.0))  # skipped: the scale halves
    buffers = counter.scale_before, counter.last_skipped
    assert float(counter.scale_before) == 8.0 and bool(counter.last_skipped)
    counter.step(scaler, lambda: scaler.update(4.0))  # applied: the scale stays
    assert float(counter.scale_before) == 4.0 and not bool(counter.last_skipped)
    counter.step(scaler, lambda: scaler.update(8.0))  # applied: growth
    assert int(counter.skipped) == 1 and scaler.get_scale() == 8.0
    assert counter.scale_before is buffers[0] and counter.last_skipped is buffers[1]
    counter.step(None, lambda: None)  # no scaler (32-true, bf16-mixed): just the step
    assert int(counter.skipped) == 1


def test_the_skip_count_is_checkpointed_and_older_checkpoints_load_with_zero():
    scaler, counter = torch.amp.GradScaler("cpu", init_scale=8.0), AmpSkipCounter()
    scaler.scale(GOOD)
    counter.step(scaler, lambda: scaler.update(4.0))  # skipped
    counter.step(scaler, lambda: scaler.update(2.0))  # skipped
    parent = torch.nn.ModuleDict({"amp": counter})
    resumed = torch.nn.ModuleDict({"amp": AmpSkipCounter()})
    resumed.load_state_dict(parent.state_dict())  # strict
    assert int(resumed["amp"].skipped) == 2
    resumed.load_state_dict({})  # a checkpoint from before the count was saved: strict loading still succeeds
    assert int(resumed["amp"].skipped) == 0
