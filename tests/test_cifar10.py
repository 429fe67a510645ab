"""CIFAR-10 (data/cifar10.py) on generated files in torchvision's exact layout: shapes, range, labels, the standard
split, class names, the archive, missing and damaged files, and data on the device."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_run_ux import status_of

from gan_lightning.commands.sample import load_gan
from gan_lightning.commands.train import PRESETS
from gan_lightning.core.errors import DataError
from gan_lightning.data import DATASETS, CIFAR10DataModule
from gan_lightning.data import cifar10 as cifar
from gan_lightning.data.loading import DeviceTensorLoader

from conftest import CIFAR_NAMES, cifar_image, make_fake_cifar10

PER_BATCH, N_TEST = 6, 10


def expected_batch(index: int) -> tuple[np.ndarray, list[int]]:
    """What make_fake_cifar10 (seed 0) wrote to its file number `index` (0-4 training, 5 test): images, labels."""
    rng = np.random.default_rng(0)
    sizes = [PER_BATCH] * 5 + [N_TEST]
    for i in range(index + 1):
        labels = [(i + j) % 10 for j in range(sizes[i])]
        images = np.stack([cifar_image(c, rng) for c in labels])
    return images, labels


def test_the_layout_is_torchvisions():
    from torchvision.datasets import CIFAR10

    assert cifar.BASE_FOLDER == CIFAR10.base_folder and cifar.ARCHIVE == CIFAR10.filename
    assert list(cifar.TRAIN_FILES) == [name for name, _ in CIFAR10.train_list]
    assert list(cifar.TEST_FILES) == [name for name, _ in CIFAR10.test_list]
    assert (cifar.META_FILE, cifar.META_KEY) == (CIFAR10.meta["filename"], CIFAR10.meta["key"])


def test_reads_the_fakes_exactly_as_torchvision_does(fake_cifar10_dir, monkeypatch):
    # torchvision's own reader, its MD5 check (which only the published bytes pass) switched off
    import torchvision.datasets.cifar
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    dm = CIFAR10DataModule(str(fake_cifar10_dir), download=False)
    dm.setup("fit")
    for train, ours in ((True, dm.train_set), (False, dm.val_set)):
        theirs = CIFAR10(str(fake_cifar10_dir), train=train)
        assert torch.equal(ours.images, torch.from_numpy(theirs.data).permute(0, 3, 1, 2))  # theirs is (N, H, W, C)
        assert ours.labels.tolist() == theirs.targets
    assert dm.class_names == theirs.classes


def test_the_spec_declares_what_the_module_gives():
    spec = DATASETS.get("cifar10")
    assert (spec.channels, spec.native_size, spec.num_classes, spec.data_on_device) == (3, 32, 10, True)
    assert spec.download and spec.extractor is None  # Inception features, when weights are given


def test_standard_split_shapes_range_labels_and_pixels(fake_cifar10_dir):
    dm = CIFAR10DataModule(str(fake_cifar10_dir), batch_size=5, download=False)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (5 * PER_BATCH, N_TEST)  # the training batches / the test batch
    train_images = np.concatenate([expected_batch(i)[0] for i in range(5)])
    train_labels = sum((expected_batch(i)[1] for i in range(5)), [])
    assert dm.train_set.images.shape == (30, 3, 32, 32) and dm.train_set.images.dtype == torch.uint8
    assert torch.equal(dm.train_set.images, torch.from_numpy(train_images))  # R, G, B planes, in file order
    assert dm.train_set.labels.tolist() == train_labels and dm.train_set.labels.dtype == torch.long
    test_images, test_labels = expected_batch(5)
    assert torch.equal(dm.val_set.images, torch.from_numpy(test_images))
    assert dm.val_set.labels.tolist() == test_labels
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() == -1 and images.max() == 1  # 0 and 255 are in every image
    # each image's class shows as the red bar at row 3 * label: labels travel with their images
    for image, label in zip(images, labels, strict=True):
        assert (image[0, 3 * label, 4:28] == 1).all() and not (image[1:] == 1).any()


def test_class_names_come_from_batches_meta(tmp_path, fake_cifar10_dir):
    dm = CIFAR10DataModule(str(fake_cifar10_dir), download=False)
    dm.setup("fit")
    assert dm.class_names == CIFAR_NAMES and dm.num_classes == 10
    spec = DATASETS.get("cifar10")
    assert spec.class_names(str(fake_cifar10_dir), conditional=True) == CIFAR_NAMES
    assert spec.class_names(str(fake_cifar10_dir), conditional=False) is None  # an unconditional run has no labels
    renamed = [f"class{i}" for i in range(10)]
    make_fake_cifar10(tmp_path / "renamed", per_batch=2, n_test=2, names=renamed)
    assert spec.class_names(str(tmp_path / "renamed"), conditional=True) == renamed
    # before a download, the published names (those of the archive's batches.meta)
    assert spec.class_names(str(tmp_path / "empty"), conditional=True) == list(cifar.CLASSES) == CIFAR_NAMES


def test_image_size_resizes_once(fake_cifar10_dir):
    dm = CIFAR10DataModule(str(fake_cifar10_dir), batch_size=4, image_size=64, download=False)
    dm.setup("fit")
    assert dm.train_set.images.shape == (30, 3, 64, 64) and dm.val_set.images.shape == (10, 3, 64, 64)


def test_data_on_device_batches_by_indexing(fake_cifar10_dir):
    dm = CIFAR10DataModule(str(fake_cifar10_dir), batch_size=4, download=False, data_on_device=True)
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceTensorLoader) and len(loader) == 7
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.min() >= -1 and images.max() <= 1 and labels.shape == (4,)


def test_the_archive_in_data_dir_is_extracted_without_downloading(tmp_path):
    make_fake_cifar10(tmp_path / "src", per_batch=2, n_test=3)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    dm = CIFAR10DataModule(str(root), batch_size=2, download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (10, 3)


def test_missing_files_are_one_line_naming_the_layout(tmp_path, monkeypatch):
    dm = CIFAR10DataModule(str(tmp_path), download=False)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert "\n" not in message and "downloading is disabled" in message
    assert str(tmp_path / "cifar-10-batches-py") in message and "data_batch_1" in message and "--data-dir" in message
    with pytest.raises(DataError, match="missing data_batch_1, .*batches.meta"):
        dm.setup("fit")

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="download failed: ConnectionError"):
        CIFAR10DataModule(str(tmp_path), download=True).prepare_data()


def test_a_damaged_or_foreign_file_is_one_line_naming_it(tmp_path):
    make_fake_cifar10(tmp_path, per_batch=2, n_test=2)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 pickle"):
        CIFAR10DataModule(str(tmp_path), download=False).setup("fit")
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_3: 'data' should be uint8 of shape \(N, 3072\), got uint8 \(2,"):
        CIFAR10DataModule(str(tmp_path), download=False).setup("fit")


class _Payload:
    """A pickle that would run `os.remove(target)` when loaded by a plain `pickle.load`."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.remove, (str(self.target),)


def test_a_pickle_naming_other_callables_is_refused_and_never_runs(tmp_path):
    make_fake_cifar10(tmp_path, per_batch=2, n_test=2)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({"label_names": _Payload(target)}, f, protocol=2)
    with pytest.raises(DataError, match=r"batches.meta is not a CIFAR-10 pickle \(UnpicklingError: \w+\.remove is"):
        CIFAR10DataModule(str(tmp_path), download=False).setup("fit")
    assert target.read_text() == "keep me"


def test_bytes_keys_read_as_with_encoding_bytes(tmp_path):
    # pickles written with bytes keys (what encoding="bytes" shows of the published files) read the same
    make_fake_cifar10(tmp_path, per_batch=2, n_test=2)
    folder = tmp_path / "cifar-10-batches-py"
    for path in folder.iterdir():
        entry = cifar.read_pickle(path)
        with open(path, "wb") as f:
            pickle.dump({k.encode(): v for k, v in entry.items()}, f, protocol=2)
    dm = CIFAR10DataModule(str(tmp_path), download=False)
    dm.setup("fit")
    assert len(dm.train_set) == 10 and dm.class_names == CIFAR_NAMES


def test_labels_outside_the_meta_classes_are_refused(tmp_path):
    make_fake_cifar10(tmp_path, per_batch=2, n_test=2)  # labels 0..9
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_NAMES[:5]}, f, protocol=2)
    with pytest.raises(DataError, match="labels outside 0..4, the classes of batches.meta"):
        CIFAR10DataModule(str(tmp_path), download=False).setup("fit")


# ------------------------------------------------------------------------------------ the reference presets
CIFAR_PRESETS = sorted(name for name, values in PRESETS.items() if values.get("dataset") == "cifar10")
# narrow networks and a small batch, so every preset's recipe runs two iterations in seconds
SHRINK = ["--ngf", "8", "--ndf", "8", "--batch-size", "4", "--max-steps", "2", "--accelerator", "cpu",
          "--log-every", "1", "--sample-every", "1"]  # fmt: skip


def test_the_cifar_presets_are_there():
    assert CIFAR_PRESETS == [
        "dcgan_cifar10",
        "r3gan_cifar10",
        "sngan_cifar10_cnn",
        "sngan_cifar10_resnet",
        "stylegan2_cifar10",
    ]


@pytest.mark.parametrize("preset", CIFAR_PRESETS)
def test_every_cifar_preset_trains_two_iterations_on_the_layout(preset, fake_cifar10_dir, tmp_path):
    logs = tmp_path / "logs"
    argv = ["--preset", preset, "--data-dir", str(fake_cifar10_dir), "--log-dir", str(logs), *SHRINK]
    assert status_of(argv) == 0
    run_dir = next(logs.glob("*/version_0"))
    args = yaml.safe_load((run_dir / "config.yaml").read_text())["args"]
    recipe = {k: v for k, v in PRESETS[preset].items() if k not in ("batch_size", "max_steps", "ngf", "ndf")}  # shrunk
    assert {k: args[k] for k in recipe} == recipe
    assert (args["image_size"], args["channels"], args["max_steps"]) == (32, 3, 2)
    gan = load_gan(run_dir / "checkpoints" / "last.ckpt")
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == gan.optimizer_steps(2)  # two iterations of (d_steps + 1) updates
    if args["conditional"]:  # r3gan_cifar10: the 10 labels, named from batches.meta
        assert args["class_names"] == CIFAR_NAMES and gan.latents.class_names == CIFAR_NAMES
        images = gan.sample(z=torch.randn(10, args["latent_dim"]), labels=torch.arange(10))
        assert images.shape == (10, 3, 32, 32)
