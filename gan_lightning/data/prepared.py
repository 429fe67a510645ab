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

While preparing, `images.npy.partial` (allocated whole before the first image is decoded, so a disk without room
fails at once) fills chunk by chunk and `progress.json` records the chunks done, so an interrupted run continues
where it stopped; the last step renames the arrays into place and writes the manifest. One run at a time writes a
directory (a lock file in it); a refused or failed run leaves no file of its own behind, and a finished dataset
there stays whole until the new one replaces it. Opening one checks the manifest against the arrays on disk
(`prepared_check.py`).
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

from gan_lightning.core.errors import ConfigError, DataError, WriteError
from gan_lightning.core.files import check_writable_dir, exclusive_lock, make_dirs, reason, remove_empty_dirs
from gan_lightning.data.images import CROP, bad_image_error, crop_transform, decode_image, decoders
from gan_lightning.data.prepared_check import (
    FORMAT,
    IMAGES,
    LABELS,
    LOCK,
    MANIFEST,
    PARTIAL,
    PROGRESS,
    DamagedError,
    check_arrays,
    read_manifest,
    source_changes,
    source_record,
)
from gan_lightning.data.prepared_dataset import PreparedImageDataset
from gan_lightning.data.prepared_files import (
    LABELS_PARTIAL,
    MANIFEST_PARTIAL,
    RowFile,
    check_rebuildable,
    remove_leftovers,
    write_synced,
    write_whole,
)

log = logging.getLogger(__name__)

# The layout and the dataset class live beside this module; these names are the prepared format's public ones.
__all__ = ["FORMAT", "IMAGES", "LABELS", "MANIFEST", "PARTIAL", "PROGRESS", "PreparedImageDataset"]
CHUNK = 1024  # images decoded between two progress records: what an interruption may lose


def preprocessing(image_size: int, channels: int) -> dict[str, Any]:
    """The record of what a prepared image is: its size, channels and the crop that made it."""
    return {"image_size": image_size, "channels": channels, "crop": CROP}


def _versions(record: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in record.items())


def default_prepared_dir(image_dir: str | Path, image_size: int, channels: int) -> Path:
    """Where `gan-prepare` writes by default: beside the image folder, never inside it (a folder's subfolders are
    its classes, and the folder is searched recursively for images)."""
    image_dir = Path(image_dir).resolve()
    return image_dir.parent / f"{image_dir.name}.prepared-{image_size}px-{channels}ch"


@dataclass
class PreparedImages:
    """An opened prepared dataset: its manifest, and its images memory-mapped (not read) until indexed."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> PreparedImages:
        """Read `path`'s manifest and check it against the arrays on disk; one-line DataError when it is not a
        finished, whole prepared dataset."""
        path = Path(path)
        if not (path / MANIFEST).is_file():
            what = (
                "is unfinished (rerun gan-prepare to complete it)"
                if (path / PROGRESS).is_file()
                else ("is not a prepared dataset (no manifest.json); write one with gan-prepare")
            )
            raise DataError(f"--prepared {path} {what}")
        manifest = read_manifest(path)
        check_arrays(path, manifest)  # now, not as a memory-map or index error in the middle of a run
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
        want, have = preprocessing(image_size, channels), self.manifest["preprocessing"]
        if (have["image_size"], have["channels"]) != (image_size, channels):
            raise DataError(f"--prepared {self.path} holds {have['image_size']}px {have['channels']}-channel images, "
                            f"this run needs {image_size}px {channels}-channel ones; prepare them with gan-prepare "
                            f"--image-size {image_size} --channels {channels}")  # fmt: skip
        if have != want:
            raise DataError(f"--prepared {self.path} was decoded by another version of this package (as "
                            f"{have.get('crop')}, now {want['crop']}); rerun gan-prepare to re-decode it, or drop "
                            "--prepared")  # fmt: skip
        changed = source_changes(self.manifest["source"]["files"], source_record(image_dir, files))
        root = self.manifest["source"]["root"]
        if changed and root != str(image_dir.resolve()):  # the same files under a moved folder are accepted
            raise DataError(f"--prepared {self.path} was prepared from {root}, not from {image_dir}; give --data-dir "
                            f"{root}, or prepare {image_dir} into another directory with gan-prepare")  # fmt: skip
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

    Up to date already: nothing is done. Prepared from another source or preprocessing, or damaged: rebuilt.
    Interrupted earlier from the same source and preprocessing: continued from the last finished chunk.
    `on_chunk(done, total)` is called after each chunk is on disk (progress display). A file that cannot be decoded
    raises DataError, or with `skip_bad_images` is recorded as bad (training replaces it as the lazy path does).
    An `out` that cannot be written is a ConfigError before anything is created, another run writing it a
    ConfigError, and a failed write a WriteError; each leaves no file of this run behind.
    """
    image_dir, out = Path(image_dir), Path(out)
    if num_workers < 0:  # the DataLoader's own refusal would come after the partial array is allocated
        raise ConfigError(f"--num-workers must be >= 0, got {num_workers}")
    check_writable_dir(out, "--out")  # before anything is created or decoded
    check_rebuildable(out)
    record = source_record(image_dir, files)
    target = {"preprocessing": preprocessing(image_size, channels), "files": record, "classes": classes,
              "skip_bad_images": skip_bad_images, "decoders": decoders()}  # fmt: skip
    made = make_dirs(out, "--out")
    try:
        with exclusive_lock(out / LOCK, f"--out {out} is being written by another gan-prepare run; wait for it to "
                            "end, then rerun (a finished dataset is left as it is)"):  # fmt: skip
            how = _rebuild_reason(out, target)
            if how is None:
                return "up to date"
            work = _Preparation(image_dir, files, out, target, labels, skip_bad_images)
            return work.run(how, num_workers, chunk, on_chunk)
    finally:
        remove_empty_dirs(made)  # a refused run leaves no directory behind; one holding files stays


def _rebuild_reason(out: Path, target: dict[str, Any]) -> str | None:
    """None when `out` holds a whole dataset of `target`; else how the run that follows is described."""
    if not (out / MANIFEST).is_file():
        return "prepared"
    try:
        manifest = read_manifest(out)
        check_arrays(out, manifest)
    except DamagedError as err:
        return f"rebuilt (it was damaged: {err.problem})"
    except DataError:
        return "rebuilt (written by another version)"
    same = manifest["preprocessing"] == target["preprocessing"]
    changed = source_changes(manifest["source"]["files"], target["files"]) if same else "other preprocessing"
    if not changed and manifest.get("decoders", target["decoders"]) != target["decoders"]:
        changed = f"decoded with {_versions(manifest['decoders'])}, now {_versions(target['decoders'])}"
    if not changed and manifest.get("classes") == target["classes"] and (
            target["skip_bad_images"] or not manifest["bad"]):  # fmt: skip
        return None
    return f"rebuilt ({changed or 'other classes or bad-file handling'} since it was prepared)"


class _Preparation:
    """One gan-prepare run into a locked `out`: decode into the partial array, then publish it with the manifest."""

    def __init__(self, image_dir: Path, files: Sequence[Path], out: Path, target: dict[str, Any],
                 labels: Sequence[int] | None, skip_bad_images: bool) -> None:  # fmt: skip
        pre = target["preprocessing"]
        self.image_dir, self.files, self.out, self.target, self.skip = image_dir, files, out, target, skip_bad_images
        self.shape = (len(files), pre["channels"], pre["image_size"], pre["image_size"])
        self.labels = np.asarray(labels if labels is not None else np.zeros(len(files)), dtype=np.int64)

    def _progress(self) -> dict[str, Any] | None:
        """The interrupted run's record when it is of this target and its partial array is whole, else None."""
        try:
            progress = json.loads((self.out / PROGRESS).read_text())
            done, bad = progress["done"], progress["bad"]
            usable = progress["target"] == self.target and 0 <= done <= self.shape[0] and isinstance(bad, list)
        except (OSError, ValueError, TypeError, KeyError):  # missing, cut or edited: started again
            return None
        return progress if usable and RowFile.whole(self.out / PARTIAL, self.shape) else None

    def run(self, how: str, num_workers: int, chunk: int, on_chunk: Callable[[int, int], None] | None) -> str:
        """Decode and write every image not yet on disk; returns `how` or, when continued, where from."""
        out, n = self.out, self.shape[0]
        progress = self._progress()
        resumed = progress is not None
        start, bad = (progress["done"], progress["bad"]) if resumed else (0, [])
        if resumed:
            how = f"resumed at image {start}"
        elif (out / PROGRESS).is_file():
            how = "restarted (the source or options changed since the interrupted run)"
        try:
            rows = RowFile.open(out / PARTIAL) if resumed else RowFile.create(out / PARTIAL, self.shape)
            with rows:
                if not resumed:
                    self._record(0, bad)
                decoder = _Decoder(self.files, self.shape[2], self.shape[1])
                loader = DataLoader(decoder, batch_size=chunk, sampler=range(start, n), num_workers=num_workers,
                                    collate_fn=_list_collate)  # fmt: skip
                done = start
                for items in loader:
                    rows.write(done, self._block(items, done, bad))
                    done += len(items)
                    rows.sync()  # the pixels are on disk before the record says so
                    self._record(done, bad)
                    if on_chunk is not None:
                        on_chunk(done, n)
            self._publish(bad)
        except (DataError, OSError) as err:
            # A write failure keeps what an earlier, interrupted run had done (free space and rerun continues it);
            # a bad image cannot be continued from (fixing it or skipping it changes the target).
            keep = resumed and isinstance(err, OSError)
            remove_leftovers(out, keep_partial=keep)
            if isinstance(err, OSError):
                raise self._write_error(err, keep) from None
            raise
        return how

    def _block(self, items: list[tuple[torch.Tensor | None, str]], first: int, bad: list[int]) -> np.ndarray:
        """The chunk's rows as one uint8 block (zeros for a file that cannot be decoded, recorded in `bad`)."""
        block = np.zeros((len(items), *self.shape[1:]), dtype=np.uint8)
        for offset, (image, why) in enumerate(items):
            if image is not None:
                block[offset] = image.numpy()
                continue
            if not self.skip:
                raise bad_image_error(self.files[first + offset], why)
            log.warning("skipping unreadable image %s (%s)", self.files[first + offset], why)
            bad.append(first + offset)
        return block

    def _record(self, done: int, bad: list[int]) -> None:
        write_whole(self.out / PROGRESS, json.dumps({"target": self.target, "done": done, "bad": bad}).encode())

    def _publish(self, bad: list[int]) -> None:
        """Write the labels and the manifest beside the array, then rename all three into place: every byte is on
        disk before the first rename, so a disk that fills up here leaves a finished dataset that was there whole."""
        out, target = self.out, self.target
        labels, manifest = out / LABELS_PARTIAL, out / MANIFEST_PARTIAL
        write_synced(labels, lambda f: np.save(f, self.labels))
        text = json.dumps({"format": FORMAT, "count": self.shape[0], "shape": list(self.shape[1:]),
                           "preprocessing": target["preprocessing"], "classes": target["classes"], "bad": bad,
                           "skip_bad_images": self.skip, "decoders": target["decoders"],
                           "source": {"root": str(self.image_dir.resolve()), "files": target["files"]},
                           "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S")})  # fmt: skip
        write_synced(manifest, lambda f: f.write(text.encode()))
        (out / MANIFEST).unlink(missing_ok=True)  # unfinished from here: an interruption now makes a rerun start over
        os.replace(out / PARTIAL, out / IMAGES)
        os.replace(labels, out / LABELS)
        os.replace(manifest, out / MANIFEST)
        (out / PROGRESS).unlink()

    def _write_error(self, err: OSError, kept: bool) -> WriteError:
        """The one line for a failed write: the file, the operating system's reason, and what is intact."""
        size = int(np.prod(self.shape, dtype=np.int64))
        size_text = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
        failed = f"could not write {err.filename or self.out / PARTIAL} ({reason(err)}; the images take {size_text})"
        if kept:
            return WriteError(f"{failed}; the interrupted preparation in {self.out} is kept: free space, then rerun to "
                              "continue it")  # fmt: skip
        intact = f"; the prepared dataset already in {self.out} is intact" if (self.out / MANIFEST).is_file() else ""
        return WriteError(f"{failed}; nothing partial was kept{intact}: free space, then rerun")
