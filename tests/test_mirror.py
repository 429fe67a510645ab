"""--mirror (StyleGAN2-ADA's dataset x-flips): the training set doubled, item n + i being item i mirrored left-right,
through the DataLoader, the device-resident loader and a prepared dataset, in the run's seeded order, recorded in
config.yaml like any option."""

from __future__ import annotations

from collections import Counter

import torch
from test_data_images import make_tree
from test_prepared import no_image_decoded, prepare
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning.commands.train import build_parser, resolve
from gan_lightning.commands.train.runconfig import run_config
from gan_lightning.data import DATASETS
from gan_lightning.data.base import TensorImageDataset
from gan_lightning.data.loading import DeviceTensorLoader, mirrored


def test_mirrored_doubles_the_set_and_flips_exactly_the_second_half():
    images = torch.randint(0, 256, (5, 2, 4, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    base = TensorImageDataset(images, torch.arange(5))
    doubled = mirrored(base)
    assert len(doubled) == 10
    for i in range(5):
        (x, y), (fx, fy) = doubled[i], doubled[5 + i]
        assert torch.equal(x, base[i][0]) and int(y) == i
        assert torch.equal(fx, base[i][0].flip(-1)) and int(fy) == i  # along the width: left-right
        assert not torch.equal(fx, x)
    # a DataLoader reads a batch of items at once (the dataset's batched read), mirrored items flipped in it
    ((batch_x, batch_y),) = DataLoader(doubled, batch_size=4, sampler=[7, 2, 5, 9], collate_fn=doubled.collate_fn)
    assert torch.equal(batch_x, torch.stack([doubled[i][0] for i in (7, 2, 5, 9)]))
    assert batch_y.tolist() == [2, 2, 0, 4]
    plain = mirrored(TensorDataset(images.float(), torch.arange(5)))  # a dataset without __getitems__
    assert torch.equal(plain[8][0], images[3].float().flip(-1)) and int(plain[8][1]) == 3


def keyed(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Counter:
    """The multiset of (image bytes, label) over `batches`."""
    pairs = (pair for images, labels in batches for pair in zip(images, labels, strict=True))
    return Counter((x.numpy().tobytes(), int(y)) for x, y in pairs)


def stacked(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of `dataset` as one batch (images, labels)."""
    images, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(images), torch.stack([torch.as_tensor(y) for y in labels])


def mnist(data_dir, **options):
    """The fake MNIST's DataModule built as the train command builds it (options it does not take are set)."""
    dm = DATASETS.get("mnist")(str(data_dir), download=False, num_workers=0, **options)
    dm.setup("fit")
    return dm


def test_every_image_and_its_mirror_once_per_epoch_in_both_loaders_in_the_same_seeded_order(fake_mnist_dir):
    dm = mnist(fake_mnist_dir, batch_size=550, mirror=True)
    n = len(dm.train_set)
    assert dm.mirror and n == 550 and len(dm.training_set()) == 2 * n
    epoch = list(dm.train_dataloader())
    assert len(epoch) == 2
    originals = [stacked(dm.train_set)]
    flipped = [(originals[0][0].flip(-1), originals[0][1])]
    assert keyed(epoch) == keyed(originals) + keyed(flipped)  # each image and its mirror, once each
    on_device = mnist(fake_mnist_dir, batch_size=550, mirror=True, data_on_device=True).train_dataloader()
    assert isinstance(on_device, DeviceTensorLoader) and len(on_device) == 2
    for (x, y), (u, v) in zip(epoch, on_device, strict=True):
        assert torch.equal(x, u) and torch.equal(y, v)
    # the run's seed orders the doubled set: the same seed the same batches, another seed others
    again = next(iter(mnist(fake_mnist_dir, batch_size=550, mirror=True).train_dataloader()))
    other = next(iter(mnist(fake_mnist_dir, batch_size=550, mirror=True, seed=1).train_dataloader()))
    assert torch.equal(again[0], epoch[0][0]) and not torch.equal(other[0], epoch[0][0])
    # off by default: the loader serves the training set itself
    assert len(mnist(fake_mnist_dir, batch_size=550).train_dataloader()) == 1


def test_a_prepared_dataset_is_mirrored_as_the_decoded_files_are(tmp_path):
    make_tree(tmp_path / "tree")
    out = prepare(tmp_path / "tree", "--image-size", "32", "--channels", "3")
    options = {"batch_size": 2, "num_workers": 0, "image_size": 32, "channels": 3, "val_fraction": 0.34,
               "mirror": True}  # fmt: skip
    lazy = DATASETS.get("folder")(str(tmp_path / "tree"), **options)
    fast = DATASETS.get("folder")(str(tmp_path / "tree"), prepared=str(out), **options)
    lazy.setup("fit")
    a = list(lazy.train_dataloader())
    with no_image_decoded():  # the mirrored rows come from the prepared array
        fast.setup("fit")
        b = list(fast.train_dataloader())
    assert len(fast.training_set()) == 2 * len(fast.train_set) == 8
    assert len(a) == len(b) == 4
    for (x, y), (u, v) in zip(a, b, strict=True):
        assert torch.equal(x, u) and torch.equal(y, v)  # bit for bit, same order
    images, labels = stacked(fast.train_set)
    assert keyed(b) == keyed([(images, labels)]) + keyed([(images.flip(-1), labels)])


def test_mirror_is_a_flag_of_every_dataset_recorded_in_config_yaml():
    assert all(DATASETS.get(name).accepts("mirror") for name in DATASETS.names())
    assert run_config(resolve(build_parser().parse_args(["--mirror"])))["mirror"] is True  # MNIST too: allowed
    assert run_config(resolve(build_parser().parse_args([])))["mirror"] is False
    help_text = " ".join(build_parser().format_help().split())
    assert "--mirror, --no-mirror double the training set" in help_text and "flip-symmetric data" in help_text
