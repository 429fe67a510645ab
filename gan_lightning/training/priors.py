"""Noise priors by name (`NOISES`): how to draw each, its centre and bounds, how it interpolates (slerp for a
Gaussian) and truncates (psi toward the centre, BigGAN's redraw threshold), and the sampling-time truncation options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option
from gan_lightning.core.registry import Registry

Tensor = torch.Tensor

# Resampling rounds of threshold truncation before a threshold is called unreachable: each round redraws only the
# coordinates still outside, so the cost is bounded by the draws, not by the rounds.
MAX_RESAMPLING_ROUNDS = 2000


def uniform_noise(shape: tuple[int, ...], *, device: torch.device, rng: torch.Generator | None) -> Tensor:
    """U(-1, 1) noise, as in the cs231n GAN assignment."""
    return torch.rand(shape, device=device, generator=rng).mul_(2).sub_(1)


def normal_noise(shape: tuple[int, ...], *, device: torch.device, rng: torch.Generator | None) -> Tensor:
    """N(0, 1) noise, as in the DCGAN paper and the PyTorch DCGAN tutorial."""
    return torch.randn(shape, device=device, generator=rng)


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of a and b at fractions t (the DCGAN-era choice for Gaussian noise)."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))  # angle between endpoints
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


@dataclass(frozen=True)
class Prior:
    """A noise prior: how to draw it (`draw(shape, *, device, rng)`) and its shape, which truncation needs.

    `centre` is the point truncation moves noise toward (None: the prior has none, and truncating it is refused);
    `half_width` bounds a prior supported on [centre - half_width, centre + half_width] (None: unbounded).
    `spherical`: its high-dimensional draws concentrate on a sphere (a Gaussian), so walks between them follow great
    circles (slerp) instead of chords, which would pass through the improbable middle.
    Calling a Prior draws from it, so a registered Prior is used like a registered drawing function.
    """

    draw: Callable[..., Tensor]
    centre: float | None = 0.0
    half_width: float | None = None
    spherical: bool = False

    def interpolate(self, a: Tensor, b: Tensor, t: Tensor) -> Tensor:
        """Noise between rows of a and b at fractions t (broadcast): slerp for a spherical prior, else lerp."""
        return slerp(a, b, t) if self.spherical else torch.lerp(a, b, t)

    def __call__(self, shape: tuple[int, ...], *, device: torch.device, rng: torch.Generator | None) -> Tensor:
        """Noise of `shape` drawn on `device` from `rng`."""
        return self.draw(shape, device=device, rng=rng)

    def truncate(self, z: Tensor, rng: torch.Generator, psi: float | None = None,
                 threshold: float | None = None) -> Tensor:  # fmt: skip
        """z (any shape) truncated: coordinates farther than `threshold` from the centre redrawn from the prior until
        within (BigGAN), then moved toward the centre, c + psi (z - c) (StyleGAN's psi). Unset parts are skipped."""
        if self.centre is None:
            raise ConfigError("this noise prior declares no centre, so its noise cannot be truncated")
        c = self.centre
        if threshold is not None and (self.half_width is None or threshold < self.half_width):
            z = z.clone(memory_format=torch.contiguous_format)
            flat = z.view(-1)  # shares z's storage
            outside = ((flat - c).abs() > threshold).nonzero().squeeze(1)  # (k,) indices of coordinates to redraw
            for _ in range(MAX_RESAMPLING_ROUNDS):
                if len(outside) == 0:
                    break
                # redraw only the coordinates still outside, from the caller's stream: deterministic per seed
                fresh = self.draw((len(outside),), device=rng.device, rng=rng).to(flat.device, flat.dtype)
                inside = (fresh - c).abs() <= threshold
                flat[outside[inside]] = fresh[inside]
                outside = outside[~inside]
            else:
                if len(outside):
                    raise ConfigError(f"--truncation-threshold {threshold:g} is too narrow: {len(outside)} noise "
                                      f"values still lie outside it after {MAX_RESAMPLING_ROUNDS} redraws from the "
                                      "prior; use a larger threshold")  # fmt: skip
        if psi is not None and psi != 1:  # psi = 1 is skipped, not computed: exactly the untruncated noise
            z = c + psi * (z - c) if c else psi * z
        return z


NOISES: Registry[Prior] = Registry("noise")
# A new prior is one line: its drawing function, centre and (when bounded) half-width.
NOISES.register("uniform")(Prior(uniform_noise, centre=0.0, half_width=1.0))
NOISES.register("normal")(Prior(normal_noise, centre=0.0, spherical=True))


def _check_psi(psi: float) -> None:
    if not 0 < psi <= 1:  # also refuses NaN
        raise ConfigError(f"--truncation must lie in (0, 1] (1 is no truncation; 0 would collapse every sample to the "
                          f"prior's centre and above 1 extrapolates away from it), got {psi}")  # fmt: skip


def _check_threshold(threshold: float) -> None:
    if not threshold > 0:  # also refuses NaN
        raise ConfigError(
            f"--truncation-threshold must be positive (BigGAN uses 0.04 to 2 for N(0, 1)), got {threshold}"
        )


# Sampling-time options of sample.py and evaluate.py, not hyperparameters: any trained model can be truncated.
# fmt: off
truncation_options = (
    Option("truncation", None, "truncation trick: noise moved toward the prior's centre, z' = c + PSI (z - c), PSI in "
           "(0, 1]", type=float, check=_check_psi, metavar="PSI", resume="free", default_text="1: none"),
    Option("truncation_threshold", None, "BigGAN truncation: noise coordinates farther than T from the prior's centre "
           "are redrawn from the prior until within", type=float, check=_check_threshold, metavar="T", resume="free",
           default_text="none"),
)
# fmt: on


@dataclass(frozen=True)
class Truncation:
    """How sampling truncates the noise (`truncation_options`): psi toward the prior's centre and/or BigGAN's
    redraw threshold; both None is no truncation."""

    psi: float | None = None
    threshold: float | None = None

    @classmethod
    def of(cls, value: Truncation | float | None, threshold: float | None = None) -> Truncation:
        """A `Truncation` as given, or one with psi `value` (None: none) and `threshold`; a `Truncation` carries its
        own threshold, so giving another is refused."""
        if not isinstance(value, Truncation):
            return cls(value, threshold)
        if threshold is not None:
            raise ValueError("give the threshold once: inside the Truncation or as truncation_threshold")
        return value

    def fields(self) -> dict[str, float]:
        """A score's row fields for this truncation, only those set: untruncated rows gain no top-level column (the
        protocol records both, set or not)."""
        named = {"truncation": self.psi, "truncation_threshold": self.threshold}
        return {key: value for key, value in named.items() if value is not None}
