"""Adaptive augmentation (ADA, Karras et al. 2020): a controller that tunes the probability p of a DiffAugment policy
or of StyleGAN2-ADA's pipeline (`pipeline.py`) to D's overfitting, as NVlabs' stylegan2-ada-pytorch does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gan_lightning.augment.diffaugment import DiffAugment
from gan_lightning.augment.pipeline import AugmentPipe
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.injected import describe_component
from gan_lightning.core.options import Option, Options

Tensor = torch.Tensor


class AdaptiveAugment(nn.Module):
    """ADA (Karras et al. 2020): an augmentation (`augment`: a DiffAugment policy, or with `augpipe` StyleGAN2-ADA's
    pipeline) applied per image with probability `p`, which this controller owns and tunes.

    `p` starts at 0 and is tuned to D's overfitting, as NVlabs' stylegan2-ada-pytorch `training_loop.py` does: the
    objective feeds D's verdicts on the real batch of every D update to `observe` (its logits, or for a relativistic
    loss each real's logit minus its paired fake's), and over each `interval` updates r_t = E[sign(verdict)] (0 when
    D cannot separate the reals, 1 when it is sure of every one) moves `p` by sign(r_t - target) x (real images seen
    in the interval) / (kimg x 1000), floored at 0: `p` can go from 0 to 1 in `kimg` thousand real images. As in the
    reference, `p` is not capped at 1: past it every op of multiplier 1 always hits, and an op of a smaller
    multiplier (R3GAN's policy's colour ops at 0.5) hits more. With p below about 0.8 the generator does not learn
    to produce augmented images (no "leak", Karras et al. section 2.2): D still sees enough un-augmented reals to
    pin down the clean distribution. `p`, the interval's sign sum and count and the last r_t
    are buffers, checkpointed with the module, so a resumed run continues exactly; under DDP the sums are
    all-reduced before each adjustment, so every rank holds the same `p`.
    """

    # DiffAugment's transforms in ADA's order (geometric, colour, cutout), not ADA's own ops (those are --augpipe):
    # zero-filled translation by up to 1/8 of the side, one draw of brightness/saturation/contrast, a square cutout;
    # no flips or rotations, which would teach an MNIST D that a mirrored digit is real at high p.
    default_policy = "translation,color,cutout"

    # fmt: off
    options = (
        Option("ada_target", None, "adaptive augmentation (ADA): tune the probability p of each --diffaug transform "
               f"(default policy {default_policy}), or of --augpipe's ops, so the mean sign of D's verdicts on reals "
               "(the loss's real_verdicts: the real logit for bce) stays at this target, e.g. 0.6", type=float,
               minimum=0, below=1, metavar="TARGET", default_text="off"),
        Option("ada_interval", 4, "ADA: adjust p every N D updates", positive=True, metavar="N"),
        Option("ada_kimg", 500.0, "ADA: p can go from 0 to 1 in this many thousand real images", positive=True,
               metavar="KIMG"),
        # declared by the pipeline; listed here too because the controller chooses between it and --diffaug
        *AugmentPipe.options,
    )
    # fmt: on

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AdaptiveAugment | None:
        """The adaptive augmentation `--ada-target` asks for (on `--augpipe`'s pipeline, else on `--diffaug`'s
        policy, else the default policy), or None."""
        if options["ada_target"] is None:
            return None
        if options.get("diffaug_p", 1.0) != 1:
            raise ConfigError("--diffaug-p does not apply with --ada-target: ADA tunes p itself; drop --diffaug-p")
        if options.get("augpipe_p") is not None:
            raise ConfigError("--augpipe-p does not apply with --ada-target: ADA tunes p itself; drop --augpipe-p")
        augpipe = options.get("augpipe")
        if augpipe:
            augpipe = AugmentPipe(augpipe, exact_blit=not options.get("augpipe_resample_blits"))
        return cls(options["diffaug"], target=options["ada_target"], interval=options["ada_interval"],
                   kimg=options["ada_kimg"], augpipe=augpipe)  # fmt: skip

    def __init__(self, policy: str | None = None, target: float = 0.6, interval: int = 4, kimg: float = 500.0,
                 augpipe: str | AugmentPipe | None = None) -> None:  # fmt: skip
        super().__init__()
        Options(self.options).validate(ada_target=target, ada_interval=interval, ada_kimg=kimg)
        if policy and augpipe:
            raise ConfigError("--diffaug and --augpipe both choose what ADA augments; pass one")
        self.augment: DiffAugment | AugmentPipe
        if isinstance(augpipe, AugmentPipe):
            self.augment = augpipe
        else:
            self.augment = AugmentPipe(augpipe) if augpipe else DiffAugment(policy or self.default_policy)
        self.target, self.interval, self.kimg = float(target), int(interval), float(kimg)
        self.register_buffer("p", torch.zeros(()))  # the tuned probability; the augmentation's own p is unused
        self.register_buffer("sign_sum", torch.zeros(()))  # sum of sign(D(x_real)) over the current interval
        self.register_buffer("count", torch.zeros(()))  # real logits seen in the current interval
        self.register_buffer("rt", torch.zeros(()))  # r_t of the last completed interval (0 before the first)

    @property
    def policy(self) -> str:
        """What it augments: the DiffAugment policy, or the pipeline's."""
        return self.augment.policy

    def init_options(self) -> dict[str, Any]:
        """The constructor options that rebuild this augmentation."""
        tuning = {"target": self.target, "interval": self.interval, "kimg": self.kimg}
        if isinstance(self.augment, AugmentPipe):
            return {"policy": None, "augpipe": describe_component(self.augment), **tuning}
        return {"policy": self.policy, "augpipe": None, **tuning}

    def forward(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """Images (B, C, H, W), augmented per image with the tuned probability p."""
        return self.augment.per_image(x, rng, self.p)

    @torch.no_grad()
    def observe(self, verdicts: Tensor) -> None:
        """Record D's verdicts on a real batch (B,: positive = "real", `Objective.real_verdicts`)."""
        self.sign_sum += verdicts.detach().float().sign().sum()
        self.count += verdicts.numel()

    @torch.no_grad()
    def end_update(self, step: int) -> None:
        """After D update `step` (all its micro-batches): at the end of every `interval` updates, move p."""
        # the D-step index, not a counter buffer, says when an interval ends: no device sync per update
        if (step + 1) % self.interval:
            return
        totals = torch.stack([self.sign_sum, self.count])  # (2,)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)  # every rank's reals count: all ranks then move p by the same step
        sign_sum, count = totals.unbind()
        self.rt.copy_(sign_sum / count)
        # the step scales with the reals actually seen (ADA's batch x interval), so kimg means the same at any batch
        self.p.add_(torch.sign(self.rt - self.target) * count / (self.kimg * 1000)).clamp_(min=0)
        self.sign_sum.zero_()
        self.count.zero_()

    def stats(self) -> dict[str, Tensor]:
        """The probability p and the last interval's r_t, logged as train/ada_p and train/ada_rt."""
        return {"ada_p": self.p.clone(), "ada_rt": self.rt.clone()}

    def __repr__(self) -> str:
        what = f"augpipe={self.augment!r}" if isinstance(self.augment, AugmentPipe) else repr(self.policy)
        return f"AdaptiveAugment({what}, target={self.target}, interval={self.interval}, kimg={self.kimg})"
