"""Differentiable augmentation of what D sees (DiffAugment, Zhao et al. 2020), chosen by a policy string, and its
adaptive form (ADA, Karras et al. 2020) that applies each transform with a probability p tuned to D's overfitting.

The same kind of transform is applied to real and fake images, before D, in both phases; it is differentiable,
so G learns through it, and D cannot tell real from fake by the augmentation. One short function per transform;
per-sample random parameters come from the caller's `rng`, never the global RNG, so a resumed run draws exactly
what the uninterrupted one did. Images are in [-1, 1], as everywhere in this project.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.options import Option

Tensor = torch.Tensor


def _uniform(x: Tensor, rng: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    """Per-sample U(low, high) of shape (B, *shape), drawn on `rng`'s device, in x's dtype and device."""
    u = torch.rand(x.shape[0], *shape, generator=rng, device=rng.device)
    return (low + (high - low) * u).to(device=x.device, dtype=x.dtype)


def color(x: Tensor, rng: torch.Generator) -> Tensor:
    """Brightness + U(-0.5, 0.5); saturation x U(0, 2) around the pixel's channel mean; contrast x U(0.5, 1.5)."""
    x = x + _uniform(x, rng, -0.5, 0.5, 1, 1, 1)  # (B, C, H, W)
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    x = (x - mean) * _uniform(x, rng, 0.0, 2.0, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * _uniform(x, rng, 0.5, 1.5, 1, 1, 1) + mean


def translation(x: Tensor, rng: torch.Generator, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size in x and y (integer pixels), filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # (B, H, 1): source row of each output row
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx  # (B, 1, W)
    # index a zero-padded copy: sources outside the image land on the padding
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C, H+2, W+2)
    rows, cols = rows.clamp(-1, h) + 1, cols.clamp(-1, w) + 1
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(x: Tensor, rng: torch.Generator, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` x the image size per image, centred anywhere (clipped at the borders)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=rng, device=rng.device).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= cy - ch // 2) & (rows < cy - ch // 2 + ch) & (cols >= cx - cw // 2) & (cols < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)  # (B, C, H, W)


AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def _check_policy(policy: str) -> None:
    DiffAugment(policy)


def _check_probability(p: float) -> None:
    if not 0 <= p <= 1:  # also refuses NaN
        raise ConfigError(f"--diffaug-p is a probability in [0, 1], got {p}")


class DiffAugment(nn.Module):
    """The transforms of a policy such as "color,translation,cutout", applied in that order.

    With `p` below 1 each transform hits each image independently with probability p (as in ADA); at p = 1 every
    transform hits every image and no mask is drawn, exactly the original DiffAugment. A fixed augmentation's `p`
    is its option, or the value an `--aug-schedule` sets from the iteration (`set_p`): never learned state, so
    it is a buffer that checkpoints do not store (an adaptive augmentation's is).
    """

    # fmt: off
    options = (
        Option("diffaug", None, "DiffAugment on every image D sees: a comma list of " + ", ".join(AUGMENTATIONS),
               type=str, metavar="POLICY", default_text="none", check=_check_policy),
        Option("diffaug_p", 1.0, "DiffAugment: the probability that each transform hits each image (drawn per "
               "image, as ADA; 1: every image); the start of an --aug-schedule", metavar="P",
               check=_check_probability),
    )
    # fmt: on
    p_persistent = False  # whether `p` is state to checkpoint (an adaptive augmentation's) or set from options

    @classmethod
    def from_options(cls, options: dict) -> DiffAugment | None:
        """The augmentation the declared `options` ask for, or None."""
        return cls(options["diffaug"], p=options["diffaug_p"]) if options["diffaug"] else None

    def __init__(self, policy: str, p: float = 1.0) -> None:
        super().__init__()
        names = [name.strip() for name in policy.split(",")]
        choices = ", ".join(AUGMENTATIONS)
        if not all(names) or any(name not in AUGMENTATIONS for name in names):
            raise ConfigError(f"--diffaug {policy!r}: use a comma list of {choices}")
        if len(set(names)) != len(names):
            raise ConfigError(f"--diffaug {policy!r} names a transform twice; use each of {choices} at most once")
        _check_probability(p)
        self.policy = ",".join(names)
        self._transforms = [AUGMENTATIONS[name] for name in names]
        self.register_buffer("p", torch.tensor(float(p)), persistent=self.p_persistent)
        self._p = float(p)  # a host copy: the p = 1 test needs no device sync

    def init_options(self) -> dict[str, Any]:
        """The constructor options that rebuild this augmentation."""
        return {"policy": self.policy} if self._p == 1 else {"policy": self.policy, "p": self._p}

    def set_p(self, p: float) -> None:
        """Set the probability each transform hits each image (an augmentation schedule's value)."""
        self.p.fill_(p)
        self._p = float(p)

    def forward(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """Augmented images (B, C, H, W), differentiable w.r.t. x; randomness from `rng` only."""
        if self._p < 1:
            return self.per_image(x, rng)
        for transform in self._transforms:
            x = transform(x, rng)
        return x

    def per_image(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """Images (B, C, H, W), each transform applied to each one with probability p; randomness from `rng` only."""
        for transform in self._transforms:
            # the mask and the transform's parameters are drawn for every image whatever p is, so the stream's
            # position never depends on p; where() keeps the blend differentiable w.r.t. x on both branches
            hit = torch.rand(x.shape[0], generator=rng, device=rng.device).to(x.device) < self.p  # (B,)
            x = torch.where(hit.view(-1, *([1] * (x.ndim - 1))), transform(x, rng), x)  # (B, C, H, W)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})" if self._p == 1 else f"DiffAugment({self.policy!r}, p={self._p})"


class AdaptiveAugment(DiffAugment):
    """ADA (Karras et al. 2020): each transform of the policy hits each image independently with probability `p`.

    `p` starts at 0 and is tuned to D's overfitting, as NVlabs' stylegan2-ada-pytorch `training_loop.py` does:
    the objective feeds D's verdicts on the real batch of every D update to `observe` (its logits, or for a
    relativistic loss each real's logit minus its paired fake's), and over each `interval` updates
    r_t = E[sign(D(x_real))] (0 when D cannot separate the reals, 1 when it is sure of every one) moves `p` by
    sign(r_t - target) x (real images seen in the interval) / (kimg x 1000), clamped to [0, 1]: `p` can go from 0
    to 1 in `kimg` thousand real images. With p below about 0.8 the generator does not learn to produce augmented
    images (no "leak", Karras et al. section 2.2): D still sees enough un-augmented reals to pin down the clean
    distribution. `p`, the interval's sign sum and count and the last r_t
    are buffers, checkpointed with the module, so a resumed run continues exactly; under DDP the sums are
    all-reduced before each adjustment, so every rank holds the same `p`.
    """

    # ADA's own order: geometric, then color, then cutout. Integer translation is ADA's 'xint' (zero-filled, not
    # reflected), color its brightness/saturation/contrast, cutout its 'cutout'; no flips or rotations, which would
    # teach an MNIST D that a mirrored digit is real at high p.
    default_policy = "translation,color,cutout"
    p_persistent = True  # tuned from D's outputs: state, checkpointed and resumed

    # fmt: off
    options = (
        Option("ada_target", None, "adaptive augmentation (ADA): tune the probability p of each --diffaug transform "
               f"(default policy {default_policy}) so E[sign(D(real))] stays at this target, e.g. 0.6", type=float,
               minimum=0, below=1, metavar="TARGET", default_text="off"),
        Option("ada_interval", 4, "ADA: adjust p every N D updates", positive=True, metavar="N"),
        Option("ada_kimg", 500.0, "ADA: p can go from 0 to 1 in this many thousand real images", positive=True,
               metavar="KIMG"),
    )
    # fmt: on

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AdaptiveAugment | None:
        """The adaptive augmentation `--ada-target` asks for (on `--diffaug`'s policy, else the default), or None."""
        if options["ada_target"] is None:
            return None
        if options.get("diffaug_p", 1.0) != 1:
            raise ConfigError("--diffaug-p does not apply with --ada-target: ADA tunes p itself; drop --diffaug-p")
        return cls(options["diffaug"] or cls.default_policy, target=options["ada_target"],
                   interval=options["ada_interval"], kimg=options["ada_kimg"])  # fmt: skip

    def __init__(
        self, policy: str = default_policy, target: float = 0.6, interval: int = 4, kimg: float = 500.0
    ) -> None:
        super().__init__(policy, p=0.0)
        if interval < 1 or kimg <= 0:
            raise ConfigError(f"ADA needs a positive interval and kimg, got interval={interval}, kimg={kimg}")
        self.target, self.interval, self.kimg = float(target), int(interval), float(kimg)
        self.register_buffer("sign_sum", torch.zeros(()))  # sum of sign(D(x_real)) over the current interval
        self.register_buffer("count", torch.zeros(()))  # real logits seen in the current interval
        self.register_buffer("rt", torch.zeros(()))  # r_t of the last completed interval (0 before the first)

    def init_options(self) -> dict[str, Any]:
        """The constructor options that rebuild this augmentation."""
        return {"policy": self.policy, "target": self.target, "interval": self.interval, "kimg": self.kimg}

    def forward(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """Images (B, C, H, W), each transform applied to each one with the tuned probability p."""
        return self.per_image(x, rng)  # p moves on the device (observe): never the host copy's p = 1 shortcut

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
        self.p.add_(torch.sign(self.rt - self.target) * count / (self.kimg * 1000)).clamp_(0, 1)
        self.sign_sum.zero_()
        self.count.zero_()

    def stats(self) -> dict[str, Tensor]:
        """The probability p and the last interval's r_t, logged as train/ada_p and train/ada_rt."""
        return {"ada_p": self.p.clone(), "ada_rt": self.rt.clone()}

    def __repr__(self) -> str:
        return f"AdaptiveAugment({self.policy!r}, target={self.target}, interval={self.interval}, kimg={self.kimg})"


def build_augment(options: Mapping[str, Any]) -> DiffAugment | None:
    """The augmentation the declared `options` ask for: adaptive with `--ada-target`, else `--diffaug`'s, or None."""
    return AdaptiveAugment.from_options(options) or DiffAugment.from_options(options)
