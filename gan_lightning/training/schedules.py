"""Schedules over the run for the learning rate, the R1/R2 gamma, the EMA horizon and the augmentation
probability, as R3GAN trains (its lr and gamma cosine-decay, its EMA horizon and augmentation probability grow).

A schedule is a pure function of (iteration, total iterations): `constant` keeps the option's value (the
behaviour without schedules), `linear` and `cosine` go from the option's value at iteration 0 to `--T-final` at
the end of the run. Every `--T-final` is an absolute value of the quantity, as R3GAN's configurations give them:

- `lr`: the learning rate of both optimizers (G's and D's share `--lr`).
- `beta2`: Adam's beta2 of both optimizers (R3GAN's 0.9 -> 0.99).
- `gamma`: R1's and R2's gamma; each penalty that is on runs from its own `--r1` / `--r2` to `--gamma-final`,
  one that is off stays off.
- `ema`: an EMA decay (like `--ema-decay`); what is interpolated is the decay's half-life in iterations,
  ln 0.5 / ln decay (the averaging horizon; StyleGAN2 and R3GAN state the EMA as a half-life), not the decay
  itself, whose horizon would otherwise stay short until the very end. The ramp-up (`--ema-rampup`) still caps it.
- `aug`: the augmentation's per-sample probability `p` (a buffer of the augmentation); an adaptive augmentation,
  one that sets `p` from what it `observe`s, is refused: its controller owns `p`.
- any option a component (the objective, a regularizer, the augmentation) declares with `schedule="attribute"`:
  `--NAME-schedule` / `--NAME-final` are made from that declaration, and the schedule writes the built component's
  attribute (LeCam's `--lecam` weight, a plugin regularizer's weight), logged as `train/NAME_attribute`.

`--schedule-length N` ends every schedule at iteration N, holding the final values after it (R3GAN decays over its
first 20M images and trains on); without it, the total is the run's iteration budget (the Trainer's `max_steps` in
iterations): a run with neither cannot have a non-constant schedule. The schedules are applied at the start of every
iteration, before anything uses the values, and hold no state, so a resumed run continues exactly; a run resumed
with another `--max-steps` stretches its schedules to the new total. Each scheduled value is logged as
`train/<name>` (`lr`, `beta2`, `r1_gamma`, `r2_gamma`, `ema_half_life`, `aug_p`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, declared
from gan_lightning.regularizers.zero_centered import R1, R2

SHAPES = ("constant", "linear", "cosine")
TARGETS = ("lr", "beta2", "gamma", "ema", "aug")


def _probability(value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"--aug-final is a probability in [0, 1], got {value}")


# fmt: off
options = (
    Option("lr_schedule", "constant", "learning-rate schedule over the run, from --lr to --lr-final", choices=SHAPES),
    Option("lr_final", None, "learning rate of G and D at the end of the run (with --lr-schedule linear or cosine)",
           type=float, minimum=0, default_text="none"),
    Option("beta2_schedule", "constant", "Adam beta2 schedule over the run, from --beta2 to --beta2-final (R3GAN: "
           "0.9 -> 0.99)", choices=SHAPES),
    Option("beta2_final", None, "Adam beta2 of G and D at the end of the run", type=float, minimum=0, below=1,
           default_text="none"),
    Option("schedule_length", None, "iterations over which every schedule runs, holding its final value after "
           "(R3GAN decays over 20M images of a longer run)", type=int, positive=True, metavar="ITERATIONS",
           default_text="the run's length"),
    Option("gamma_schedule", "constant", "R1/R2 gamma schedule over the run, from --r1 / --r2 to --gamma-final",
           choices=SHAPES),
    Option("gamma_final", None, "R1 and R2 gamma at the end of the run (penalties that are off stay off)",
           type=float, minimum=0, metavar="GAMMA", default_text="none"),
    Option("ema_schedule", "constant", "EMA horizon schedule over the run: the half-life, from --ema-decay's to "
           "--ema-final's", choices=SHAPES),
    Option("ema_final", None, "EMA decay at the end of the run (its half-life is what is interpolated)", type=float,
           positive=True, below=1, default_text="none"),
    Option("aug_schedule", "constant", "augmentation probability schedule over the run, from the augmentation's p "
           "to --aug-final", choices=SHAPES),
    Option("aug_final", None, "augmentation probability p at the end of the run", type=float, minimum=0,
           check=_probability, default_text="none"),
)
# fmt: on


def schedule_value(shape: str, base: float, final: float, iteration: int, total: int) -> float:
    """The value at `iteration` (0-based) of a `total`-iteration run going from `base` to `final`."""
    if shape == "constant":
        return base
    t = min(max(iteration / total, 0.0), 1.0)
    if shape == "linear":
        return base + (final - base) * t
    if shape == "cosine":
        return final + (base - final) * (1 + math.cos(math.pi * t)) / 2
    raise ConfigError(f"unknown schedule {shape!r}; choose one of: {', '.join(SHAPES)}")


def half_life(decay: float) -> float:
    """The half-life in iterations of an EMA with this per-iteration decay."""
    return math.log(0.5) / math.log(decay)


# How each scheduled value reaches the module (module-level functions, so a GAN holding them still pickles).
def _set_lr(gan: Any, value: float) -> None:
    for optimizer in gan.trainer.optimizers:
        for group in optimizer.param_groups:
            group["lr"] = value


def _set_beta2(gan: Any, value: float) -> None:
    for optimizer in gan.trainer.optimizers:
        for group in optimizer.param_groups:
            group["betas"] = (group["betas"][0], value)


def _set_r1(gan: Any, value: float) -> None:
    gan.objective.regularizer(R1).gamma = value


def _set_r2(gan: Any, value: float) -> None:
    gan.objective.regularizer(R2).gamma = value


def _set_ema_half_life(gan: Any, value: float) -> None:
    gan.ema.decay = 0.5 ** (1.0 / value)


def _set_aug_p(gan: Any, value: float) -> None:
    augment = gan.objective.augment
    if hasattr(augment, "set_p"):  # DiffAugment keeps a host copy of p beside the buffer
        augment.set_p(value)
    else:
        augment.p.fill_(value)


@dataclass(frozen=True)
class Schedule:
    """One scheduled value: `shape` from `base` to `final` over the run, written into the module by `write`."""

    target: str  # lr, gamma, ema or aug: the flags --<target>-schedule and --<target>-final
    name: str  # logged as train/<name>
    shape: str
    base: float
    final: float
    write: Callable[[Any, float], None]

    def value(self, iteration: int, total: int) -> float:
        """The value at `iteration` of `total`."""
        return schedule_value(self.shape, self.base, self.final, iteration, total)


class Schedules:
    """The GAN's non-constant schedules; `apply` sets their values at the start of an iteration."""

    def __init__(self, schedules: list[Schedule], length: int | None = None) -> None:
        self.schedules, self.length = schedules, length

    @classmethod
    def from_options(cls, options: Mapping[str, Any], objective: Any, ema: Any) -> Schedules:
        """The schedules the declared `options` ask for, from the values the GAN was built with (one-line
        ConfigError for a schedule without its final value or with nothing to schedule). A `--T-final` without a
        schedule is ignored, so a replayed run can switch its schedule off."""
        active = scheduled_targets(options)
        for target in (t for t in active if t in TARGETS):
            shape, final = shape_and_final(options, target)
            if final is None:
                raise ConfigError(f"--{target}-schedule {shape} needs --{target}-final (the value at the end)")
        schedules = []

        def add(target: str, name: str, base: float, final: float, write: Callable[[Any, float], None]) -> None:
            schedules.append(Schedule(target, name, shape_and_final(options, target)[0], base, final, write))

        if "lr" in active:
            add("lr", "lr", options["lr"], options["lr_final"], _set_lr)
        if "beta2" in active:
            add("beta2", "beta2", options["beta2"], options["beta2_final"], _set_beta2)
        if "gamma" in active:
            on = [(n, getattr(objective, n)) for n in ("r1", "r2") if getattr(objective, n, 0)]
            if not on:
                raise ConfigError("--gamma-schedule needs a penalty to schedule: --r1 and/or --r2")
            for name, gamma in on:
                add("gamma", f"{name}_gamma", gamma, options["gamma_final"], {"r1": _set_r1, "r2": _set_r2}[name])
        if "ema" in active:
            if ema is None:
                raise ConfigError("--ema-schedule needs an EMA generator: pass --ema-decay")
            add("ema", "ema_half_life", half_life(ema.decay), half_life(options["ema_final"]), _set_ema_half_life)
        if "aug" in active:
            add("aug", "aug_p", _augmentation_p(getattr(objective, "augment", None)), options["aug_final"], _set_aug_p)
        schedules += component_schedules(options, objective)
        unknown = set(active) - {s.target for s in schedules} - set(TARGETS)
        if unknown:  # a schedule of a component this run does not use (a regularizer switched off)
            flags = ", ".join(f"--{t.replace('_', '-')}-schedule" for t in sorted(unknown))
            raise ConfigError(f"{flags}: nothing to schedule; switch its component on (e.g. a positive weight)")
        return cls(schedules, options.get("schedule_length"))

    def apply(self, gan: Any, iteration: int, total: int | None) -> dict[str, float]:
        """Set every scheduled value for `iteration` of `total` (None: no budget, refused when anything is
        scheduled unless a schedule length is set: the schedules then end there); returns the values by name."""
        total = self.length or total
        check_run_length([s.target for s in self.schedules], total)
        values = {s.name: s.value(iteration, total) for s in self.schedules}
        for s in self.schedules:
            s.write(gan, values[s.name])
        return values


def scheduled_targets(options: Mapping[str, Any]) -> list[str]:
    """The targets (lr, gamma, ema, aug, and any component option declared schedulable) whose declared `options`
    ask for a schedule other than constant."""
    split = (key.rpartition("_") + (shape,) for key, shape in options.items())  # (target, "_", kind, shape)
    return [target for target, _, kind, shape in split if kind == "schedule" and shape not in (None, "constant")]


def shape_and_final(options: Mapping[str, Any], target: str) -> tuple[str, float | None]:
    """`target`'s schedule shape (`--T-schedule`) and end value (`--T-final`) in the declared `options`."""
    return options[f"{target}_schedule"], options[f"{target}_final"]


def schedule_options(declared_options: Iterable[Option]) -> list[Option]:
    """`--NAME-schedule` and `--NAME-final` for every option declared schedulable (`Option(schedule=attribute)`)."""
    made = []
    for option in declared_options:
        if option.schedule is not None:
            flag = option.flag
            made.append(Option(f"{option.name}_schedule", "constant", f"{flag} schedule over the run, from {flag} to "
                               f"{flag}-final", choices=SHAPES))  # fmt: skip
            # the value's own bounds (a weight >= 0, a probability <= 1) hold at the end of the run too
            made.append(dataclasses.replace(option, name=f"{option.name}_final", default=None, help=f"{flag} at the "
                                            f"end of the run (with {flag}-schedule linear or cosine)", type=float,
                                            resume="warn", aliases=(), default_text="none", schedule=None))  # fmt: skip
    return made


@dataclass(frozen=True)
class SetComponentValue:
    """Writes a schedule's value into `attribute` of the objective's component at `path` (a picklable writer)."""

    path: tuple[str, ...]  # from the GAN: ("objective",), ("objective", "regularizers", "lecam"), ...
    attribute: str

    def __call__(self, gan: Any, value: float) -> None:
        component = gan
        for step in self.path:
            component = getattr(component, step)
        setattr(component, self.attribute, value)


def component_schedules(options: Mapping[str, Any], objective: Any) -> list[Schedule]:
    """The schedules of the schedulable options of the objective, its regularizers and its augmentation."""
    parts: list[tuple[tuple[str, ...], Any]] = [(("objective",), objective)]
    parts += [(("objective", "regularizers", key), r) for key, r in getattr(objective, "regularizers", {}).items()]
    augment = getattr(objective, "augment", None)
    parts += [(("objective", "augment"), augment)] if augment is not None else []
    schedules = []
    for path, component in parts:
        for option in declared(type(component)):
            shape = options.get(f"{option.name}_schedule", "constant")
            if option.schedule is None or shape == "constant":
                continue
            final = options[f"{option.name}_final"]
            if final is None:
                raise ConfigError(f"{option.flag}-schedule {shape} needs {option.flag}-final (the value at the end)")
            base = float(getattr(component, option.schedule))
            write = SetComponentValue(path, option.schedule)
            schedules.append(Schedule(option.name, f"{option.name}_{option.schedule}", shape, base, final, write))
    return schedules


def total_iterations(max_steps: int, steps_per_iteration: int) -> int | None:
    """A Trainer's `max_steps` (optimizer steps) in iterations, at least one; None when it has no budget (-1)."""
    return max(1, max_steps // steps_per_iteration) if max_steps is not None and max_steps > 0 else None


def check_run_length(targets: list[str], total: int | None) -> None:
    """Refuse non-constant schedules of `targets` (lr, gamma, ...) in a run without an iteration budget."""
    if targets and total is None:
        flags = ", ".join(dict.fromkeys(f"--{t}-schedule" for t in targets))
        raise ConfigError(f"{flags} needs the run's length in iterations: pass --max-steps (in Python, "
                          "Trainer(max_steps=gan.optimizer_steps(iterations)))")  # fmt: skip


def _augmentation_p(augment: Any) -> float:
    """The augmentation's probability `p` at build time, the aug schedule's start; refuses what cannot take one."""
    if augment is None:
        raise ConfigError("--aug-schedule needs an augmentation with a probability p (e.g. --diffaug POLICY)")
    if hasattr(augment, "observe"):
        raise ConfigError(f"--aug-schedule: {type(augment).__name__} is adaptive (it sets p from what it observes); "
                          "drop --aug-schedule or use a fixed augmentation")  # fmt: skip
    p = getattr(augment, "p", None)
    if not isinstance(p, torch.Tensor):  # the schedule writes it in place, as a buffer
        raise ConfigError(f"--aug-schedule: the augmentation {type(augment).__name__} has no probability p to schedule")
    return float(p)
