"""The files gan-prepare writes, written so that a full or failing disk is an OSError naming why (never a SIGBUS from
a memory map) and a failed run can remove exactly the files of its own (see `prepared.py`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.files import preallocate, reason, remove_quietly
from gan_lightning.data.prepared_check import IMAGES, LABELS, LOCK, MANIFEST, PARTIAL, PROGRESS, npy_problem

# What a run writes before it publishes the dataset: the array, its progress record and the files beside them.
PROGRESS_TMP, LABELS_PARTIAL, MANIFEST_PARTIAL = PROGRESS + ".tmp", LABELS + ".partial", MANIFEST + ".partial"
# Every name a gan-prepare run of any version writes in its --out (`write_whole` adds ".tmp").
WRITTEN = frozenset({MANIFEST, IMAGES, LABELS, PROGRESS, PARTIAL, LOCK, PROGRESS_TMP, LABELS_PARTIAL,
                     MANIFEST_PARTIAL, MANIFEST + ".tmp"})  # fmt: skip


def _manifest_kind(path: Path) -> str:
    """What `path`, a manifest.json, is: "ours" for a JSON object with a format and a source (as every version's),
    "unreadable" when it is not JSON (cut short, as a damaged dataset's may be), else "foreign"."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return "unreadable"
    return "ours" if isinstance(manifest, dict) and {"format", "source"} <= manifest.keys() else "foreign"


def check_rebuildable(out: Path) -> None:
    """One-line ConfigError unless `out` is missing, empty or recognisably a prepared dataset of any version
    (finished, interrupted or damaged): a directory of someone else's files is never written into."""
    try:
        names = sorted(set(os.listdir(out)) - {LOCK})
    except (FileNotFoundError, NotADirectoryError):  # nothing to overwrite; a file is `check_writable_dir`'s to say
        return
    except OSError as err:
        raise ConfigError(f"--out {out} cannot be listed ({reason(err)}); pass a directory you can read") from None
    if not names:
        return
    kind = _manifest_kind(out / MANIFEST) if MANIFEST in names else None
    foreign = [name for name in names if name not in WRITTEN]
    # Without a manifest of ours, only gan-prepare's own files with an array or a progress record among them
    # (an interrupted run, or a damaged dataset) say whose the directory is; anything else could be a user's.
    if kind == "ours" or (kind != "foreign" and not foreign and {IMAGES, LABELS, PARTIAL, PROGRESS} & set(names)):
        return
    what = f"a {MANIFEST} gan-prepare did not write" if kind == "foreign" else (foreign or names)[0]
    raise ConfigError(f"--out {out} is neither empty nor a prepared dataset: it holds {what} ({len(names)} "
                      f"entr{'y' if len(names) == 1 else 'ies'} in all); give a new or empty directory")  # fmt: skip


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name `path` in an OSError raised by the block: a failed write() says why but not where."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            err.filename = os.fspath(path)
        raise


def write_synced(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create `path`, `write(f)` into it and put it on the device; an OSError names `path`."""
    with writing(path), open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `path.tmp`, synced, then renamed: a reader sees the old record or the new one,
    never half of one, and a failed write removes the temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_synced(tmp, lambda f: f.write(data))
        os.replace(tmp, path)
    except OSError:
        remove_quietly(tmp)
        raise


def remove_leftovers(out: Path, keep_partial: bool) -> None:
    """Remove what a run writes before it publishes; with `keep_partial` the partial array and its progress record
    (an interrupted run's work, which a rerun continues) stay."""
    for name in (PROGRESS_TMP, LABELS_PARTIAL, MANIFEST_PARTIAL, *(() if keep_partial else (PARTIAL, PROGRESS))):
        remove_quietly(out / name)


class RowFile:
    """A C-order `.npy` array file whose rows are written in place with plain writes: a disk without room fails with
    ENOSPC, where writing into a sparse file through a memory map dies of SIGBUS."""

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f, self.path = f, path
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(f)
        self.offset, self.row_bytes = f.tell(), int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    @classmethod
    def create(cls, path: Path, shape: tuple[int, ...], dtype: type = np.uint8) -> RowFile:
        """A new array file of zeros, every byte allocated now: a disk without room for it fails here."""
        with writing(path):
            f = open(path, "w+b")
            try:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                          "shape": tuple(shape)}  # fmt: skip
                np.lib.format.write_array_header_1_0(f, header)
                preallocate(f, f.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
                f.seek(0)
                return cls(f, path)
            except BaseException:
                f.close()
                raise

    @classmethod
    def open(cls, path: Path) -> RowFile:
        """An existing whole array file (see `whole`), to write more rows into."""
        with writing(path):
            return cls(open(path, "r+b"), path)

    @staticmethod
    def whole(path: Path, shape: tuple[int, ...], dtype: type = np.uint8) -> bool:
        """Whether `path` is a `.npy` file of `shape` and `dtype` with all of its bytes."""
        return npy_problem(path, dtype, shape) is None

    def write(self, row: int, block: np.ndarray) -> None:
        """Write `block` as rows `row`, `row + 1`, ... (all of its bytes, or an OSError)."""
        with writing(self.path):
            self.f.seek(self.offset + row * self.row_bytes)
            self.f.write(np.ascontiguousarray(block).tobytes())

    def sync(self) -> None:
        """Put what was written on the device, so a record that follows describes bytes that are there."""
        with writing(self.path):
            self.f.flush()
            os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> RowFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
