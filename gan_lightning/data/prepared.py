"""Image folders prepared once: every file decoded, resized and cropped with the lazy path's exact preprocessing
into one packed uint8 array at the training resolution, read back memory-mapped with no per-image decode.

A prepared dataset is a directory:

- `images.npy`: (N, C, S, S) uint8, row i the i-th file of the source in `list_image_files` order (zeros for a file
  that could not be decoded, listed in `bad`);
- `labels.npy`: (N,) int64, each file's class (its top-level subfolder's index) when prepared with classes, else 0;
- `manifest.json`: the preprocessing (size, channels, crop), the source (its folder and every file's relative path,
  size and mtime), the bad files, the class names and the Pillow and torchvision versions that decoded and resized
  (after an upgrade training warns and a rerun of gan-prepare re-decodes; a directory prepared before this record
  existed has none and is not checked). It is written last: a directory without it is unfinished.

While preparing, `images.npy.partial` fills chunk by chunk and `progress.json` records the chunks done, so an
interrupted run continues where it stopped; the last step renames the array into place and writes the manifest.
The split into train and validation images is not stored: the DataModule makes it from the file list, as it does
for the files themselves, so the prepared and the lazy path give the same images in the same order.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gan_lightning.core.errors import DataError
from gan_lightning.data.base import identity_collate
from gan_lightning.data.images import bad_image_error, crop_transform, decode_image, uint8_to_signed

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST, IMAGES, LABELS, PROGRESS = "manifest.json", "images.npy", "labels.npy", "progress.json"
PARTIAL = IMAGES + ".partial"
CROP = "torchvision Resize(shorter side to size, bilinear, antialias) + CenterCrop(size), PIL convert L or RGB"
CHUNK = 1024  # images decoded between two progress records: what an interruption may lose


def preprocessing(image_size: int, channels: int) -> dict[str, Any]:
    """The record of what a prepared image is: its size, channels and the crop that made it."""
    return {"image_size": image_size, "channels": channels, "crop": CROP}


def decoders() -> dict[str, str]:
    """The libraries whose decode and resize made the pixels: a release that changes a resize filter changes them."""
    import PIL
    import torchvision

    return {"Pillow": PIL.__version__, "torchvision": torchvision.__version__}


def _versions(record: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in record.items())


def default_prepared_dir(image_dir: str | Path, image_size: int, channels: int) -> Path:
    """Where `gan-prepare` writes by default: beside the image folder, never inside it (a folder's subfolders are
    its classes, and the folder is searched recursively for images)."""
    image_dir = Path(image_dir).resolve()
    return image_dir.parent / f"{image_dir.name}.prepared-{image_size}px-{channels}ch"


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


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)  # atomic: a reader sees the old record or the new one, never half of one


@dataclass
class PreparedImages:
    """An opened prepared dataset: its manifest, and its images memory-mapped (not read) until indexed."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> PreparedImages:
        """Read `path`'s manifest; one-line DataError when it is not a finished prepared dataset."""
        path = Path(path)
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            what = (
                "is unfinished (rerun gan-prepare to complete it)"
                if (path / PROGRESS).is_file()
                else ("is not a prepared dataset (no manifest.json); write one with gan-prepare")
            )
            raise DataError(f"--prepared {path} {what}")
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != FORMAT:
            raise DataError(f"--prepared {path} has format {manifest.get('format')}, this version reads {FORMAT}; "
                            "rerun gan-prepare")  # fmt: skip
        return cls(path, manifest)

    @property
    def files(self) -> list[str]:
        """The source files' relative paths, in row order."""
        return [name for name, _size, _mtime in self.manifest["source"]["files"]]

    @property
    def classes(self) -> list[str] | None:
        """The class names the labels index, None when prepared without classes."""
        return self.manifest.get("classes")

    def images(self) -> np.ndarray:
        """(N, C, S, S) uint8, memory-mapped read-only: the page cache holds it once for every process."""
        return np.load(self.path / IMAGES, mmap_mode="r")

    def labels(self) -> torch.Tensor:
        """(N,) int64 class labels (zeros without classes)."""
        return torch.from_numpy(np.load(self.path / LABELS))

    def check(self, image_dir: Path, files: Sequence[Path], image_size: int, channels: int) -> None:
        """One-line DataError unless this was prepared from exactly `files` of `image_dir`, unchanged since, at
        `image_size` and `channels`."""
        want = preprocessing(image_size, channels)
        if self.manifest["preprocessing"] != want:
            have = self.manifest["preprocessing"]
            raise DataError(f"--prepared {self.path} holds {have['image_size']}px {have['channels']}-channel images, "
                            f"this run needs {image_size}px {channels}-channel ones; prepare them with gan-prepare "
                            f"--image-size {image_size} --channels {channels}")  # fmt: skip
        changed = source_changes(self.manifest["source"]["files"], source_record(image_dir, files))
        if changed:
            raise DataError(f"--prepared {self.path} is out of date: {image_dir} changed since it was prepared "
                            f"({changed}); rerun gan-prepare to update it, or drop --prepared")  # fmt: skip
        made_with, now = self.manifest.get("decoders"), decoders()
        if made_with is not None and made_with != now:  # not refused: the pixels are still the prepared run's own
            log.warning("--prepared %s was decoded with %s, this run has %s: where a resize changed between them its "
                        "pixels differ from what the lazy path decodes now; rerun gan-prepare to re-decode",
                        self.path, _versions(made_with), _versions(now))  # fmt: skip


class _Decoder(Dataset):
    """File i decoded and cropped to uint8 exactly as the lazy path does; None with the reason when it cannot be."""

    def __init__(self, files: Sequence[Path], image_size: int, channels: int) -> None:
        self.files = np.array([os.fspath(f) for f in files], dtype=str)
        self.mode = "L" if channels == 1 else "RGB"
        self.crop = crop_transform(image_size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        try:
            return self.crop(decode_image(str(self.files[index]), self.mode)), ""
        except Exception as err:  # PIL reports bad files as OSError, SyntaxError, ValueError, ...
            return None, f"{type(err).__name__}: {err}"


def _list_collate(batch: list[Any]) -> list[Any]:
    return batch


def prepare_images(
    image_dir: str | Path,
    files: Sequence[Path],
    out: str | Path,
    *,
    image_size: int,
    channels: int,
    labels: Sequence[int] | None = None,
    classes: list[str] | None = None,
    skip_bad_images: bool = False,
    num_workers: int = 0,
    chunk: int = CHUNK,
    on_chunk: Callable[[int, int], None] | None = None,
) -> str:
    """Write `files` (under `image_dir`) as a prepared dataset in `out`; returns what was done, in a few words.

    Up to date already: nothing is done. Prepared from another source or preprocessing: rebuilt. Interrupted
    earlier from the same source and preprocessing: continued from the last finished chunk. `on_chunk(done, total)`
    is called after each chunk is on disk (progress display). A file that cannot be decoded raises DataError, or
    with `skip_bad_images` is recorded as bad (training replaces it as the lazy path does).
    """
    image_dir, out = Path(image_dir), Path(out)
    n = len(files)
    record = source_record(image_dir, files)
    target = {"preprocessing": preprocessing(image_size, channels), "files": record, "classes": classes,
              "skip_bad_images": skip_bad_images, "decoders": decoders()}  # fmt: skip
    start, how = 0, "prepared"
    if (out / MANIFEST).is_file():
        manifest = json.loads((out / MANIFEST).read_text())
        same = manifest.get("format") == FORMAT and manifest["preprocessing"] == target["preprocessing"]
        changed = source_changes(manifest["source"]["files"], record) if same else "other preprocessing"
        if not changed and manifest.get("decoders", target["decoders"]) != target["decoders"]:
            changed = f"decoded with {_versions(manifest['decoders'])}, now {_versions(target['decoders'])}"
        if same and not changed and manifest.get("classes") == classes and (
                skip_bad_images or not manifest["bad"]):  # fmt: skip
            return "up to date"
        how = f"rebuilt ({changed or 'other classes or bad-file handling'} since it was prepared)"
        (out / MANIFEST).unlink()  # from here on the directory is unfinished, whatever happens
    out.mkdir(parents=True, exist_ok=True)
    progress = json.loads((out / PROGRESS).read_text()) if (out / PROGRESS).is_file() else None
    if progress is not None and progress["target"] == target and (out / PARTIAL).is_file():
        start, how = progress["done"], f"resumed at image {progress['done']}"
        bad = progress["bad"]
        array = np.load(out / PARTIAL, mmap_mode="r+")
    else:
        if progress is not None:
            how = "restarted (the source or options changed since the interrupted run)"
        bad = []
        array = np.lib.format.open_memmap(out / PARTIAL, mode="w+", dtype=np.uint8,
                                          shape=(n, channels, image_size, image_size))  # fmt: skip
        _write_json(out / PROGRESS, {"target": target, "done": 0, "bad": bad})
    decoder = _Decoder(files, image_size, channels)
    loader = DataLoader(decoder, batch_size=chunk, sampler=range(start, n), num_workers=num_workers,
                        collate_fn=_list_collate)  # fmt: skip
    done = start
    for items in loader:
        for offset, (image, reason) in enumerate(items):
            if image is None:
                if not skip_bad_images:
                    del array
                    raise bad_image_error(files[done + offset], reason)
                log.warning("skipping unreadable image %s (%s)", files[done + offset], reason)
                bad.append(done + offset)
            else:
                array[done + offset] = image.numpy()
        done += len(items)
        array.flush()  # the pixels are on disk before the record says so
        _write_json(out / PROGRESS, {"target": target, "done": done, "bad": bad})
        if on_chunk is not None:
            on_chunk(done, n)
    del array
    np.save(out / LABELS, np.asarray(labels if labels is not None else np.zeros(n), dtype=np.int64))
    os.replace(out / PARTIAL, out / IMAGES)
    _write_json(out / MANIFEST, {"format": FORMAT, "count": n, "shape": [channels, image_size, image_size],
                                 "preprocessing": target["preprocessing"], "classes": classes, "bad": bad,
                                 "skip_bad_images": skip_bad_images, "decoders": target["decoders"],
                                 "source": {"root": str(image_dir.resolve()), "files": record},
                                 "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S")})  # fmt: skip
    (out / PROGRESS).unlink()
    return how


class PreparedImageDataset(Dataset):
    """Rows of a prepared dataset served as (C, S, S) float images in [-1, 1] with long labels: no decoding.

    `rows[i]` is the prepared row of item i. A bad row (a file that could not be decoded when prepared) is replaced
    by the next good row of `rows`, cyclically, with that row's label, as `ImageFileDataset` replaces a bad file by
    the next readable one; without `skip_bad_images` a bad row is a DataError here. `__getitems__` gathers a whole
    batch with one indexing op of the memory map, and converts it with `uint8_to_signed`: the lazy path's bits.
    """

    def __init__(self, store: PreparedImages, rows: Sequence[int], labels: torch.Tensor,
                 skip_bad_images: bool = False) -> None:  # fmt: skip
        rows = np.asarray(rows, dtype=np.int64)
        bad = np.zeros(store.manifest["count"], dtype=bool)
        bad[np.asarray(store.manifest["bad"], dtype=np.int64)] = True
        bad_here = bad[rows]
        names = store.files
        if bad_here.any() and not skip_bad_images:
            first = rows[bad_here.argmax()]
            raise bad_image_error(Path(store.manifest["source"]["root"]) / names[first], "recorded by gan-prepare")
        n = len(rows)
        if n and bad_here.all():
            raise DataError(f"none of the {n} images could be read (first: {names[rows[0]]})")
        served = np.arange(n)
        for i in np.flatnonzero(bad_here):  # the next good position, cyclically
            j = i
            while bad_here[j]:
                j = (j + 1) % n
            served[i] = j
        self.path = store.path
        self.rows = rows[served]
        self.labels = labels[torch.from_numpy(served)]
        self.skipped_files = [names[r] for r in rows[bad_here]]
        self._images: np.ndarray | None = None

    collate_fn = staticmethod(identity_collate)  # `__getitems__` returns whole batches

    @property
    def num_skipped(self) -> int:
        """How many of this set's files were found unreadable when prepared and are skipped."""
        return len(self.skipped_files)

    @property
    def images(self) -> np.ndarray:
        """The prepared (N, C, S, S) uint8 array, memory-mapped."""
        if self._images is None:  # opened per process: a DataLoader worker maps the file, nothing is copied
            self._images = np.load(self.path / IMAGES, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None}  # the map, not its contents, goes to spawned workers

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return uint8_to_signed(torch.from_numpy(np.array(self.images[self.rows[index]]))), self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, C, S, S): one gather from the map, then the same float ops as a single image gets
        images = torch.from_numpy(self.images[self.rows[indices]])
        return uint8_to_signed(images), self.labels[torch.as_tensor(indices)]
