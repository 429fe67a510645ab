"""Errors that carry a message meant for the user: what is wrong and how to fix it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """An invalid option or combination of options."""


class DataError(RuntimeError):
    """Data that is missing, unreadable or unusable."""


class WriteError(RuntimeError):
    """An output that could not be written (a full or failing disk, a directory that cannot be created); the
    message names the path, the reason, and what is still intact."""


def require_positive(**values: float | None) -> None:
    """Raise `ConfigError` naming the first value that is not positive (None means unset and passes)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, cut at `limit` characters, for a one-line error."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


def load_weights_file(path: str | Path, what: str, hint: str, map_location: str = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`, every failure turned into one line about `what` the file should be.

    Every failure is a DataError: missing, a directory, truncated, not written by `torch.save`, or refused by the
    weights-only unpickler (a pickled object whose loading would run code, or bytes it cannot parse).
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory, not {what}; {hint}")
    if not path.is_file():
        raise DataError(f"no {what} at {path}; {hint}")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols would add lines to a one-line error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        text = str(err)
        if "Weights only load failed" in text:
            # torch's message cannot tell a pickled object (code would run) from a damaged or foreign file
            lines = [x.strip() for x in text.split("Check the documentation")[0].splitlines() if x.strip()]
            raise DataError(f"refusing to load {path}: not a plain weights file, so unpickling it would run code or "
                              f"it is damaged ({lines[-1][:120]}); {hint}") from None  # fmt: skip
        raise DataError(f"{path} is not a readable {what} (truncated, or not written by torch.save); {hint}") from None
