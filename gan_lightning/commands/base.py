"""One convention for every command: `main(argv)` parses, runs, and turns user errors into one line.

Each command module (train, sample, evaluate, train_classifier, the benchmark) defines `build_parser()` and
`run(cfg) -> int | None`, and its `main(argv)` is `run_command(build_parser, run, argv)`; the files in
`scripts/` only call `main`. Every command takes `--plugins MODULE[,MODULE]`: the plugins (those installed as
entry points, `$GAN_LIGHTNING_PLUGINS` and these) are loaded before the parser is built, so their components'
names and options are the command's own; a `--config` file's recorded plugins are loaded too.

Exit statuses: 0 done, 2 bad input or data (one line on stderr, nothing written),
4 an output could not be written (a full disk: one line naming what is intact), anything else a `CommandStopped`
carries (3 non-finite loss, 5 another process of a multi-device run died or a collective failed, 130 signal).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from gan_lightning.core import notes, plugins
from gan_lightning.core.errors import ConfigError, DataError, WriteError
from gan_lightning.core.options import check_seed

WRITE_FAILED = 4  # the exit status of a command whose output could not be written


class CommandStopped(Exception):
    """A command ended early for a reason the user must see; carries the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


PLUGINS_HELP = (
    "import these modules first: each registers components (models, losses, regularizers, "
    "augmentations, datasets, extractors) as an installed plugin's entry point does"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help lines wrapped between words only: a flag named in a help text (`--lecam-schedule`) is never split at
    its hyphens across two lines, so it can be copied as printed. The description and epilog keep their lines."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the full usage is one `--help` away); every command's parser
    takes `--plugins`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--plugins", metavar="MODULE[,MODULE]", default=None, help=PLUGINS_HELP)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def seed(text: str) -> int:
    """A `--seed` value, 0 to 2^32 - 1 (argparse's `type`: anything else is a one-line error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    try:
        check_seed(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--seed ")) from None
    return value


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


def load_command_plugins(argv: Sequence[str]) -> None:
    """Load the plugins a command line asks for: installed, `$GAN_LIGHTNING_PLUGINS`, `--plugins`, and those that
    a `--config` file (a run's config.yaml, or its directory) or a `--ckpt` / `--ckpt-path` checkpoint recorded."""
    scan = argparse.ArgumentParser(add_help=False)
    for flag in ("--plugins", "--config", "--ckpt", "--ckpt-path"):
        scan.add_argument(flag)
    known, _ = scan.parse_known_args(argv)
    plugins.load_plugins(plugins.split_names(known.plugins))
    if known.config:
        plugins.require(recorded_plugins(known.config), f"the run of --config {known.config}")
    for ckpt in (known.ckpt, known.ckpt_path):
        if ckpt and Path(ckpt).is_file():
            plugins.require(plugins.checkpoint_plugins(ckpt), f"the checkpoint {ckpt}")


def recorded_doc(config: str | Path) -> dict[str, Any]:
    """A run's `config.yaml` (or that of RUN_DIR) as a mapping; {} when there is none or it cannot be read (the
    command that needs it whole says what is wrong with the file)."""
    path = Path(config) / "config.yaml" if Path(config).is_dir() else Path(config)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def recorded_plugins(config: str | Path) -> dict[str, str | None]:
    """The plugins a run's `config.yaml` (or RUN_DIR) recorded; {} when it records none or cannot be read."""
    recorded = recorded_doc(config).get("plugins")
    return dict(recorded) if isinstance(recorded, dict) else {}


def prog_of(parser: argparse.ArgumentParser | Callable[[], argparse.ArgumentParser]) -> str:
    """The command's name for an error line: its parser's, or the script's when the parser cannot be built."""
    try:
        return (parser if isinstance(parser, argparse.ArgumentParser) else parser()).prog
    except ConfigError:
        return Path(sys.argv[0]).name


def run_command(
    parser: argparse.ArgumentParser | Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
    recorded_runs: Callable[[Sequence[str]], Sequence[Path]] = lambda argv: (),
) -> int:
    """Load the plugins, build the parser (`parser` may be its builder), parse `argv`, call `run`, and map user
    errors to one stderr line and their exit status. `recorded_runs(argv)`: the config.yaml files of runs the
    command line continues without naming them (the train command's `--ckpt-path last`), whose plugins it needs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        load_command_plugins(argv)
        for config in recorded_runs(argv):
            plugins.require(recorded_plugins(config), f"the run {config.parent}")
        if not isinstance(parser, argparse.ArgumentParser):
            parser = parser()  # from the declarations, plugins' included: two that clash are refused here
    except ConfigError as err:
        print(f"{prog_of(parser)}: error: {one_line(err)}", file=sys.stderr)
        return 2
    cfg = parser.parse_args(argv)
    vars(cfg).pop("plugins", None)  # loaded above; a run records the plugins its components come from instead
    try:
        with notes.held():  # a command refused in one line prints that line only
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
