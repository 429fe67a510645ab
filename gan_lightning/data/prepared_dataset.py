"""A prepared dataset's rows served as training images (see `prepared.py`): one memory-mapped gather per batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from gan_lightning.core.errors import DataError
from gan_lightning.data.base import identity_collate
from gan_lightning.data.images import bad_image_error, uint8_to_signed
from gan_lightning.data.prepared_check import IMAGES


class PreparedStore(Protocol):
    """What the dataset reads of an opened prepared directory (`prepared.PreparedImages`)."""

    path: Path
    manifest: dict[str, Any]
    files: list[str]


class PreparedImageDataset(Dataset):
    """Rows of a prepared dataset served as (C, S, S) float images in [-1, 1] with long labels: no decoding.

    `rows[i]` is the prepared row of item i. A bad row (a file that could not be decoded when prepared) is replaced
    by the next good row of `rows`, cyclically, with that row's label, as `ImageFileDataset` replaces a bad file by
    the next readable one; without `skip_bad_images` a bad row is a DataError here. `__getitems__` gathers a whole
    batch with one indexing op of the memory map, and converts it with `uint8_to_signed`: the lazy path's bits.
    """

    def __init__(self, store: PreparedStore, rows: Sequence[int], labels: torch.Tensor,
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
