"""Options declared once, by the component that uses them.

A component (the latent space, the networks, an objective, the augmentation, the EMA, the optimizers, a dataset,
the run itself) lists its options as `Option`s in a class attribute `options` (or a module constant). Everything
else is derived from those declarations: the command-line flags and `--help`, the defaults a preset or a replayed
`config.yaml` fills in, the validation of values (one line, exit status 2), the hyperparameters a checkpoint saves,
and the rules for resuming with changed values:

- `resume="refuse"`: the option defines the networks or the data's shape; a checkpoint only fits the same value.
- `resume="warn"`: a training setting; a resumed run continues with the new value, warns and records the change.
- `resume="free"`: how this invocation runs (devices, logging cadence, length); changes are neither refused nor
  recorded as changes.
- `resume="transient"`: belongs to one invocation only (`--ckpt-path`, `--config`): not written to `config.yaml`.

Why declarations instead of LightningCLI/jsonargparse: the flags, presets and `config.yaml` of earlier releases must
keep working exactly (`--nz`, `--preset`, `--config RUN_DIR`, per-dataset defaults), and the resume rules are ours;
a dataclass-like record per option gives all of that in one small file without a second configuration language.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gan_lightning.core.errors import ConfigError

RESUME_RULES = ("refuse", "warn", "free", "transient")


class Reset(str):
    """The value of `--NAME none`: the option's declared default, whatever a preset or a recorded config says."""

    __slots__ = ()


RESET = Reset("none")


def resetting(value_type: Callable[[str], Any]) -> Callable[[str], Any]:
    """`value_type` that also reads the word `none` as `RESET`."""

    def parse(text: str) -> Any:
        return RESET if text.lower() == "none" else value_type(text)

    parse.__name__ = getattr(value_type, "__name__", "value")  # argparse names the type in its errors
    return parse


@dataclass(frozen=True)
class Option:
    """One option: its name (`reg_every`, flag `--reg-every`), type, default, help, valid values and resume rule.

    `default=None` means "unset": the component picks (for example the objective's own D steps) and `default_text`
    says what happens. `choices` may be a callable, so a registry's names are read when the flags are built.
    `minimum` / `positive` / `below` bound numbers; `check(value)` may raise ConfigError for anything else.
    `schedule="weight"` makes a component's float option schedulable: the schedule writes the component's `weight`.
    """

    name: str
    default: Any
    help: str | Callable[[], str]  # a callable is read when the flags are built (a registry's names)
    type: Callable[[str], Any] | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    positive: bool = False
    minimum: float | None = None
    below: float | None = None
    resume: str = "warn"
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    default_text: str | None = None
    check: Callable[[Any], None] | None = field(default=None, compare=False)
    # the attribute of the built component that holds this value: the option can then be scheduled over the run
    # (`--NAME-schedule`, `--NAME-final`; training/schedules.py)
    schedule: str | None = None

    def __post_init__(self) -> None:
        if self.resume not in RESUME_RULES:
            raise ValueError(f"option {self.name}: resume must be one of {RESUME_RULES}, got {self.resume!r}")

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. `--reg-every`."""
        return "--" + self.name.replace("_", "-")

    @property
    def value_type(self) -> Callable[[str], Any]:
        """How a command-line string becomes a value: `type`, else the default's type, else str."""
        if self.type is not None:
            return self.type
        if self.default is not None and not isinstance(self.default, bool):
            return type(self.default)
        return str

    @property
    def is_flag(self) -> bool:
        """Whether this is an on/off switch (a bool)."""
        return self.type is bool or isinstance(self.default, bool)

    def valid_choices(self) -> list[Any] | None:
        """The allowed values, or None when any value of the type is allowed."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def validate(self, value: Any) -> None:
        """Raise one-line ConfigError naming the flag when `value` is out of range (None is "unset" and passes)."""
        if value is None or self.is_flag:
            return
        choices = self.valid_choices()
        if choices is not None and value not in choices:
            raise ConfigError(f"unknown {self.name} {value!r}; choose one of: {', '.join(map(str, choices))}")
        if isinstance(value, float) and math.isinf(value):  # inf passes every lower bound, then breaks the maths
            raise ConfigError(f"{self.flag} must be a finite number, got {value}")
        low = "(0" if self.positive else None if self.minimum is None else f"[{self.minimum:g}"
        # written as "not inside" so that NaN, which fails every comparison, is out of range too
        out_of_range = (self.positive and not value > 0) or (self.minimum is not None and not value >= self.minimum)
        if self.below is not None:
            if out_of_range or not value < self.below:
                raise ConfigError(f"{self.flag} must lie in {low or '(-inf'}, {self.below:g}), got {value}")
        elif out_of_range:
            bound = "be positive" if self.positive else f"be >= {self.minimum:g}"
            raise ConfigError(f"{self.flag} must {bound}, got {value}")
        if self.check is not None:
            self.check(value)

    def help_text(self) -> str:
        """The `--help` line: the declaration's help plus its default."""
        text = self.help() if callable(self.help) else self.help
        if self.default_text is not None:
            return f"{text} (default: {self.default_text})"
        if self.is_flag and not self.default:
            return text
        return f"{text} (default {self.default})"

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup, nargs: str | None = None,
               resettable: bool = False) -> None:  # fmt: skip
        """Add the flag to an argparse parser; it parses to None when not given, so presets and configs can fill it.

        `nargs="+"` lets a command take several values of the option at once (evaluate.py --truncation 0.5 1).
        `resettable`: where presets and recorded configs fill in values, every switch also gets `--no-NAME`, and an
        option whose default is None (unset, or off) also takes the word `none`, parsed to `RESET`."""
        names = [self.flag, *self.aliases]
        if self.is_flag:
            optional = self.default is None or resettable
            action: Any = argparse.BooleanOptionalAction if optional else "store_true"
            parser.add_argument(*names, dest=self.name, action=action, default=None, help=self.help_text())
            return
        choices = self.valid_choices()
        value_type = self.value_type
        if resettable and self.default is None:
            value_type = resetting(value_type)
            choices = None if choices is None else [*choices, RESET]
        parser.add_argument(*names, dest=self.name, type=value_type, default=None, metavar=self.metavar,
                            choices=choices, nargs=nargs, help=self.help_text())  # fmt: skip


class Options(Sequence[Option]):
    """An ordered set of declared options, each name once; what components expose and the command line reads."""

    def __init__(self, *groups: Iterable[Option]) -> None:
        self._by_name: dict[str, Option] = {}
        for group in groups:
            for option in group:
                known = self._by_name.get(option.name)
                if known is not None and known != option:
                    # two components (a plugin's and another's, usually) claim one flag for different things
                    said = [" ".join(o.help_text().split())[:60] for o in (known, option)]
                    raise ConfigError(f"{option.flag} is declared twice, differently ({said[0]!r} and {said[1]!r}): "
                                      "a plugin's option clashes with another component's; rename one")  # fmt: skip
                self._by_name[option.name] = option

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return self._by_name[index]
        return list(self._by_name.values())[index]

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Option]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self, resume: str | None = None) -> list[str]:
        """Option names in declaration order, optionally only those with one resume rule."""
        return [o.name for o in self if resume is None or o.resume == resume]

    def defaults(self) -> dict[str, Any]:
        """Every option's declared default."""
        return {o.name: o.default for o in self}

    def resolve(self, values: Mapping[str, Any], *, what: str = "option") -> dict[str, Any]:
        """Declared defaults overlaid with `values` (unknown names refused), every value validated."""
        unknown = sorted(set(values) - set(self._by_name))
        if unknown:
            raise ConfigError(f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(self._by_name))}")  # fmt: skip
        resolved = {**self.defaults(), **values}
        for option in self:
            option.validate(resolved[option.name])
        return resolved

    def validate(self, **values: Any) -> None:
        """Check named values by their declarations: a component's own constructor, called directly, gives the
        command line's one-line errors without restating its ranges."""
        for name, value in values.items():
            self._by_name[name].validate(value)

    def pick(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of `values` that are options of this set."""
        return {k: v for k, v in values.items() if k in self._by_name}


def probability(flag: str) -> Callable[[float], None]:
    """An Option `check` refusing, in one line naming `flag`, a value outside [0, 1] (NaN included)."""

    def check(p: float) -> None:
        if not 0 <= p <= 1:  # also refuses NaN
            raise ConfigError(f"{flag} is a probability in [0, 1], got {p}")

    return check


SEED_LIMIT = 2**32  # seeds go from 0 to 2^32 - 1: numpy's range, and Lightning's seed_everything refuses others


def check_seed(value: int) -> None:
    """Refuse, in one line, a `--seed` outside 0 .. 2^32 - 1."""
    if not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"--seed {value} is out of range: seeds go from 0 to {SEED_LIMIT - 1}")


def call_with(fn: Callable[..., Any], options: Mapping[str, Any], **fixed: Any) -> Any:
    """`fn(**fixed, **the options its signature names)`: a component takes exactly the options it uses."""
    params = inspect.signature(fn).parameters
    return fn(**fixed, **{k: v for k, v in options.items() if k in params and k not in fixed})


def declared(*owners: Any) -> Options:
    """The options the classes (their whole MRO) or modules in `owners` declare in their `options` attribute."""
    groups: list[Iterable[Option]] = []
    for owner in owners:
        for cls in reversed(owner.__mro__) if isinstance(owner, type) else (owner,):
            own = vars(cls).get("options") if isinstance(owner, type) else getattr(owner, "options", ())
            if own:
                groups.append(own)
    return Options(*groups)
