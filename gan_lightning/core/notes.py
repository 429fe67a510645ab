"""One-line notes about what a command inferred for the user (a greyscale folder: one channel), held back while the
command checks its input, so that a command refused in one line prints only that line."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

_held: list[str] | None = None  # the notes waiting for the checks to pass; None: print at once


def note(text: str) -> None:
    """Say `note: text` on stderr: at once, or inside `held()` when the command's input has been checked."""
    line = f"note: {text}"
    if _held is None:
        print(line, file=sys.stderr, flush=True)
    else:
        _held.append(line)


def release() -> None:
    """The input has been checked and work begins: print the held notes, and any later one at once."""
    global _held
    for line in _held or []:
        print(line, file=sys.stderr, flush=True)
    _held = None


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold notes back until `release()` or the block's normal end; an error ending the block drops them."""
    global _held
    previous, _held = _held, []
    try:
        yield
        release()
    finally:
        _held = previous
