"""StyleGAN2-ADA's augmentation pipeline (Karras et al. 2020, NVlabs stylegan2-ada-pytorch `training/augment.py`
`AugmentPipe`) built from registered ops, and its policies by name (`train.py`'s `augpipe_specs`).

An op is a class registered in `PIPELINE_OPS` by `@pipeline_op(name)` (`ada_geometric.py`, `ada_color.py`,
`ada_image.py`, or a plugin's file). It declares its strength parameters (`params`, the reference's defaults) and
its probability multiplier (an option named after the op, 1 in every reference policy), and belongs to a stage:

- `GeometricOp`: an inverse 3x3 matrix per image; the pipe composes them and resamples each image ONCE
  (`resample.py`: reflect padding, wavelet 2x upsampling, bilinear sampling, downsampling);
- `ColorOp`: a 4x4 colour matrix per image; the pipe composes them and applies the product once;
- `ImageOp`: a function of the images (image-space filtering, noise, cutout), applied in turn.

Stages run in that order; within a stage ops run in the reference's order (`positions`), whatever order a comma
list names them in. Each op hits each image with probability p x its multiplier, drawing its parameters and its
mask from the caller's `rng` for every image whatever p is (so the stream position never depends on p), in the
reference's order and shapes: the same seed gives the reference's draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from gan_lightning.augment.resample import lowpass_filter, resample
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, Options, probability
from gan_lightning.core.registry import Registry

Tensor = torch.Tensor


@dataclass
class Draws:
    """One call's random draws: `n` images' parameters from `rng` (on its device), moved to `device`; `p` is the
    pipeline's probability (a 0-dim tensor on `device`)."""

    n: int
    rng: torch.Generator
    p: Tensor
    device: torch.device

    def rand(self, *shape: int) -> Tensor:
        """U[0, 1) of shape (n, *shape)."""
        return torch.rand(self.n, *shape, generator=self.rng, device=self.rng.device).to(self.device)

    def randn(self, *shape: int) -> Tensor:
        """N(0, 1) of shape (n, *shape)."""
        return torch.randn(self.n, *shape, generator=self.rng, device=self.rng.device).to(self.device)

    def hit(self, multiplier: float, *shape: int) -> Tensor:
        """Per image, whether an op of this `multiplier` applies: (n, *shape) booleans, true with prob. p x it."""
        return self.rand(*shape) < multiplier * self.p


class PipeOp(nn.Module):
    """One op of the pipeline; `name` is its registered name, `params` its strength parameters' declarations."""

    name = ""
    params: tuple[Option, ...] = ()
    positions: tuple[float, ...] = (0.0,)  # where it falls in its stage (the reference's order); rotate has two

    def __init__(self, **strengths: float) -> None:
        super().__init__()
        declared = Options(self.params)
        unknown = set(strengths) - {self.name, *declared.names()}
        if unknown:
            raise ConfigError(f"augmentation op {self.name} has no parameter {', '.join(sorted(unknown))}; its "
                              f"parameters: {', '.join([self.name, *declared.names()])}")  # fmt: skip
        declared.validate(**{k: v for k, v in strengths.items() if k != self.name})
        self.multiplier = float(strengths.get(self.name, 1.0))
        if not self.multiplier >= 0:
            raise ConfigError(f"augmentation op {self.name}: its probability multiplier must be >= 0, got "
                              f"{self.multiplier}")  # fmt: skip
        for option in self.params:
            setattr(self, option.name, strengths.get(option.name, option.default))

    def strengths(self) -> dict[str, Any]:
        """The parameters that differ from the declared defaults (the multiplier under the op's name)."""
        given = {self.name: self.multiplier, **{o.name: getattr(self, o.name) for o in self.params}}
        defaults = {self.name: 1.0, **{o.name: o.default for o in self.params}}
        return {k: v for k, v in given.items() if v != defaults[k]}

    def extra_repr(self) -> str:
        """Its non-default strengths, in the module's repr."""
        return ", ".join(f"{k}={v}" for k, v in self.strengths().items())


class GeometricOp(PipeOp):
    """A geometric op: composes into the image's inverse transform (output pixel -> input pixel)."""

    def inverse(self, draws: Draws, size: tuple[int, int], position: int) -> Tensor:
        """Its factor (n, 3, 3) of each image's inverse transform, the identity where it does not apply; `size` is
        (H, W), `position` which of `positions` is being drawn."""
        raise NotImplementedError


class ColorOp(PipeOp):
    """A colour op: composes into the image's 4x4 homogeneous colour matrix (colour in -> colour out)."""

    def matrix(self, draws: Draws, channels: int) -> Tensor | None:
        """Its factor (n, 4, 4) of each image's colour matrix, the identity where it does not apply; None (and no
        draws) where it does not exist for `channels` (hue and saturation of greyscale images)."""
        raise NotImplementedError


class ImageOp(PipeOp):
    """An image-space op, applied to the images after the geometric and colour stages."""

    def apply(self, x: Tensor, draws: Draws) -> Tensor:
        """Images (B, C, H, W) with the op applied where it hits, unchanged elsewhere."""
        raise NotImplementedError


STAGES: tuple[type[PipeOp], ...] = (GeometricOp, ColorOp, ImageOp)
PIPELINE_OPS: Registry[type[PipeOp]] = Registry("augmentation pipeline op")
Op = TypeVar("Op", bound=type[PipeOp])


def pipeline_op(name: str) -> Callable[[Op], Op]:
    """Class decorator registering an op of the pipeline as `name` (its policy name and multiplier option)."""

    def decorator(op: Op) -> Op:
        if not issubclass(op, STAGES):
            raise TypeError(f"pipeline op {name}: subclass one of {', '.join(s.__name__ for s in STAGES)}")
        op.name = name
        return PIPELINE_OPS.register(name)(op)

    return decorator


BLIT, GEOM = ("xflip", "rotate90", "xint"), ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
# the reference's augpipe_specs (train.py): each policy's ops, all at multiplier 1
POLICIES: dict[str, tuple[str, ...]] = {
    "blit": BLIT, "geom": GEOM, "color": COLOR, "filter": ("imgfilter",), "noise": ("noise",), "cutout": ("cutout",),
    "bg": BLIT + GEOM, "bgc": BLIT + GEOM + COLOR, "bgcf": BLIT + GEOM + COLOR + ("imgfilter",),
    "bgcfn": BLIT + GEOM + COLOR + ("imgfilter", "noise"),
    "bgcfnc": BLIT + GEOM + COLOR + ("imgfilter", "noise", "cutout"),
    # R3GAN's train.py: bg, the colour ops at half probability, cutout; no filter, no noise
    "r3gan": BLIT + GEOM + tuple(f"{op}=0.5" for op in COLOR) + ("cutout",),
}  # fmt: skip


def policy_entries(policy: str) -> dict[str, float]:
    """Each op a policy runs with its probability multiplier: a name of `POLICIES`, or a comma list of ops, each
    optionally `op=MULTIPLIER` (R3GAN's colour ops at 0.5); one-line ConfigError when bad."""
    entries = POLICIES.get(policy) or [entry.strip() for entry in policy.split(",")]
    hint = (f"use one of {', '.join(POLICIES)} or a comma list of {', '.join(PIPELINE_OPS)}, each optionally "
            "OP=MULTIPLIER")  # fmt: skip
    ops: dict[str, float] = {}
    for entry in entries:
        name, equals, multiplier = entry.partition("=")
        name = name.strip()
        if name not in PIPELINE_OPS:
            raise ConfigError(f"--augpipe {policy!r}: {hint}")
        if name in ops:
            raise ConfigError(f"--augpipe {policy!r} names an op twice; {hint}, each op at most once")
        try:
            ops[name] = float(multiplier) if equals else 1.0
        except ValueError:
            raise ConfigError(f"--augpipe {policy!r}: {entry!r} has no number after '='; {hint}") from None
        if not (ops[name] >= 0 and math.isfinite(ops[name])):
            raise ConfigError(f"--augpipe {policy!r}: {name}'s multiplier must be a finite number >= 0")
    return ops


def policy_ops(policy: str) -> list[str]:
    """The op names a policy runs (`policy_entries`)."""
    return list(policy_entries(policy))


def _check_policy(policy: str) -> None:
    policy_ops(policy)


_check_probability = probability("--augpipe-p")


class AugmentPipe(nn.Module):
    """StyleGAN2-ADA's `AugmentPipe`: a policy's ops, each hitting each image with probability p x its multiplier.

    `strengths` override an op's parameters (`xint_max=0.25`) or multiplier (`xflip=0.5`; 0 drops the op), by the
    reference's keyword names. An image whose geometric ops only permute its pixels (x-flips, quarter turns, integer
    shifts: pixel blitting) is moved exactly; `exact_blit=False` resamples it as the reference does, which shifts a
    mirrored or quarter-turned image by about 0.1 pixel (`resample.resample`). A fixed pipe's `p` is its
    option or an `--aug-schedule`'s value: a buffer that checkpoints do not store; `AdaptiveAugment` tunes it
    instead (`ada.py`).
    """

    # fmt: off
    options = (
        Option("augpipe", None, lambda: "StyleGAN2-ADA's augmentation pipeline on every image D sees (geometric ops "
               "resampled once, then colour, filter, noise, cutout): one of " + ", ".join(POLICIES) + " (the "
               "reference's --augpipe) or a comma list of " + ", ".join(PIPELINE_OPS), type=str, metavar="POLICY",
               default_text="none", check=_check_policy),
        Option("augpipe_p", None, "--augpipe with a fixed probability P that each op hits each image (the "
               "reference's --aug fixed --p P); the start of an --aug-schedule. Not with --ada-target, which tunes "
               "p from 0", type=float, metavar="P", default_text="none: --augpipe needs it or --ada-target",
               check=_check_probability),
        Option("augpipe_resample_blits", False, "--augpipe resamples x-flips, quarter turns and integer shifts "
               "through its wavelet filter as the reference does (a mirrored image moves by about 0.1 pixel), "
               "instead of moving their pixels exactly"),
    )
    # fmt: on
    p_persistent = False  # a fixed pipe's p is an option (or a schedule's value), not state

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AugmentPipe | None:
        """The fixed-p pipeline `--augpipe` with `--augpipe-p` ask for, or None (without --augpipe)."""
        if not options.get("augpipe"):
            if options.get("augpipe_p") is not None:
                raise ConfigError("--augpipe-p sets the probability of --augpipe's pipeline; add --augpipe POLICY or "
                                  "drop --augpipe-p")  # fmt: skip
            return None
        if options.get("augpipe_p") is None:
            raise ConfigError(f"--augpipe {options['augpipe']} needs --ada-target T (p tuned from 0, as StyleGAN2-ADA "
                              "trains) or --augpipe-p P (a fixed p, the reference's --aug fixed --p P)")  # fmt: skip
        return cls(options["augpipe"], p=options["augpipe_p"], exact_blit=not options.get("augpipe_resample_blits"))

    def __init__(self, policy: str, p: float = 1.0, exact_blit: bool = True, **strengths: Any) -> None:
        super().__init__()
        entries = policy_entries(policy)
        names = list(entries)
        _check_probability(p)
        ops = []
        for name in names:
            kind = PIPELINE_OPS.get(name)
            given = {name: entries[name]} if entries[name] != 1 else {}  # the policy's multiplier; strengths win
            given |= {k: v for k, v in strengths.items() if k == name or k in Options(kind.params)}
            ops.append(kind(**given))
        unused = set(strengths) - {k for op in ops for k in (op.name, *Options(op.params).names())}
        if unused:
            raise ConfigError(f"AugmentPipe({policy!r}): {', '.join(sorted(unused))} is no op or parameter of its "
                              f"ops {', '.join(names)}")  # fmt: skip
        ops = [op for op in ops if op.multiplier > 0]  # multiplier 0: never applied, and nothing drawn for it
        self.policy, self.exact_blit, self._strengths = policy, bool(exact_blit), dict(strengths)
        # geometric ops run by position (rotate draws at two: before and after aniso); the others in the
        # reference's order within their stage, whatever order a comma list names them in
        self.stages = nn.ModuleList(
            nn.ModuleList(sorted((op for op in ops if isinstance(op, stage)), key=lambda op: op.positions[0]))
            for stage in STAGES
        )
        self.geometric_steps = sorted((pos, i, k) for i, op in enumerate(self.stages[0])
                                      for k, pos in enumerate(op.positions))  # fmt: skip
        self.register_buffer("lowpass", lowpass_filter(), persistent=False)
        self.register_buffer("p", torch.tensor(float(p)), persistent=self.p_persistent)

    @property
    def ops(self) -> list[str]:
        """The names of the ops it runs, in the order it runs them (rotate once, though it draws twice)."""
        return [op.name for stage in self.stages for op in stage]

    def init_options(self) -> dict[str, Any]:
        """The constructor options that rebuild this pipeline."""
        return {"policy": self.policy, "p": float(self.p), "exact_blit": self.exact_blit, **self._strengths}

    def set_p(self, p: float) -> None:
        """Set the probability (an augmentation schedule's value)."""
        self.p.fill_(p)

    def forward(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """Augmented images (B, C, H, W), differentiable w.r.t. x to any order; randomness from `rng` only."""
        return self.per_image(x, rng)

    def per_image(self, x: Tensor, rng: torch.Generator, p: Tensor | float | None = None) -> Tensor:
        """Images (B, C, H, W), each op hitting each image with probability `p` (default the pipe's) x its
        multiplier; randomness from `rng` only."""
        p = torch.as_tensor(self.p if p is None else p, dtype=torch.float32, device=x.device)
        draws = Draws(x.shape[0], rng, p, x.device)
        geometric, color, image = self.stages
        if len(geometric):
            g_inv = torch.eye(3, device=x.device)
            for _, i, k in self.geometric_steps:
                g_inv = g_inv @ geometric[i].inverse(draws, (x.shape[2], x.shape[3]), k)  # (B, 3, 3)
            x = resample(x, g_inv.expand(x.shape[0], 3, 3), self.lowpass, self.exact_blit)  # (B, C, H, W)
        if len(color):
            c = torch.eye(4, device=x.device)
            for op in color:
                factor = op.matrix(draws, x.shape[1])
                c = c if factor is None else factor @ c  # (B, 4, 4)
            x = apply_color(x, c.expand(x.shape[0], 4, 4))  # (B, C, H, W)
        for op in image:
            x = op.apply(x, draws)  # (B, C, H, W)
        return x

    def __repr__(self) -> str:
        blit = "" if self.exact_blit else ", exact_blit=False"
        extra = blit + "".join(f", {k}={v}" for k, v in self._strengths.items())
        return f"AugmentPipe({self.policy!r}, p={float(self.p)}{extra})"


def apply_color(x: Tensor, c: Tensor) -> Tensor:
    """Images (B, C, H, W) through per-image colour matrices (B, 4, 4): RGB as is, greyscale through the mean of
    the RGB rows (as the reference); an image whose matrix is the identity is returned as it was."""
    b, ch, h, w = x.shape
    if ch not in (1, 3):
        raise ConfigError(f"--augpipe's colour ops need RGB (3 channels) or greyscale (1) images, got {ch} channels; "
                          "drop the colour ops")  # fmt: skip
    touched = (c != torch.eye(4, device=x.device)).flatten(1).any(dim=1)  # (B,)
    flat = x.reshape(b, ch, h * w)  # (B, C, H*W)
    c = c.to(x.dtype)
    if ch == 3:
        out = c[:, :3, :3] @ flat + c[:, :3, 3:]  # (B, 3, H*W)
    else:
        grey = c[:, :3, :].mean(dim=1, keepdim=True)  # (B, 1, 4): the luma of a grey pixel's colour out
        out = flat * grey[:, :, :3].sum(dim=2, keepdim=True) + grey[:, :, 3:]  # (B, 1, H*W)
    return torch.where(touched.view(-1, 1, 1, 1), out.reshape(b, ch, h, w), x)  # (B, C, H, W)
