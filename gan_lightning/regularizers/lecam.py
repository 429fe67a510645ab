"""LeCam regularization (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited Data").

D's outputs are pulled toward moving averages of the other side's: its real logits toward the average fake logit
and its fake logits toward the average real logit, which bounds how far apart D can push the two when data is
scarce (the paper relates it to the LeCam divergence). As in StudioGAN's `lecam_reg` and google/lecam-gan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from gan_lightning.core.options import Option, Options
from gan_lightning.regularizers.base import REGULARIZERS, PhaseContext, Regularizer, Term

Tensor = torch.Tensor


@REGULARIZERS.register("lecam")
class LeCam(Regularizer):
    """D phase: weight x (E[(D(x) - alpha_fake)^2] + E[(D(G(z)) - alpha_real)^2]); nothing in the G phase.

    alpha_real and alpha_fake are moving averages (decay `decay`) of D's mean real and fake logits, kept in buffers
    (checkpointed, resumed exactly). As in StudioGAN, the anchors are moved first, with this D update's detached
    means, and the term then uses the moved anchors. Under `--accumulate N` each micro-batch's term uses the anchors
    moved by its own means, and the anchors keep one move per D update, by the whole update's means
    (`end_update`), so the decay means the same at any N. Before D update `start` (StudioGAN's
    lecam_ema_start_iter, counted here in D updates) the anchors just take the latest means and the term is not
    added; their first move (at D update 0, or the first after LeCam is switched on at a resume) takes the latest
    means whatever `start` is, so they never start from an arbitrary constant (the reference code starts them at a
    large constant and relies on a start > 0).

    The paper writes the two-sided squares above; the official code and StudioGAN use the one-sided
    E[relu(D(x) - alpha_fake)^2] + E[relu(alpha_real - D(G(z)))^2], which only penalises a D more confident than the
    anchors: `one_sided=True` (`--lecam-one-sided`). Under DDP the batch means are all-reduced before the update,
    so every rank keeps the same anchors (StudioGAN gathers the logits of all ranks: the same means).
    """

    # fmt: off
    options = (
        Option("lecam", 0.0, "LeCam regularization weight (Tseng et al. 2021): D's real logits toward the moving "
               "average of its fake ones and vice versa, e.g. 0.3", minimum=0, metavar="WEIGHT", schedule="weight"),
        Option("lecam_decay", 0.99, "LeCam: EMA decay of the anchors (D's mean real and fake logits)", minimum=0,
               below=1),
        Option("lecam_start", 0, "LeCam: for the first N D updates the anchors track the latest means, no term",
               minimum=0, metavar="N"),
        Option("lecam_one_sided", False, "LeCam: the official code's one-sided relu(...)^2 form instead of the "
               "paper's squares"),
    )
    # fmt: on

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LeCam | None:
        """LeCam when `--lecam` is positive, else None."""
        if not options["lecam"]:
            return None
        return cls(options["lecam"], decay=options["lecam_decay"], start=options["lecam_start"],
                   one_sided=options["lecam_one_sided"])  # fmt: skip

    def __init__(self, weight: float, decay: float = 0.99, start: int = 0, one_sided: bool = False) -> None:
        super().__init__()
        Options(self.options).validate(lecam=weight, lecam_decay=decay, lecam_start=start)
        self.weight, self.decay, self.start, self.one_sided = float(weight), float(decay), int(start), bool(one_sided)
        self.register_buffer("alpha_real", torch.zeros(()))
        self.register_buffer("alpha_fake", torch.zeros(()))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))  # whether the anchors hold an average
        self.register_buffer("pending", torch.zeros(3))  # this D update's real and fake logit sums, and their count

    def _keep(self, step: int) -> Tensor:
        """The anchors' decay at D update `step`: 0 (take the latest means) before `start` or any average exists."""
        keep = self.started.float() * self.decay  # a tensor: no device sync to read `started`
        return keep if step >= self.start else keep * 0

    @torch.no_grad()
    def _sums(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        count = real_logits.new_tensor(len(real_logits))
        sums = torch.stack([real_logits.detach().sum(), fake_logits.detach().sum(), count])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)  # every rank's logits count: all ranks keep the same anchors
        return sums  # (3,): real sum, fake sum, count

    def d_term(self, ctx: PhaseContext) -> Term:
        """weight x LeCam on this D update's live logits, against the anchors moved by their means (see above)."""
        step = ctx.step
        real, fake = ctx.real_logits.float(), ctx.fake_logits.float()  # (B,), (B,)
        sums = self._sums(real, fake)
        self.pending += sums
        keep = self._keep(step)
        alpha_real = self.alpha_real.lerp(sums[0] / sums[2], 1 - keep)
        alpha_fake = self.alpha_fake.lerp(sums[1] / sums[2], 1 - keep)
        if self.one_sided:
            reg = F.relu(real - alpha_fake).square().mean() + F.relu(alpha_real - fake).square().mean()
        else:
            reg = (real - alpha_fake).square().mean() + (fake - alpha_real).square().mean()
        stats = {"lecam": reg, "lecam_alpha_real": alpha_real, "lecam_alpha_fake": alpha_fake}
        return Term(self.weight * reg if step >= self.start else None, stats)

    @torch.no_grad()
    def end_update(self, step: int) -> None:
        """After D update `step` (all its micro-batches): move the anchors once, by the whole update's means."""
        keep = self._keep(step)
        self.alpha_real.lerp_(self.pending[0] / self.pending[2], 1 - keep)
        self.alpha_fake.lerp_(self.pending[1] / self.pending[2], 1 - keep)
        self.started.fill_(True)
        self.pending.zero_()
