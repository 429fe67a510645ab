"""MNISTDataModule and the resumable, rank-sharded training loader."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import TensorDataset

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data import MNISTDataModule, ResumableDataLoader
from gan_lightning.data.loading import make_train_loader


def test_batches_in_signed_range_with_labels(fake_mnist_dir):
    dm = MNISTDataModule(fake_mnist_dir, batch_size=32, val_fraction=1 / 6, download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 500 and len(dm.val_set) == 100
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1  # 0 -> -1 and 255 -> +1 exactly
    assert y.dtype == torch.long and 0 <= y.min() and y.max() <= 9
    # the fake digits draw class c as a bright bar at rows 2c+4..2c+5: labels must stay with their images
    rows = x[:, 0, :, 4:24].mean(dim=2).argmax(dim=1)
    assert torch.equal(rows // 2 - 2, y)
    xv, _ = next(iter(dm.reference_dataloader()))
    assert xv.shape == (32, 1, 28, 28)


def test_validation_split_is_fixed_and_disjoint(fake_mnist_dir):
    a = MNISTDataModule(fake_mnist_dir, val_fraction=1 / 6, download=False)
    b = MNISTDataModule(fake_mnist_dir, val_fraction=1 / 6, seed=7, download=False)
    a.setup(), b.setup()
    assert torch.equal(a.val_set.images, b.val_set.images)  # the split does not follow the training seed
    train = {t.numpy().tobytes() for t in a.train_set.images}
    assert not any(v.numpy().tobytes() in train for v in a.val_set.images[:20])


def test_default_split_is_55000_5000_on_real_mnist(real_mnist_dir):
    dm = MNISTDataModule(real_mnist_dir, download=False)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (55000, 5000)


def test_resize_for_dcgan(fake_mnist_dir):
    dm = MNISTDataModule(fake_mnist_dir, batch_size=4, image_size=32, val_fraction=1 / 6, download=False)
    dm.setup()
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 32, 32) and x.min() >= -1 and x.max() <= 1


def test_missing_files_error_names_dir_files_and_flag(tmp_path):
    dm = MNISTDataModule(tmp_path / "nowhere", download=False)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "--data-dir" in msg


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="download failed: OSError"):
        MNISTDataModule(tmp_path, download=True).prepare_data()


def test_data_dir_from_environment(monkeypatch, fake_mnist_dir):
    monkeypatch.setenv("GAN_DATA_DIR", str(fake_mnist_dir))
    assert MNISTDataModule().data_dir == str(fake_mnist_dir)
    monkeypatch.delenv("GAN_DATA_DIR")
    assert MNISTDataModule().data_dir == "./data"


def test_bad_sizes_rejected():
    with pytest.raises(ConfigError, match="batch_size"):
        MNISTDataModule(batch_size=0)
    with pytest.raises(ConfigError, match="image_size"):
        MNISTDataModule(image_size=4)
    with pytest.raises(ConfigError, match="val_fraction"):
        MNISTDataModule(val_fraction=1.0)


def _ids(batch) -> list[int]:
    return batch[0].tolist()


def test_loader_resumes_mid_epoch_exactly():
    data = TensorDataset(torch.arange(100))
    loader = make_train_loader(data, batch_size=10, seed=3)
    assert isinstance(loader, ResumableDataLoader) and len(loader) == 10
    loader.sampler.set_epoch(2)
    it = iter(loader)
    first = [_ids(next(it)) for _ in range(4)]
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 4, "batch_size": 10}
    rest = [_ids(b) for b in it]

    fresh = make_train_loader(data, batch_size=10, seed=3)
    fresh.load_state_dict(state)
    resumed = [_ids(b) for b in fresh]
    assert resumed == rest
    assert sorted(itertools.chain(*first, *resumed)) == list(range(100))  # one permutation, nothing replayed


def test_loader_state_at_epoch_end_starts_next_epoch():
    data = TensorDataset(torch.arange(40))
    loader = make_train_loader(data, batch_size=10, seed=0)
    list(loader)
    fresh = make_train_loader(data, batch_size=10, seed=0)
    fresh.load_state_dict(loader.state_dict())
    assert fresh.sampler.epoch == 1
    assert len(list(fresh)) == 4
    ref = make_train_loader(data, batch_size=10, seed=0)
    ref.sampler.set_epoch(1)
    assert [_ids(b) for b in fresh] == [_ids(b) for b in ref]


def test_loader_shards_across_ranks_without_overlap():
    data = TensorDataset(torch.arange(64))
    shards = [
        [i for b in make_train_loader(data, batch_size=8, num_replicas=2, rank=r) for i in _ids(b)] for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 32
    assert not set(shards[0]) & set(shards[1])


def test_loader_epochs_reshuffle():
    loader = make_train_loader(TensorDataset(torch.arange(50)), batch_size=50, seed=0)
    e0 = _ids(next(iter(loader)))
    loader.sampler.set_epoch(1)
    assert _ids(next(iter(loader))) != e0


def test_too_small_dataset_is_clear():
    with pytest.raises(DataError, match="fewer than one batch"):
        make_train_loader(TensorDataset(torch.arange(5)), batch_size=8)


def test_device_tensor_loader_resumes_and_shards():
    from gan_lightning.data.loading import DeviceTensorLoader

    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous()
    labels = torch.arange(100)
    loader = DeviceTensorLoader(images, labels, batch_size=10, device="cpu", seed=5)
    assert len(loader) == 10
    loader.set_epoch(3)
    it = iter(loader)
    x, y = next(it)
    assert x.shape == (10, 1, 2, 2) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    torch.testing.assert_close(x[:, 0, 0, 0], y.float() / 127.5 - 1)  # labels travel with their images
    next(it)
    state = loader.state_dict()
    assert state == {"epoch": 3, "batches": 2, "batch_size": 10}
    rest = [b[1].tolist() for b in it]
    fresh = DeviceTensorLoader(images, labels, batch_size=10, device="cpu", seed=5)
    fresh.load_state_dict(state)
    assert [b[1].tolist() for b in fresh] == rest
    shards = [{i for _, y in DeviceTensorLoader(images, labels, batch_size=10, device="cpu", num_replicas=2, rank=r)
               for i in y.tolist()} for r in (0, 1)]  # fmt: skip
    assert len(shards[0]) == len(shards[1]) == 50 and not shards[0] & shards[1]


def test_data_on_device_option(fake_mnist_dir):
    from gan_lightning.data.loading import DeviceTensorLoader

    dm = MNISTDataModule(fake_mnist_dir, batch_size=16, val_fraction=1 / 6, download=False, data_on_device=True)
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceTensorLoader) and loader.sampler is loader
    x, y = next(iter(loader))
    assert x.shape == (16, 1, 28, 28) and y.shape == (16,)
