"""DiffAugment (Zhao et al. 2020): the registered transforms a policy string names, applied to every image D sees,
real or fake, in both phases, each with probability p (1: always, the original DiffAugment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gan_lightning.augment.transforms import TRANSFORMS
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, probability

Tensor = torch.Tensor


def _check_policy(policy: str) -> None:
    DiffAugment(policy)


_check_probability = probability("--diffaug-p")


class DiffAugment(nn.Module):
    """The transforms of a policy such as "color,translation,cutout", applied in that order.

    With `p` below 1 each transform hits each image independently with probability p (as in ADA); at p = 1 every
    transform hits every image and no mask is drawn, exactly the original DiffAugment. A fixed augmentation's `p`
    is its option, or the value an `--aug-schedule` sets from the iteration (`set_p`): never learned state, so
    it is a buffer that checkpoints do not store (an adaptive augmentation's is).
    """

    # fmt: off
    options = (
        Option("diffaug", None, lambda: "DiffAugment on every image D sees: a comma list of " + ", ".join(TRANSFORMS),
               type=str, metavar="POLICY", default_text="none", check=_check_policy),
        Option("diffaug_p", 1.0, "DiffAugment: the probability that each transform hits each image (drawn per "
               "image, as ADA; 1: every image); the start of an --aug-schedule", metavar="P",
               check=_check_probability),
    )
    # fmt: on
    p_persistent = False  # whether `p` is state to checkpoint (an adaptive augmentation's) or set from options

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DiffAugment | None:
        """The augmentation the declared `options` ask for, or None."""
        return cls(options["diffaug"], p=options["diffaug_p"]) if options["diffaug"] else None

    def __init__(self, policy: str, p: float = 1.0) -> None:
        super().__init__()
        names = [name.strip() for name in policy.split(",")]
        choices = ", ".join(TRANSFORMS)
        if not all(names) or any(name not in TRANSFORMS for name in names):
            raise ConfigError(f"--diffaug {policy!r}: use a comma list of {choices}")
        if len(set(names)) != len(names):
            raise ConfigError(f"--diffaug {policy!r} names a transform twice; use each of {choices} at most once")
        _check_probability(p)
        self.policy = ",".join(names)
        self.transforms = [TRANSFORMS.get(name) for name in names]
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
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def per_image(self, x: Tensor, rng: torch.Generator, p: Tensor | None = None) -> Tensor:
        """Images (B, C, H, W), each transform applied to each one with probability `p` (default this policy's);
        randomness from `rng` only."""
        p = self.p if p is None else p
        for transform in self.transforms:
            # the mask and the transform's parameters are drawn for every image whatever p is, so the stream's
            # position never depends on p; where() keeps the blend differentiable w.r.t. x on both branches
            hit = torch.rand(x.shape[0], generator=rng, device=rng.device).to(x.device) < p  # (B,)
            x = torch.where(hit.view(-1, *([1] * (x.ndim - 1))), transform(x, rng), x)  # (B, C, H, W)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})" if self._p == 1 else f"DiffAugment({self.policy!r}, p={self._p})"
