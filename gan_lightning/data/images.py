"""Images read from files on demand: listing them, decoding them lazily, and surviving the odd bad file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from gan_lightning.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


_REPORTED_LINKS: set[str] = set()


def list_image_files(root: str | Path) -> list[Path]:
    """Image files under `root`, recursively, by extension (any case), sorted by relative path."""
    root = Path(root)
    found = []
    # Links are followed (a folder of links to image folders is common), so a link back up the tree would make the
    # walk endless or list files twice: each directory is entered once, by the first path that reaches it.
    seen = {os.path.realpath(root)}
    # os.walk, not Path.rglob: one scandir per directory and no stat per file, which matters at 200k files.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        unseen = []
        # real folders first, then links: a link sorting before the folder it points to must not take its place
        for name in sorted(dirnames, key=lambda n: (os.path.islink(os.path.join(dirpath, n)), n)):
            real = os.path.realpath(os.path.join(dirpath, name))
            if real in seen:
                link = os.path.join(dirpath, name)
                if link not in _REPORTED_LINKS:  # once per process: a run lists its folder more than once
                    _REPORTED_LINKS.add(link)
                    log.warning("not listing %s: it is %s, which is listed already", link, real)
                continue
            seen.add(real)
            unseen.append(name)
        dirnames[:] = sorted(unseen)
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(Path(dirpath, name))
    # Sorting the relative POSIX path makes the order, and so the seeded split, independent of the filesystem.
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


# Folders up to this many files have every header checked before training (a second or so); larger ones
# (CelebA's 202,599) are checked as they are decoded, which stops training with the same one-line error.
HEADER_CHECK_LIMIT = 20_000
# Decoded training images (uint8) a folder DataModule may keep in memory, all loading processes of all ranks
# together: small folders are decoded once instead of every epoch; CelebA-sized ones stay lazy.
CACHE_BYTES = 1 << 30


def bad_image_error(path: str | Path, reason: str) -> DataError:
    """The one line for an image file that cannot be decoded while bad images are not skipped."""
    return DataError(f"cannot read image {path} ({reason}); fix or delete it, or pass --skip-bad-images to skip "
                     "unreadable images")  # fmt: skip


def unreadable_headers(files: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(file, reason) for every file whose image header PIL cannot parse: empty, not an image, or corrupt."""
    bad = []
    for path in files:
        try:
            with Image.open(str(path)):  # parses the header only; the pixels are decoded later
                pass
        except Exception as err:  # PIL reports bad files as OSError, SyntaxError, ValueError, ...
            bad.append((str(path), f"{type(err).__name__}: {err}"))
    return bad


def default_num_workers() -> int:
    """Loader workers when none are requested: the usable CPUs, at most 8."""
    # sched_getaffinity honours container/taskset CPU limits, which os.cpu_count ignores.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cpus)


def check_image_options(image_size: int, channels: int, val_fraction: float) -> None:
    """Raise ConfigError for an image size, channel count or validation fraction that cannot work."""
    if image_size < 8:
        raise ConfigError(f"image_size must be at least 8, got {image_size}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")


# What `crop_transform` and `uint8_to_signed` do, in words: recorded where pixels are kept (prepared datasets, cached
# reference statistics), so that a change to them here invalidates what was made with the old ones.
CROP = "torchvision Resize(shorter side to size, bilinear, antialias) + CenterCrop(size), PIL convert L or RGB"


def crop_transform(image_size: int) -> transforms.Compose:
    """The geometric half of `dcgan_transform`: shorter side to `image_size`, centre crop, as a uint8 tensor."""
    return transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size),
                               transforms.PILToTensor()])  # fmt: skip


def uint8_to_signed(image: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) to float [-1, 1] with `dcgan_transform`'s exact operations (ToTensor, then Normalize 0.5).

    Not `loading.to_signed`: its x / 127.5 - 1 differs from these in the last bit for some values.
    """
    return image.float().div(255).sub(0.5).div(0.5)


def eight_bit(img: Image.Image) -> Image.Image:
    """`img` with wide greyscale mapped to 8-bit "L": 16-bit ("I;16*", and "I" within 0..65535) to its high byte
    (value >> 8); ValueError for float ("F") and for "I" values outside 0..65535. Other modes are returned as is."""
    # PIL's own convert("L") clips these modes at 255, which turns a 16-bit image white; "I" is read as 16-bit
    # because that is what it holds when it comes from a 16-bit file (older Pillow opens 16-bit PNGs as "I").
    if img.mode == "F":
        raise ValueError("32-bit float greyscale (PIL mode F) has no fixed range to map to 8 bits; save it with "
                         "8- or 16-bit integer pixels")  # fmt: skip
    if img.mode != "I" and not img.mode.startswith("I;16"):
        return img
    values = np.asarray(img).astype(np.int64)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > 65535:
        raise ValueError(f"greyscale values {low}..{high} (PIL mode {img.mode}) lie outside the 16-bit range "
                         "0..65535 that is mapped to 8 bits; save it with 8- or 16-bit unsigned pixels")  # fmt: skip
    return Image.fromarray((values >> 8).astype(np.uint8))


def decode_image(path: str | Path, mode: str) -> Image.Image:
    """The whole image file decoded and converted to `mode` ("L" or "RGB"), wide greyscale by `eight_bit`; PIL's
    error, or `eight_bit`'s ValueError, when it cannot be."""
    # convert() forces a full decode here, so a truncated file fails now instead of being padded with
    # grey (PIL only pads when ImageFile.LOAD_TRUNCATED_IMAGES is set, which this package never does).
    with Image.open(str(path)) as img:
        return eight_bit(img).convert(mode)


def dcgan_transform(image_size: int, channels: int) -> transforms.Compose:
    """The PyTorch DCGAN tutorial's preprocessing: shorter side to `image_size`, centre crop, to [-1, 1]."""
    return transforms.Compose(
        [
            transforms.Resize(image_size),  # an int resizes the shorter side, upscaling small images too
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize((0.5,) * channels, (0.5,) * channels),
        ]
    )


def decoders() -> dict[str, str]:
    """The libraries whose decode and resize made the pixels: a release that changes a resize filter changes them."""
    import PIL
    import torchvision

    return {"Pillow": PIL.__version__, "torchvision": torchvision.__version__}


class ImageFileDataset(Dataset):
    """Image files decoded on access into (C, S, S) float images in [-1, 1], with long labels.

    When all images fit in `cache_bytes` as cropped uint8 (C, S, S), each is kept after its first decode, per
    process (every DataLoader worker fills its own copy), and served from memory afterwards, so a file changed
    after its first decode is not read again; otherwise nothing decoded is kept and memory does not grow with the
    dataset. A file that cannot be decoded raises `DataError`, or, with `skip_bad_images`, is replaced by the next
    readable file and recorded; the record is in shared memory, so `num_skipped` also counts files found bad inside
    DataLoader worker processes. `decode(path, mode)` turns a file into a PIL image in `mode` ("L" or "RGB") and
    raises for a bad file: `decode_image` unless given, e.g. a reader for a format PIL lacks (picklable, for workers).
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        image_size: int = 64,
        channels: int = 3,
        skip_bad_images: bool = False,
        labels: Sequence[int] | torch.Tensor | None = None,
        cache_bytes: int = 0,
        decode: Callable[[str, str], Image.Image] = decode_image,
    ) -> None:
        check_image_options(image_size, channels, 0.0)
        # One numpy string array instead of a list of Python strings: workers reading it do not touch
        # per-item refcounts, so its pages stay shared instead of being copied into every worker.
        self.files = np.array([os.fspath(f) for f in files], dtype=str)
        n = len(self.files)
        self.labels = torch.zeros(n, dtype=torch.long) if labels is None else torch.as_tensor(labels).long()
        if self.labels.shape != (n,):
            raise ValueError(f"expected {n} labels, got shape {tuple(self.labels.shape)}")
        self.image_size, self.channels = image_size, channels
        self.mode = "L" if channels == 1 else "RGB"
        self.skip_bad_images = skip_bad_images
        self.decode = decode
        self.crop = crop_transform(image_size)  # then `uint8_to_signed`: `dcgan_transform`, bit for bit
        self._bad = torch.zeros(n, dtype=torch.bool).share_memory_()
        self.cached = n * channels * image_size * image_size <= cache_bytes  # uint8 images
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # index -> (uint8 image, label)

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self, limit: int) -> str:
        """What the first `limit` images decode from, without decoding them: each file's path, size and modification
        time, the crop, the decoder and the decoding libraries' versions (SHA-256); what caches of them key on."""
        # the inode and change time too: a copy that keeps the size and modification time (cp -p, rsync -a) changes
        # them, and tools cannot set a change time back
        files = [[os.path.abspath(f), (st := os.stat(f)).st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
                 for f in self.files[:limit].tolist()]  # fmt: skip
        decode = f"{getattr(self.decode, '__module__', '')}.{getattr(self.decode, '__qualname__', repr(self.decode))}"
        key = {"files": files, "image_size": self.image_size, "channels": self.channels, "crop": CROP,
               "decode": decode, "skip_bad_images": self.skip_bad_images, "decoders": decoders()}  # fmt: skip
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()

    def check_headers(self) -> None:
        """Find unreadable files before training: DataError for the first, or with `skip_bad_images` mark all."""
        bad = unreadable_headers(self.files)
        if bad and not self.skip_bad_images:
            path, reason = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(f"cannot read image {path} ({reason}){more}; fix or delete it, or pass "
                            "--skip-bad-images to skip unreadable images")  # fmt: skip
        index = {str(f): i for i, f in enumerate(self.files)}
        for path, reason in bad:
            self._bad[index[path]] = True
            log.warning("skipping unreadable image %s (%s)", path, reason)

    @property
    def num_skipped(self) -> int:
        """How many distinct files were found unreadable and skipped so far (in any worker process)."""
        return int(self._bad.sum())

    @property
    def skipped_files(self) -> list[str]:
        """The files found unreadable and skipped so far."""
        return [str(f) for f in self.files[self._bad.numpy()]]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self._cache.get(index)
        if item is None:
            item = self._load(index)
            if self.cached:
                self._cache[index] = item
        image, label = item
        return uint8_to_signed(image), label  # a new tensor each time: the cached one cannot be changed in place

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.files)
        for candidate in ((index + k) % n for k in range(n)):
            if self._bad[candidate]:
                continue
            path = str(self.files[candidate])
            try:
                img = self.decode(path, self.mode)
            except Exception as err:  # PIL reports bad files as OSError, SyntaxError, ValueError, ...
                if not self.skip_bad_images:
                    raise bad_image_error(path, f"{type(err).__name__}: {err}") from err
                self._bad[candidate] = True
                log.warning("skipping unreadable image %s (%s: %s)", path, type(err).__name__, err)
                continue
            # The label goes with the image actually returned, which is not `index`'s after a skip.
            return self.crop(img), self.labels[candidate]
        raise DataError(f"none of the {n} images could be read (first: {self.files[0] if n else 'none'})")
