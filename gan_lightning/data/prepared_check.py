"""A prepared dataset's layout and the checks made when it is opened: the manifest parsed and its fields checked,
then checked against the arrays on disk (their `.npy` headers' shape and dtype, and their byte lengths), so a
damaged or edited directory is one line before training instead of an error deep in a run (see `prepared.py`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gan_lightning.core.errors import DataError

FORMAT = 1
MANIFEST, IMAGES, LABELS, PROGRESS = "manifest.json", "images.npy", "labels.npy", "progress.json"
PARTIAL = IMAGES + ".partial"
LOCK = ".gan-prepare.lock"  # held by the gan-prepare run writing the directory; removed when it ends
REWRITE = "rerun gan-prepare to rewrite it"


class DamagedError(DataError):
    """A prepared directory whose files do not agree: `problem` says how, the message adds where and the fix."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"--prepared {path} is damaged: {problem}; {REWRITE}")
        self.problem = problem


def source_record(image_dir: str | Path, files: Sequence[Path]) -> list[list[Any]]:
    """[relative path, size, mtime in ns] of every file: what a prepared dataset was made from."""
    record = []
    for f in files:
        st = os.stat(f)
        record.append([Path(f).relative_to(image_dir).as_posix(), st.st_size, st.st_mtime_ns])
    return record


def source_changes(old: list[list[Any]], new: list[list[Any]]) -> str | None:
    """None when the two source records are equal, else what changed, e.g. "2 files added (e.g. x.jpg)"."""
    if old == new:
        return None
    before = {name: (size, mtime) for name, size, mtime in old}
    after = {name: (size, mtime) for name, size, mtime in new}
    parts = []
    for what, names in (
        ("added", [n for n in after if n not in before]),
        ("removed", [n for n in before if n not in after]),
        ("modified", [n for n in after if n in before and after[n] != before[n]]),
    ):
        if names:
            parts.append(f"{len(names)} file(s) {what} (e.g. {names[0]})")
    return ", ".join(parts) or "the file order changed"


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fields_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's fields on their own, None when nothing is."""
    count, pre, source = manifest.get("count"), manifest.get("preprocessing"), manifest.get("source")
    if not _int(count) or count < 0:
        return f"{MANIFEST} has no valid count ({count!r})"
    if not isinstance(pre, dict) or not all(_int(pre.get(k)) and pre[k] > 0 for k in ("image_size", "channels")):
        return f"{MANIFEST} has no valid preprocessing record"
    size, channels = pre["image_size"], pre["channels"]
    if manifest.get("shape") != [channels, size, size]:
        return f"{MANIFEST} says shape {manifest.get('shape')} for {size}px {channels}-channel images"
    files = source.get("files") if isinstance(source, dict) else None
    if not isinstance(source.get("root") if isinstance(source, dict) else None, str) or not isinstance(files, list):
        return f"{MANIFEST} has no valid source record"
    if not all(isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) for f in files):
        return f"{MANIFEST} has a malformed source file entry"
    if len(files) != count:
        return f"{MANIFEST} says {count} images but lists {len(files)} source files"
    bad = manifest.get("bad")
    if not isinstance(bad, list) or not all(_int(i) and 0 <= i < count for i in bad):
        return f"{MANIFEST} has bad-file rows that are not rows of its {count} images"
    classes = manifest.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        return f"{MANIFEST} has malformed class names"
    return None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """`path`'s manifest, parsed and its fields checked; DamagedError when it is not the JSON gan-prepare writes,
    DataError when it has another format."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:  # ValueError: JSONDecodeError, cut or edited
        reason = err.strerror if isinstance(err, OSError) else f"not JSON: {str(err).splitlines()[0]}"
        raise DamagedError(path, f"{MANIFEST} cannot be read ({reason})") from None
    if not isinstance(manifest, dict):
        raise DamagedError(path, f"{MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise DataError(f"--prepared {path} has format {manifest.get('format')}, this version reads {FORMAT}; "
                        "rerun gan-prepare")  # fmt: skip
    problem = _fields_problem(manifest)
    if problem:
        raise DamagedError(path, problem)
    return manifest


def npy_problem(file: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> str | None:
    """What keeps `file` from being a whole C-order `.npy` array of `dtype` and `shape`, None when nothing does: its
    header is read and its byte length compared with what the header promises (a memory map of a file cut short
    fails later, mid-run)."""
    want = np.dtype(dtype)
    try:
        with open(file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                np.lib.format.read_array_header_2_0)  # fmt: skip
            have_shape, fortran, have_dtype = read_header(f)
            offset = f.tell()
        length = os.stat(file).st_size
    except FileNotFoundError:
        return f"{file.name} is missing"
    except OSError as err:
        return f"{file.name} cannot be read ({err.strerror})"
    except ValueError:  # numpy's own words for a header it cannot parse
        return f"{file.name} is not a .npy array"
    if have_dtype != want or fortran:
        return f"{file.name} holds {have_dtype}{' (Fortran order)' if fortran else ''}, not {want}"
    if tuple(have_shape) != tuple(shape):
        return f"{file.name} has shape {tuple(have_shape)}, the manifest says {tuple(shape)}"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * want.itemsize
    if length != expected:
        how = "cut short" if length < expected else "extra bytes after its data"
        return f"{file.name} has {length} bytes, its header's shape needs {expected} ({how})"
    return None


def check_arrays(path: str | Path, manifest: dict[str, Any]) -> None:
    """DamagedError unless the images and labels on disk are the arrays `manifest` describes (a checked manifest):
    (count, C, S, S) uint8 and (count,) int64, each of its full byte length, the labels within the classes."""
    path = Path(path)
    count, shape = manifest["count"], tuple(manifest["shape"])
    for name, dtype, want in ((IMAGES, np.uint8, (count, *shape)), (LABELS, np.int64, (count,))):
        problem = npy_problem(path / name, dtype, want)
        if problem:
            raise DamagedError(path, problem)
    classes = manifest.get("classes")
    if classes is not None and count:
        labels = np.load(path / LABELS, mmap_mode="r")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= len(classes):
            raise DamagedError(path, f"{LABELS} holds labels {low}..{high}, not class indices 0..{len(classes) - 1}")
