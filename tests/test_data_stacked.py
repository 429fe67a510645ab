"""StackedMNISTDataModule: three MNIST digits as the channels of one image, 1000 modes."""

from __future__ import annotations

import pytest
import torch

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data import DATASETS, MNISTDataModule, StackedMNISTDataModule, decode_codes, encode_digits
from gan_lightning.data.loading import DeviceTensorLoader

# The fake MNIST holds 600 digits: with val_fraction 1/6 the split is 500 train / 100 val digits.
FAKE = dict(val_fraction=1 / 6, download=False, num_train=256, num_val=64)


def _stacked(root, **kwargs) -> StackedMNISTDataModule:
    dm = StackedMNISTDataModule(root, **{**FAKE, **kwargs})
    dm.setup()
    return dm


def _bar_digits(x: torch.Tensor) -> torch.Tensor:
    """(B, 3) digits read off fake-MNIST images (B, 3, 28, 28): class c is a bright bar at rows 2c+4..2c+5."""
    rows = x[:, :, :, 4:24].float().mean(dim=3).argmax(dim=2)  # (B, 3)
    return rows // 2 - 2


def test_codes_round_trip():
    digits = torch.tensor([[0, 0, 0], [9, 9, 9], [1, 2, 3], [7, 0, 4]])
    codes = encode_digits(digits)
    assert codes.tolist() == [0, 999, 123, 704] and codes.dtype == torch.long
    assert torch.equal(decode_codes(codes), digits)
    assert torch.equal(encode_digits(decode_codes(torch.arange(1000))), torch.arange(1000))


def test_batches_are_three_channel_signed_with_codes(fake_mnist_dir):
    dm = _stacked(fake_mnist_dir, batch_size=32)
    assert (StackedMNISTDataModule.channels, StackedMNISTDataModule.num_classes) == (3, 1000)
    assert (len(dm.train_set), len(dm.val_set)) == (256, 64)
    assert dm.train_set.images.dtype == torch.uint8 and dm.train_set.images.shape == (256, 3, 28, 28)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 28, 28) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    assert y.shape == (32,) and y.dtype == torch.long and 0 <= y.min() and y.max() <= 999
    assert torch.equal(_bar_digits(x), decode_codes(y))  # labels stay with their images through the loader
    xv, yv = next(iter(dm.reference_dataloader()))
    assert xv.shape == (32, 3, 28, 28) and torch.equal(_bar_digits(xv), decode_codes(yv))


def test_image_size_32_for_dcgan(fake_mnist_dir):
    dm = _stacked(fake_mnist_dir, batch_size=8, image_size=32)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert dm.val_set.images.shape == (64, 3, 32, 32)


def test_each_channel_is_the_source_digit(fake_mnist_dir):
    mnist = MNISTDataModule(fake_mnist_dir, val_fraction=1 / 6, download=False)
    mnist.setup()
    dm = _stacked(fake_mnist_dir)
    for stacked, digits, sources in (
        (dm.train_set, mnist.train_set, dm.train_sources),
        (dm.val_set, mnist.val_set, dm.val_sources),
    ):
        for c in range(3):
            assert torch.equal(stacked.images[:, c], digits.images[sources[:, c], 0])
        assert torch.equal(decode_codes(stacked.labels), digits.labels[sources])
        assert torch.equal(_bar_digits(stacked.images), decode_codes(stacked.labels))


def test_composition_follows_stack_seed_not_training_seed(fake_mnist_dir):
    a = _stacked(fake_mnist_dir)
    b = _stacked(fake_mnist_dir, seed=7)  # another training seed: the same dataset
    c = _stacked(fake_mnist_dir, stack_seed=a.stack_seed + 1)
    for name in ("train_set", "val_set"):
        sa, sb, sc = (getattr(dm, name) for dm in (a, b, c))
        assert torch.equal(sa.images, sb.images) and torch.equal(sa.labels, sb.labels)
        assert not torch.equal(sa.images, sc.images)
    # independent streams: the number of training images does not move the validation images
    d = _stacked(fake_mnist_dir, num_train=100)
    assert torch.equal(d.val_set.images, a.val_set.images) and torch.equal(d.train_sources, a.train_sources[:100])


def test_train_and_val_use_disjoint_digits(fake_mnist_dir):
    mnist = MNISTDataModule(fake_mnist_dir, val_fraction=1 / 6, download=False)
    mnist.setup()
    dm = _stacked(fake_mnist_dir, num_train=2000, num_val=300)
    assert dm.train_sources.max() < len(mnist.train_set) and dm.val_sources.max() < len(mnist.val_set)
    train_digits = {d.numpy().tobytes() for d in dm.train_set.images.flatten(0, 1)}
    val_digits = {d.numpy().tobytes() for d in dm.val_set.images.flatten(0, 1)}
    assert len(train_digits) > 400 and len(val_digits) > 50  # most of each pool is drawn
    assert not train_digits & val_digits


def test_missing_files_give_the_mnist_error(tmp_path):
    def message(cls) -> str:
        with pytest.raises(DataError) as err:
            cls(tmp_path / "nowhere", download=False).prepare_data()
        return str(err.value)

    assert message(StackedMNISTDataModule) == message(MNISTDataModule)
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        StackedMNISTDataModule(tmp_path / "nowhere", download=False).setup()


def test_bad_options_rejected():
    with pytest.raises(ConfigError, match="num_train"):
        StackedMNISTDataModule(num_train=0)
    with pytest.raises(ConfigError, match="num_val"):
        StackedMNISTDataModule(num_val=-1)
    with pytest.raises(ConfigError, match="val_fraction"):
        StackedMNISTDataModule(val_fraction=0.0)
    with pytest.raises(ConfigError, match="image_size"):
        StackedMNISTDataModule(image_size=4)


def test_registry_builds_it(fake_mnist_dir):
    dm = DATASETS.get("stacked_mnist")(fake_mnist_dir, batch_size=8, seed=3, image_size=32, download=False)
    assert isinstance(dm, StackedMNISTDataModule) and dm.channels == 3 and dm.image_size == 32 and dm.seed == 3
    assert (dm.num_train, dm.num_val) == (55_000, 5_000)
    assert DATASETS.get("stacked_mnist")(fake_mnist_dir, batch_size=8).batch_size == 8


def test_loader_resumes_mid_epoch_exactly(fake_mnist_dir):
    dm = _stacked(fake_mnist_dir, batch_size=16, seed=5)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    it = iter(loader)
    for _ in range(5):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches": 5, "batch_size": 16}
    rest = list(it)
    fresh = _stacked(fake_mnist_dir, batch_size=16, seed=5).train_dataloader()
    fresh.load_state_dict(state)
    resumed = list(fresh)
    assert len(loader) == 16 and len(resumed) == len(rest) == 11
    for (xa, ya), (xb, yb) in zip(resumed, rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_data_on_device_option(fake_mnist_dir):
    dm = _stacked(fake_mnist_dir, batch_size=16, data_on_device=True)
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceTensorLoader)
    x, y = next(iter(loader))
    assert x.shape == (16, 3, 28, 28) and torch.equal(_bar_digits(x), decode_codes(y))


def test_real_mnist_covers_the_1000_codes_evenly(real_mnist_dir):
    dm = StackedMNISTDataModule(real_mnist_dir, download=False)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (55_000, 5_000)
    assert dm.train_set.images.shape == (55_000, 3, 28, 28)
    counts = torch.bincount(dm.train_set.labels, minlength=1000).double()
    assert (counts > 0).sum() >= 990
    p = counts / counts.sum()
    kl = (p[p > 0] * (p[p > 0] * 1000).log()).sum().item()  # KL(code histogram || uniform), log 1000 = 6.9 at worst
    assert kl < 0.02, kl
    assert counts.max() / counts.mean() < 2.5
    assert torch.bincount(dm.val_set.labels, minlength=1000).gt(0).sum() >= 900  # 5,000 draws over 1000 codes
    # each channel is its own uniform draw over the digits: every digit holds about a tenth of every channel
    shares = torch.stack([torch.bincount(d, minlength=10) for d in decode_codes(dm.train_set.labels).T]) / 55_000
    assert shares.min() > 0.08 and shares.max() < 0.125
