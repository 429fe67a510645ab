"""Plugins: components from the user's own package, registered exactly as this package's own are.

A plugin is a module whose import registers components (`@MODELS.register("tiny")`, `@REGULARIZERS.register(...)`,
...). Three ways to name one, all loaded before any command builds its parser:

- an installed package declares it as an entry point:
  `[project.entry-points."gan_lightning.plugins"] myplug = "myplug.components"` (pyproject.toml);
- `--plugins MODULE[,MODULE]` on any command, for a module that is importable but not packaged;
- `GAN_LIGHTNING_PLUGINS=MODULE[,MODULE]` in the environment.

In Python, a registry loads the entry-point plugins the first time it is asked for a name it does not know, so
`GAN.load_from_checkpoint` finds an installed plugin's model without an explicit `load_plugins()`; a module passed
as `--plugins` must be imported (or `load_plugins`-ed) by the Python caller itself.

A run records the plugins its components came from with their versions (the registries' `origin` of each name it
uses, and `owners` of its injected objects), in `config.yaml` and the checkpoint; the commands import them again
(`require`) before reading either, and stop with one line naming any that is missing.
"""

from __future__ import annotations

import importlib
import inspect
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from gan_lightning.core.errors import ConfigError

ENTRY_POINT_GROUP = "gan_lightning.plugins"
ENV_VAR = "GAN_LIGHTNING_PLUGINS"
CHECKPOINT_KEY = "gan_lightning_plugins"  # {plugin module: version} in a checkpoint; `plugins:` in config.yaml

_loaded: dict[str, str | None] = {}  # plugin module -> its version (None when it declares none)
_loading: list[str] = []  # the plugin modules being imported now, innermost last
_entry_points_loaded = False
_scanning = False  # inside load_entry_points: a registry lookup made by a plugin being imported must not recurse


class PluginError(ConfigError):
    """A plugin that is missing or fails to import."""


def loading() -> str | None:
    """The plugin module being imported right now (what a registration belongs to), or None."""
    return _loading[-1] if _loading else None


def loaded() -> dict[str, str | None]:
    """Every plugin module loaded in this process, with its version."""
    return dict(_loaded)


def split_names(text: str | None) -> list[str]:
    """`a.b, c` -> ["a.b", "c"]: the form of `--plugins` and `$GAN_LIGHTNING_PLUGINS`."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


@contextmanager
def _importing(module: str) -> Iterator[None]:
    _loading.append(module)
    try:
        yield
    finally:
        _loading.pop()


def load_plugin(module: str, version: str | None = None, source: str = "--plugins") -> None:
    """Import the plugin `module` once; one-line PluginError naming it and `source` when the import fails."""
    if module in _loaded:
        return
    with _importing(module):
        try:
            imported = importlib.import_module(module)
        except Exception as err:  # a plugin's own bug must not become a traceback of ours
            # the plugin itself (or a package above it) is absent, not one of its own imports
            absent = (
                isinstance(err, ModuleNotFoundError)
                and err.name is not None
                and (module == err.name or module.startswith(err.name + "."))
            )
            what = "cannot be found" if absent else f"failed to import ({type(err).__name__}: {err})"
            raise PluginError(f"plugin {module} (from {source}) {what}; install it, put it on PYTHONPATH, or stop "
                              "naming it") from None  # fmt: skip
    _loaded[module] = version or getattr(imported, "__version__", None)


def load_entry_points() -> None:
    """Import every plugin installed under the `gan_lightning.plugins` entry-point group (once per process; a
    broken one raises each time it is asked for, so no registry silently lacks the plugins after it)."""
    global _entry_points_loaded, _scanning
    if _entry_points_loaded or _scanning:  # done, or this is a registry lookup made while scanning
        return
    _scanning = True
    try:
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry.dist
            source = f"the entry point {entry.name} of {dist.name if dist else 'an installed package'}"
            load_plugin(entry.value.split(":")[0], dist.version if dist else None, source)
        _entry_points_loaded = True
    finally:
        _scanning = False


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Load the installed entry-point plugins, those named by `$GAN_LIGHTNING_PLUGINS`, then `modules`."""
    load_entry_points()
    for module in split_names(os.environ.get(ENV_VAR)):
        load_plugin(module, source=f"${ENV_VAR}")
    for module in modules:
        load_plugin(module)


def owner(obj: Any) -> str | None:
    """The loaded plugin module that defines `obj` (a class or function) or `obj`'s class, or None."""
    module = obj.__module__ if isinstance(obj, type) or inspect.isroutine(obj) else type(obj).__module__
    return next((p for p in _loaded if module == p or module.startswith(p + ".")), None)


def owners(objects: Iterable[Any]) -> dict[str, str | None]:
    """The plugins (with versions) that define any of `objects`: what a run that uses them needs loaded."""
    found = {plugin for plugin in map(owner, objects) if plugin is not None}
    return {plugin: _loaded[plugin] for plugin in sorted(found)}


def require(recorded: Mapping[str, str | None] | None, what: str) -> None:
    """Import the plugins `recorded` by a run or checkpoint (`what`); one line naming any that cannot be. The version
    loaded is the installed one, whatever the record says."""
    for module, version in (recorded or {}).items():
        try:
            load_plugin(module, source=what)
        except PluginError:
            at = f" {version}" if version else ""
            raise PluginError(f"{what} was made with the plugin {module}{at}, which cannot be imported here; "
                              f"install it, or put it on PYTHONPATH and pass --plugins {module}") from None  # fmt: skip


def versions(modules: Iterable[str | None]) -> dict[str, str | None]:
    """The loaded plugins among `modules` (a registry's `origin` of each name a run uses), with their versions."""
    return {m: _loaded[m] for m in sorted({m for m in modules if m is not None and m in _loaded})}


def checkpoint_plugins(path: Any) -> dict[str, str | None]:
    """The plugins the checkpoint file `path` records (`recorded_in`), its tensors memory-mapped rather than read
    where the file's format allows; {} for a stream, a missing or unreadable file (loading it says what is wrong)."""
    import torch

    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return {}
    for mmap in (True, False):  # only zip-format files map; an older format is read whole
        try:
            with warnings.catch_warnings():  # torch's notes on pickle protocols are not this function's to say
                warnings.simplefilter("ignore")
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            return recorded_in(checkpoint) if isinstance(checkpoint, Mapping) else {}
        except Exception:  # noqa: BLE001 (torch's many load errors): the real load reports them
            continue
    return {}


def recorded_in(checkpoint: Mapping[str, Any]) -> dict[str, str | None]:
    """The plugins a checkpoint records: its GAN's, and its run's (the dataset's) when a training run wrote it."""
    run = checkpoint.get("gan_lightning_run")
    run_plugins = run.get("plugins") if isinstance(run, Mapping) else None
    gan_plugins = checkpoint.get(CHECKPOINT_KEY)
    return {**(gan_plugins if isinstance(gan_plugins, Mapping) else {}),
            **(run_plugins if isinstance(run_plugins, Mapping) else {})}  # fmt: skip
