"""CIFAR-10 as a LightningDataModule: 32x32 colour images in [-1, 1] with their 10 class labels, held in memory as
uint8; the standard split (train: the 50,000 training images, val: the 10,000 test images).

The files are read in torchvision's layout (`DIR/cifar-10-batches-py/`, or the `cifar-10-python.tar.gz` archive in
DIR, extracted on first use) by a small reader of our own that follows torchvision's `CIFAR10` format exactly:
torchvision's class also checks every file's MD5, so it refuses anything but the published bytes (a test's generated
copy included). torchvision is kept for the download, which does check the archive's MD5.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data.base import GANDataModule, TensorImageDataset, default_data_dir
from gan_lightning.data.mnist import resize_uint8
from gan_lightning.data.registry import dataset

# torchvision.datasets.CIFAR10's layout (base_folder, filename, train_list, test_list, meta); tests compare them
BASE_FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE, META_KEY = "batches.meta", "label_names"
# label_names of the published batches.meta, for runs resolved before the files are downloaded
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SIDE = 32
_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array-rebuilding function, whatever its module path


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (dicts, lists, strings, numbers, numpy arrays) and nothing else: a plain
    `pickle.load` of a file from a data folder would run any callable the file names."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")
        return self.ALLOWED[(module, name)]


def read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as torchvision reads it (`encoding="latin1"`: the files were written by Python 2), its keys as
    str; DataError naming the file when it is missing or is not one."""
    hint = "delete the folder and let --download fetch CIFAR-10 again, or extract cifar-10-python.tar.gz there"
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror}); {hint}") from None
    except Exception as err:  # truncated or foreign files fail in many ways; the user needs one line
        raise DataError(f"{path} is not a CIFAR-10 pickle ({type(err).__name__}: {err}); {hint}") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} is not a CIFAR-10 pickle (it holds a {type(entry).__name__}, not a dict); {hint}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_batches(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N, 3, 32, 32) uint8 and labels (N,) long of the batch files `names` in `folder`, in file order."""
    images, labels = [], []
    for name in names:
        entry = read_pickle(folder / name)
        data, targets = entry.get("data"), entry.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE**2:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(f"{folder / name}: 'data' should be uint8 of shape (N, 3072), got {got}")
        if targets is None or len(targets) != len(data):
            raise DataError(f"{folder / name}: {len(data)} images but {'no' if targets is None else len(targets)} "
                            "'labels'; the file is damaged or not from CIFAR-10")  # fmt: skip
        # rows are 1024 red, then 1024 green, then 1024 blue values, each plane row-major
        images.append(torch.from_numpy(data.reshape(-1, 3, SIDE, SIDE).copy()))
        labels.append(torch.as_tensor(np.asarray(targets, dtype=np.int64)))
    return torch.cat(images), torch.cat(labels)


def read_class_names(folder: Path) -> list[str]:
    """`label_names` from `folder/batches.meta`, in label order."""
    names = read_pickle(folder / META_FILE).get(META_KEY)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{folder / META_FILE} has no list of '{META_KEY}'; the file is damaged or not from CIFAR-10")
    return names


@dataset("cifar10", channels=3, native_size=32, num_classes=10, data_on_device=True, download=True)
class CIFAR10DataModule(GANDataModule):
    """CIFAR-10 from `<data_dir>/cifar-10-batches-py` (torchvision's layout); train = the five training batches
    (50,000 images), val = the test batch (10,000). Labels are the 10 classes; `class_names` are `batches.meta`'s.

    `image_size` other than 32 resizes the images once at setup (the DCGAN generators at 64, say). The images take
    150 MB as uint8 (50,000 x 3 x 32 x 32 + 10,000 for val); with `data_on_device` the training ones live on the
    accelerator and are batched by indexing.
    """

    channels = 3
    num_classes = len(CLASSES)

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        image_size: int = SIDE,
        download: bool = True,
        data_on_device: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, pin_memory, seed)
        if image_size < 8:
            raise ConfigError(f"image_size must be at least 8, got {image_size}")
        self.save_hyperparameters()
        self.image_size = image_size
        self.download = download
        self.data_on_device = data_on_device
        self.class_names: list[str] | None = None

    @classmethod
    def read_classes(cls, data_dir: str | None, conditional: bool = False) -> list[str] | None:
        """With `conditional`, the class names: `batches.meta`'s when the files are there, else the published ones
        (what a download brings); None without (the run has no labels)."""
        if not conditional:
            return None
        folder = Path(data_dir or default_data_dir()) / BASE_FOLDER
        return read_class_names(folder) if (folder / META_FILE).is_file() else list(CLASSES)

    @property
    def folder(self) -> Path:
        """Where torchvision keeps the extracted batches."""
        return Path(self.data_dir) / BASE_FOLDER

    def missing_files(self) -> list[str]:
        """The batch and meta files not present under `folder`."""
        return [n for n in (*TRAIN_FILES, *TEST_FILES, META_FILE) if not (self.folder / n).is_file()]

    def _missing_error(self, reason: str) -> DataError:
        return DataError(
            f"CIFAR-10 not found in {self.folder} ({reason}); expected {', '.join(TRAIN_FILES)}, {TEST_FILES[0]} and "
            f"{META_FILE} there (the python version, {ARCHIVE}, extracted). Pass --data-dir DIR where "
            f"DIR/{BASE_FOLDER} or DIR/{ARCHIVE} is (or set GAN_DATA_DIR), or --download."
        )

    def prepare_data(self) -> None:
        """Extract the archive if it is there, else download it when allowed, only when files are missing."""
        if not self.missing_files():
            return
        archive = Path(self.data_dir) / ARCHIVE
        if archive.is_file():
            from torchvision.datasets.utils import extract_archive

            try:
                extract_archive(str(archive), self.data_dir)
            except Exception as err:  # tarfile, gzip and disk errors: the user needs one line
                raise self._missing_error(f"{archive} could not be extracted: {type(err).__name__}: {err}") from err
        elif not self.download:
            raise self._missing_error("downloading is disabled")
        else:
            from torchvision.datasets import CIFAR10

            try:  # torchvision checks the archive's MD5 and extracts it
                CIFAR10(self.data_dir, train=True, download=True)
            except Exception as err:  # network errors come in many types; the user needs one message
                raise self._missing_error(f"download failed: {type(err).__name__}") from err
        if missing := self.missing_files():
            raise self._missing_error(f"missing {', '.join(missing)} after extracting {ARCHIVE}")

    def setup(self, stage: str | None = None) -> None:
        """Read the batches into uint8 tensors: the training batches for train, the test batch for val."""
        if self.train_set is not None:
            return
        if missing := self.missing_files():
            raise self._missing_error(f"missing {', '.join(missing)}")
        names = read_class_names(self.folder)
        sets = []
        for files in (TRAIN_FILES, TEST_FILES):
            images, labels = read_batches(self.folder, files)
            if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < len(names)):
                raise DataError(f"{self.folder}: labels outside 0..{len(names) - 1}, the classes of {META_FILE}")
            sets.append(TensorImageDataset(resize_uint8(images, self.image_size), labels))
        self.class_names, self.num_classes = names, len(names)
        self.train_set, self.val_set = sets
