"""Injected components in hyperparameters: a checkpoint of `GAN(objective=X)` or `GAN(generator=G, ...)` records
what was injected (its importable class and its constructor options) so `load_from_checkpoint` can rebuild it.

The options come from `obj.init_options()` where the class defines it (this package's objectives do), and every
other constructor parameter is read back from the attribute of the same name. A parameter that cannot be read back
(even one with a default: the default might rebuild a different network), a class that cannot be imported (defined
in a notebook or a function) or options that are not plain values make rebuilding impossible; loading then stops
with one line naming the class and the argument to pass."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from gan_lightning.core.compat import current_path
from gan_lightning.core.errors import ConfigError

PLAIN = (bool, int, float, str, type(None))
SPEC_KEY = "class"  # a recorded component is {"class": "package.module.Name", "options": {...}}


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, PLAIN)


def describe_component(obj: Any) -> dict[str, Any]:
    """{"class": import path, "options": constructor options} of `obj`, plus "missing" for what was not found."""
    cls = type(obj)
    path = f"{cls.__module__}.{cls.__qualname__}"
    # what the class says about itself wins; every other constructor parameter is read back from its attribute,
    # and one that cannot be read back is missing (a default might silently rebuild a different network)
    options = dict(obj.init_options()) if hasattr(obj, "init_options") else {}
    missing = []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in options or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(obj, name, inspect.Parameter.empty)
        if value is not inspect.Parameter.empty and _plain(value):
            options[name] = value
        else:
            missing.append(name)
    spec: dict[str, Any] = {SPEC_KEY: path, "options": {k: v for k, v in options.items() if _plain(v)}}
    if missing:
        spec["missing"] = missing
    return spec


def is_spec(value: Any) -> bool:
    """Whether `value` is a recorded component (not a live object)."""
    return isinstance(value, dict) and SPEC_KEY in value


def _rebuild(value: Any, argument: str) -> Any:
    if is_spec(value):
        return build_component(value, argument)
    if isinstance(value, list) and value and all(is_spec(v) for v in value):
        return [build_component(v, argument) for v in value]
    return value


def build_component(spec: dict[str, Any], argument: str) -> Any:
    """The component `spec` records, rebuilt; one-line ConfigError naming `argument` to pass when it cannot be."""
    path = current_path(spec[SPEC_KEY])
    module = path.rpartition(".")[0]
    hint = f"pass {argument}=... (an instance of {path}) to load_from_checkpoint"
    if "<locals>" in path or module == "__main__":
        raise ConfigError(f"the checkpoint's {argument} is {path}, defined where it cannot be imported; {hint}")
    if spec.get("missing"):
        raise ConfigError(f"the checkpoint's {argument} {path} did not record its options "
                          f"{', '.join(spec['missing'])}; {hint}")  # fmt: skip
    # the class name may be nested (Outer.Inner): import the longest importable module prefix
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            break
        options = {k: _rebuild(v, f"{argument}'s {k}") for k, v in spec.get("options", {}).items()}
        try:
            return obj(**options)
        except TypeError as err:
            raise ConfigError(f"cannot rebuild the checkpoint's {argument} {path}: {err}; {hint}") from None
    raise ConfigError(f"the checkpoint's {argument} is {path}, which cannot be imported here; make {module} "
                      "importable (install the package that defines it, or put it on PYTHONPATH; the commands also "
                      f"take --plugins {module}), or in Python {hint}")  # fmt: skip
