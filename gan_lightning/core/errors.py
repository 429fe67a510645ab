"""Errors that carry a message meant for the user: what is wrong and how to fix it."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid option or combination of options."""


class DataError(RuntimeError):
    """Data that is missing, unreadable or unusable."""


class WriteError(RuntimeError):
    """An output that could not be written (a full or failing disk, a directory that cannot be created); the
    message names the path, the reason, and what is still intact."""


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, cut at `limit` characters, for a one-line error."""
    return (str(err).strip().splitlines() or [""])[0][:limit]
