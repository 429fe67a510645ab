"""The regularizer interface: one phase context in, one term out.

A regularizer sees what NVlabs' `StyleGAN2Loss.accumulate_gradients` sees in a phase (`PhaseContext`): G, D, the
real batch, the latents, the augmentation (through `discriminate`), the noise stream, the step, and what the
phase already computed (D's live outputs on the real and fake batch, the fakes). It returns a `Term`: the loss to
add and the statistics to log (each as `train/<name>`). That is enough for R1/R2 (`zero_centered.py`), LeCam
(`lecam.py`), consistency regularization (D on transformed reals) and path-length regularization (G on latents).

Laziness is shared: a regularizer whose `interval(phase)` is N > 1 runs on every N-th update of that phase, its loss
multiplied by N (StyleGAN2's lazy regularization). A regularizer that needs D's gradient with respect to its input
lists the input in `input_grads` ("real", "fake"): the phase then makes that input require grad before D runs, so
the term can differentiate the phase's own D output (one forward, as NVlabs' R1; under mixed precision R1/R2 take
their own full-precision forward instead, with a fresh augmentation draw, as the reference's lazy R1 pass does).

State kept across iterations lives in buffers: saved in every checkpoint and restored exactly on resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from gan_lightning.core.options import Option
from gan_lightning.core.registry import Registry
from gan_lightning.models.base import generate_images

if TYPE_CHECKING:
    from gan_lightning.models.heads import CriticOutput
    from gan_lightning.training.batch import Batch
    from gan_lightning.training.latents import Latents

Tensor = torch.Tensor


@dataclass
class PhaseContext:
    """What one phase of one update saw and computed, for its regularizers.

    `phase` is "d" or "g"; `step` the D update's index in the D phase, the iteration in the G phase. In the D phase
    `real_images` and `fake_images` are D's inputs (detached; requiring grad when a regularizer asked) and
    `real_out` / `fake_out` D's live outputs on them (its terms backpropagate into D). In the G phase `fake_images`
    are G's live output, `fake_out` D's live output on them (terms backpropagate into G through D, whose parameters
    are frozen) and `real_out`, when the objective compares with reals, is detached.
    """

    phase: str
    step: int
    real_out: CriticOutput | None = None
    fake_out: CriticOutput | None = None
    real: Batch | None = None
    latents: Latents | None = None
    real_images: Tensor | None = None
    fake_images: Tensor | None = None
    G: nn.Module | None = None
    D: nn.Module | None = None
    rng: torch.Generator | None = None
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = field(default=None, repr=False)

    @property
    def real_logits(self) -> Tensor | None:
        """D's logits on the real batch (B,), or None when the phase did not compute them."""
        return None if self.real_out is None else self.real_out.logits

    @property
    def fake_logits(self) -> Tensor | None:
        """D's logits on the fakes (B,)."""
        return None if self.fake_out is None else self.fake_out.logits

    def discriminate(self, x: Tensor, labels: Tensor | None = None, augment: bool = True) -> CriticOutput:
        """D on images `x` (B, C, H, W), through the run's augmentation unless `augment=False`; draws from `rng`."""
        if augment and self.augment is not None:
            x = self.augment(x, self.rng)
        return self.D(x, labels)

    def generate(self, latents: Latents) -> Tensor:
        """G's images (B, C, H, W) for `latents` (gradients flow into G in the G phase); draws from `rng`."""
        return generate_images(self.G, latents.input, self.rng)


class Term(NamedTuple):
    """A regularizer's contribution: the loss to add (None: nothing this step) and statistics to log."""

    loss: Tensor | None
    stats: dict[str, Tensor]


class Regularizer(nn.Module):
    """Base class: override `d_term` and/or `g_term`; declare `options`; keep state in buffers."""

    options: tuple[Option, ...] = ()
    input_grads: tuple[str, ...] = ()  # D-phase inputs ("real", "fake") whose gradient the D term differentiates

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Regularizer | None:
        """The regularizer the declared `options` ask for, or None when they switch it off."""
        return None

    def check_models(self, G: nn.Module, D: nn.Module) -> None:
        """One-line ConfigError when this regularizer cannot apply to these networks (checked when the GAN is built)."""

    def interval(self, phase: str) -> int:
        """Run on every N-th update of `phase` ("d" or "g"), the loss times N; 1: every update."""
        return 1

    def d_term(self, ctx: PhaseContext) -> Term:
        """The D phase's term."""
        return Term(None, {})

    def g_term(self, ctx: PhaseContext) -> Term:
        """The G phase's term."""
        return Term(None, {})

    def end_update(self, step: int) -> None:
        """After D update `step` and all its micro-batches: move per-update state once (LeCam's anchors)."""

    def end_g_update(self, step: int) -> None:
        """After G update `step` and all its micro-batches: move per-update state once (path length's mean)."""


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def build_regularizers(options: Mapping[str, Any]) -> list[Regularizer]:
    """Every registered regularizer the declared `options` switch on, in registry order."""
    built = (REGULARIZERS.get(name).from_options(options) for name in REGULARIZERS.names())
    return [reg for reg in built if reg is not None]


def regularizer_keys(regularizers: Sequence[Regularizer]) -> dict[str, Regularizer]:
    """`regularizers` by name: the name each is registered under (its class's name when it is not registered), a
    count appended to repeats. The names key their state in checkpoints, whatever else is switched on."""
    registered = {REGULARIZERS.get(name): name for name in REGULARIZERS.names()}
    keyed: dict[str, Regularizer] = {}
    for reg in regularizers:
        base = registered.get(type(reg), type(reg).__name__)
        key, n = base, 1
        while key in keyed:
            n += 1
            key = f"{base}_{n}"
        keyed[key] = reg
    return keyed


def due(regularizer: Regularizer, phase: str, step: int) -> int:
    """0 when `regularizer` skips this `step` of `phase`, else the factor its loss is scaled by (its interval)."""
    every = regularizer.interval(phase)
    return every if step % every == 0 else 0
