"""Registries: name -> component, so every kind of component (model, objective, regularizer, augmentation
transform, dataset, feature extractor) is chosen by name, and a new one is one file that registers itself.

A component file inside a registry's package needs no import line elsewhere: the package imports all its modules
(`import_submodules`). A file in the user's own package registers the same way, loaded as a plugin
(`gan_lightning.core.plugins`); each entry remembers the plugin that registered it (`origin`), so a run records
which plugins it needs and a name registered twice says who took it first.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from gan_lightning.core import plugins

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names fail with the list of valid choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, str | None] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under `name` (recorded as the plugin's when a plugin is loading)."""

        def decorator(obj: T) -> T:
            if name in self._items:
                by = self._origins.get(name) or "gan_lightning"
                raise ValueError(f"{self.kind} {name!r} is already registered by {by}; register it under another name")
            self._items[name] = obj
            self._origins[name] = plugins.loading()
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered under `name`, or raise a ValueError listing the choices."""
        if name not in self._items:
            plugins.load_entry_points()  # an installed plugin may provide it
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def origin(self, name: str) -> str | None:
        """The plugin module that registered `name`, or None for this package's own components."""
        return self._origins.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted, the installed plugins' included."""
        plugins.load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            plugins.load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def import_submodules(package: str) -> None:
    """Import every module of `package` (not its subpackages' modules), so each component file registers itself."""
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
