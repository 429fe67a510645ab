"""Regularizers that add a term to a phase's loss, each one component with its options and its own state.

A `Regularizer` is an `nn.Module`, so whatever it keeps across iterations (moving averages of D's outputs, say)
lives in buffers: saved in every checkpoint with the module's state and restored exactly on resume. In each phase it
receives D's live logits (not detached: its term backpropagates into D in the D phase, and into G through the fake
logits in the G phase, where the real logits, when the objective computes them, are detached), the real batch, the
latents and the step index, and returns a `Term`: the loss to add and the statistics to log (each logged as
`train/<name>`, no list to edit). Under DDP each rank updates its own buffers and rank zero's are the ones saved:
a regularizer whose state must agree across ranks all-reduces it itself (resume is exact on one process).

A new regularizer is one file (`lecam.py` here is one): a subclass with `options` (see `gan_lightning.core.options`),
`from_options` returning None when its options switch it off, and `@REGULARIZERS.register(name)`; the GAN then builds
it from the command line like any other component; a file in this package is imported at the bottom of this one.
R1, R2 and the WGAN-GP penalty stay in `objectives.Objective`, which needs them before D runs (their inputs must
require grad), as NVlabs' `StyleGAN2Loss` keeps R1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from gan_lightning.core.options import Option
from gan_lightning.core.registry import Registry
from gan_lightning.training.latents import Latents

Tensor = torch.Tensor


class DOutputs(NamedTuple):
    """What D said in one phase: live logits (B,) on the real batch (None in a G phase that did not ask) and the
    fakes, the real batch and the latents the fakes came from."""

    real_logits: Tensor | None
    fake_logits: Tensor
    real: Any  # objectives.Batch
    latents: Latents


class Term(NamedTuple):
    """A regularizer's contribution: the loss to add (None: nothing this step) and statistics to log."""

    loss: Tensor | None
    stats: dict[str, Tensor]


class Regularizer(nn.Module):
    """Base class: override `d_term` and/or `g_term`; keep state in buffers (see the module docstring)."""

    options: tuple[Option, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Regularizer | None:
        """The regularizer the declared `options` ask for, or None when they switch it off."""
        return None

    def d_term(self, out: DOutputs, step: int) -> Term:
        """The D phase's term at D update `step`."""
        return Term(None, {})

    def g_term(self, out: DOutputs, step: int) -> Term:
        """The G phase's term at iteration `step`."""
        return Term(None, {})


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def build_regularizers(options: Mapping[str, Any]) -> list[Regularizer]:
    """Every registered regularizer the declared `options` switch on, in registry order."""
    built = (REGULARIZERS.get(name).from_options(options) for name in REGULARIZERS.names())
    return [reg for reg in built if reg is not None]


# The registered regularizers, one file each; imported last because they subclass what this file defines.
from gan_lightning.regularizers import lecam as _lecam  # noqa: E402, F401  (registers "lecam")
