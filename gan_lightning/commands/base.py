"""One convention for every command: `main(argv)` parses, runs, and turns user errors into one line.

Each command module (train, sample, evaluate, train_classifier, the benchmark) defines `build_parser()` and
`run(cfg) -> int | None`, and its `main(argv)` is `run_command(build_parser(), run, argv)`; the files in
`scripts/` only call `main`. Exit statuses: 0 done, 2 bad input or data (one line on stderr, nothing written),
4 an output could not be written (a full disk: one line naming what is intact), anything else a `CommandStopped`
carries (3 non-finite loss, 5 another process of a multi-device run died or a collective failed, 130 signal).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from gan_lightning.core.errors import ConfigError, DataError, WriteError

WRITE_FAILED = 4  # the exit status of a command whose output could not be written


class CommandStopped(Exception):
    """A command ended early for a reason the user must see; carries the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the full usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def one_line(err: BaseException) -> str:
    """The user-facing line of an error: a DataLoader worker's re-raised error carries the worker's whole
    traceback in its message, whose last line is the original error."""
    text = str(err).strip()
    if "\n" not in text:
        return text
    last = text.splitlines()[-1].strip()
    head, sep, message = last.partition(": ")
    # "gan_lightning.core.errors.DataError: cannot read image ..." -> the message after the exception's name
    return message if sep and head.replace(".", "").replace("_", "").isalnum() else last


def run_command(
    parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None], argv: Sequence[str] | None
) -> int:
    """Parse `argv`, call `run`, and map user errors to one stderr line and their exit status."""
    cfg = parser.parse_args(argv)
    try:
        return run(cfg) or 0
    except (ConfigError, DataError) as err:
        print(f"{parser.prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except WriteError as err:
        print(f"{parser.prog}: error: {one_line(err)}", file=sys.stderr)
        return WRITE_FAILED
    except CommandStopped as err:
        if str(err):  # empty: another process of the same run has said it
            print(f"{parser.prog}: {one_line(err)}", file=sys.stderr)
        return err.status
