"""Image-file datasets: CelebA layout and partition file, image folders, bad files, helpful errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data import CelebADataModule, ImageFileDataset, ImageFolderDataModule
from gan_lightning.data.images import decode_image, list_image_files


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """Save random blocks of `size` (width, height) as an image; the format follows the suffix.

    Blocks, not pixel noise: downscaling averages noise to grey, and the tests check the full [-1, 1] range.
    """
    rng = np.random.default_rng(seed)
    shape = (4, 4, 3) if mode == "RGB" else (4, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = Image.fromarray(rng.choice(np.array([0, 255], dtype=np.uint8), shape), mode)
    blocks.resize(size, Image.Resampling.NEAREST).save(path)
    return path


def make_celeba(data_dir: Path, n: int = 12, partition: list[int] | None = None) -> Path:
    """A CelebA-layout folder of `n` 178x218 JPEGs, plus `list_eval_partition.txt` if `partition` is given."""
    image_dir = data_dir / "celeba" / "img_align_celeba"
    for i in range(1, n + 1):
        write_image(image_dir / f"{i:06d}.jpg", (178, 218), seed=i)
    if partition is not None:
        lines = [f"{i:06d}.jpg {split}\n" for i, split in enumerate(partition, 1)]
        (data_dir / "celeba" / "list_eval_partition.txt").write_text("".join(lines))
    return image_dir


PARTITION = [0] * 8 + [1] * 2 + [2] * 2


def celeba(data_dir: Path, **kwargs) -> CelebADataModule:
    kwargs = {"batch_size": 4, "num_workers": 0, **kwargs}
    return CelebADataModule(str(data_dir), **kwargs)


def all_batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def check_images(images: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert images.shape == shape and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.5 and images.max() > 0.5  # really spans the range, not e.g. [0, 1]
    assert not torch.equal(images[0], images[1])


def test_celeba_partition_file_gives_the_split(tmp_path: Path) -> None:
    make_celeba(tmp_path, partition=PARTITION)
    dm = celeba(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 8 and len(dm.val_set) == 2
    assert [Path(f).name for f in dm.val_set.files] == ["000009.jpg", "000010.jpg"]
    batches = all_batches(dm.train_dataloader())
    assert len(batches) == 2
    images, labels = batches[0]
    check_images(images, (4, 3, 64, 64))
    assert labels.dtype == torch.long and labels.tolist() == [0, 0, 0, 0]
    val_images, _ = next(iter(dm.reference_dataloader()))
    check_images(val_images, (2, 3, 64, 64))


def test_celeba_without_partition_is_a_fixed_random_split(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    first, second = celeba(tmp_path, val_fraction=0.25), celeba(tmp_path, val_fraction=0.25, seed=7)
    first.setup("fit")
    second.setup("fit")
    assert len(first.train_set) == 9 and len(first.val_set) == 3
    assert list(first.train_set.files) == list(second.train_set.files)
    assert list(first.val_set.files) == list(second.val_set.files)
    assert sorted(list(first.train_set.files) + list(first.val_set.files)) == sorted(
        str(f) for f in list_image_files(tmp_path / "celeba" / "img_align_celeba")
    )


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_celeba_bad_image_raises_or_is_skipped(tmp_path: Path, kind: str) -> None:
    image_dir = make_celeba(tmp_path, partition=PARTITION)
    bad = image_dir / "000003.jpg"  # a training image
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if kind == "truncated" else np.random.bytes(5000))

    dm = celeba(tmp_path)
    with pytest.raises(DataError, match="000003.jpg") as info:
        # Garbage has no image header and is found before training; a truncated JPEG only when decoded.
        dm.setup("fit")
        assert kind == "truncated"
        all_batches(dm.train_dataloader())
    assert "--skip-bad-images" in str(info.value)

    dm = celeba(tmp_path, skip_bad_images=True)
    dm.setup("fit")
    batches = all_batches(dm.train_dataloader())
    assert len(batches) == 2
    check_images(torch.cat([images for images, _ in batches]), (8, 3, 64, 64))
    assert dm.train_set.num_skipped == 1 and dm.num_skipped == 1
    assert dm.train_set.skipped_files == [str(bad)]
    all_batches(dm.train_dataloader())  # a second epoch does not count the same file again
    assert dm.num_skipped == 1


def test_celeba_missing_folder_explains_where_to_put_files(tmp_path: Path) -> None:
    dm = celeba(tmp_path)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    for part in ("img_align_celeba", "list_eval_partition.txt", "CelebA Align&Cropped Images", "--download"):
        assert part in message
    assert str(tmp_path / "celeba") in message
    with pytest.raises(DataError, match="does not exist"):
        dm.setup("fit")


def test_celeba_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    with pytest.raises(DataError, match="contains no images") as info:
        celeba(tmp_path).setup("fit")
    assert str(tmp_path / "celeba" / "img_align_celeba") in str(info.value)


def test_celeba_failed_download_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CelebA", offline)
    with pytest.raises(DataError, match="download failed.*network is unreachable"):
        celeba(tmp_path, download=True).prepare_data()
    make_celeba(tmp_path, n=2)
    celeba(tmp_path, download=True).prepare_data()  # images present: no download attempted


def test_celeba_bad_partition_file(tmp_path: Path) -> None:
    make_celeba(tmp_path, n=3, partition=[0, 1, 0])
    with (tmp_path / "celeba" / "list_eval_partition.txt").open("a") as f:
        f.write("000004.jpg 0\n")
    with pytest.raises(DataError, match="000004.jpg"):
        celeba(tmp_path).setup("fit")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(DataError, match="line 1"):
        celeba(tmp_path).setup("fit")


def test_invalid_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="channels"):
        celeba(tmp_path, channels=2)
    with pytest.raises(ConfigError, match="val_fraction"):
        ImageFolderDataModule(str(tmp_path), val_fraction=1.0)


def make_tree(root: Path) -> None:
    write_image(root / "a" / "wide.png", (100, 60), seed=1)
    write_image(root / "a" / "b" / "grey.PNG", (70, 90), mode="L", seed=2)
    write_image(root / "a" / "b" / "photo.JPEG", (64, 48), seed=3)
    write_image(root / "tiny.jpg", (12, 20), seed=4)  # smaller than image_size: upscaled
    write_image(root / "c" / "d.jpg", (40, 40), seed=5)
    write_image(root / "c" / "e.png", (33, 80), mode="L", seed=6)
    (root / "notes.txt").write_text("not an image")


def test_list_image_files_is_recursive_case_insensitive_and_sorted(tmp_path: Path) -> None:
    make_tree(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert names == ["a/b/grey.PNG", "a/b/photo.JPEG", "a/wide.png", "c/d.jpg", "c/e.png", "tiny.jpg"]


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_mixed_tree(tmp_path: Path, channels: int) -> None:
    make_tree(tmp_path)
    dm = ImageFolderDataModule(
        str(tmp_path), batch_size=2, num_workers=0, image_size=32, channels=channels, val_fraction=0.34
    )
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.val_set) == 2
    images = torch.cat([images for images, _ in all_batches(dm.train_dataloader())])
    check_images(images, (4, channels, 32, 32))
    val = torch.cat([images for images, _ in dm.reference_dataloader()])
    assert val.shape == (2, channels, 32, 32)


def test_small_and_greyscale_images_become_the_requested_shape(tmp_path: Path) -> None:
    grey = write_image(tmp_path / "grey.png", (20, 10), mode="L")
    image, label = ImageFileDataset([grey], image_size=32, channels=3)[0]
    assert image.shape == (3, 32, 32) and label.dtype == torch.long and label.item() == 0
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    rgb = write_image(tmp_path / "rgb.jpg", (50, 40))
    image, _ = ImageFileDataset([rgb], image_size=16, channels=1)[0]
    assert image.shape == (1, 16, 16)


def test_image_folder_missing_or_empty(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as info:
        ImageFolderDataModule(str(missing), num_workers=0).prepare_data()
    assert str(missing) in str(info.value) and ".jpg" in str(info.value) and "--data-dir" in str(info.value)

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="contains no images") as info:
        ImageFolderDataModule(str(tmp_path / "empty"), num_workers=0).setup("fit")
    assert str(tmp_path / "empty") in str(info.value) and ".png" in str(info.value)


def test_every_image_bad_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    dataset = ImageFileDataset([bad], image_size=16, skip_bad_images=True)
    with pytest.raises(DataError, match="none of the 1 images"):
        dataset[0]
    assert dataset.num_skipped == 1


def counting_decoder(decoded: list[str]) -> Callable[[str, str], Image.Image]:
    """`decode_image`, recording each path it decodes in `decoded`."""
    return lambda path, mode: decoded.append(path) or decode_image(path, mode)


def test_small_folders_are_decoded_once_and_large_ones_on_every_access(tmp_path):
    from gan_lightning.data.images import dcgan_transform

    files = [write_image(tmp_path / f"{i}.png", (40, 30), seed=i) for i in range(4)]
    per_image = 3 * 16 * 16  # uint8 (C, S, S)
    decoded: list[str] = []
    decode = counting_decoder(decoded)
    lazy = ImageFileDataset(files, image_size=16, decode=decode)
    fits = ImageFileDataset(files, image_size=16, cache_bytes=4 * per_image, decode=decode)
    too_small = ImageFileDataset(files, image_size=16, cache_bytes=4 * per_image - 1, decode=decode)
    assert (lazy.cached, fits.cached, too_small.cached) == (False, True, False)
    for ds in (lazy, fits, too_small):
        decoded.clear()
        first = [ds[i] for i in range(4)]
        again = [ds[i] for i in range(4)]
        assert len(decoded) == (4 if ds.cached else 8)
        for i, ((a, la), (b, lb)) in enumerate(zip(first, again, strict=True)):
            assert a is not b  # a fresh tensor each time: changing one in place cannot reach the cache
            assert torch.equal(a, b) and torch.equal(la, lb)
            with Image.open(files[i]) as img:  # the DCGAN tutorial's preprocessing, bit for bit
                assert torch.equal(a, dcgan_transform(16, 3)(img.convert("RGB")))
        first[0][0].add_(1)
        assert torch.equal(ds[0][0], again[0][0])


def test_the_cache_keeps_a_skipped_files_replacement_and_counts_the_skip_once(tmp_path):
    files = [write_image(tmp_path / f"{i}.png", (16, 16), seed=i) for i in range(3)]
    files[1].write_bytes(b"not an image")
    decoded: list[str] = []
    ds = ImageFileDataset(
        files, image_size=16, skip_bad_images=True, cache_bytes=1 << 20, decode=counting_decoder(decoded)
    )
    replacement = ds[1][0]  # the next readable file, 2.png
    assert ds.num_skipped == 1 and torch.equal(replacement, ds[2][0])
    count = len(decoded)
    assert torch.equal(ds[1][0], replacement) and len(decoded) == count  # from memory, no second skip
    assert ds.num_skipped == 1


def test_the_folder_datamodule_shares_its_cache_budget_among_loading_processes(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from gan_lightning.data import folder

    for i in range(20):
        write_image(tmp_path / f"{i:02d}.png", (16, 16), mode="L", seed=i)
    need = 19 * 28 * 28  # the training images after the 5% validation split, uint8
    monkeypatch.setattr(folder, "CACHE_BYTES", 2 * need)
    cached = {}
    for workers, ranks in ((0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (1, 3)):
        dm = ImageFolderDataModule(str(tmp_path), batch_size=4, num_workers=workers, image_size=28, channels=1)
        dm.trainer = SimpleNamespace(world_size=ranks)  # as attached by a Trainer on `ranks` processes
        dm.setup("fit")
        assert len(dm.train_set) == 19 and not dm.val_set.cached  # validation images are read once
        cached[workers, ranks] = dm.train_set.cached
    assert cached == {(0, 1): True, (1, 1): True, (2, 1): True, (3, 1): False, (0, 2): True, (1, 3): False}


def test_a_greyscale_folder_trains_one_channel_and_says_so(tmp_path: Path, capsys) -> None:
    from gan_lightning.commands.train import build_parser, resolve

    grey, rgb, mixed = tmp_path / "grey", tmp_path / "rgb", tmp_path / "mixed"
    for i in range(3):
        write_image(grey / f"{i}.png", (12, 10), mode="L", seed=i)
        write_image(rgb / f"{i}.png", (12, 10), seed=i)
        write_image(mixed / f"{i}.png", (12, 10), mode="L" if i else "RGB", seed=i)
    assert ImageFolderDataModule.read_channels(str(grey)) == 1
    assert ImageFolderDataModule.read_channels(str(rgb)) is None
    assert ImageFolderDataModule.read_channels(str(mixed)) is None  # any colour image: RGB, as before

    def channels(folder: Path, *flags: str) -> int:
        return resolve(build_parser().parse_args(["--dataset", "folder", "--data-dir", str(folder), *flags])).channels

    capsys.readouterr()
    assert channels(grey) == 1
    assert capsys.readouterr().err == (f"note: the images under {grey} are greyscale: training with --channels 1 "
                                       "(pass --channels 3 for RGB)\n")  # fmt: skip
    assert channels(grey, "--channels", "3") == 3 and channels(rgb) == 3 and channels(mixed) == 3
    assert capsys.readouterr().err == ""


def test_what_was_inferred_is_said_only_when_the_command_goes_ahead(tmp_path: Path, capsys) -> None:
    from gan_lightning.commands.prepare import main as prepare_main
    from gan_lightning.commands.train import main as train_main

    grey = tmp_path / "grey"
    for i in range(4):
        write_image(grey / f"{i}.png", (12, 10), mode="L", seed=i)
    (tmp_path / "file").write_text("x")
    capsys.readouterr()
    # refused: the one error line alone, no note about the channels before it
    assert prepare_main(["--dataset", "folder", "--data-dir", str(grey), "--out", str(tmp_path / "file" / "o")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("prepare_data.py: error: --out")
    argv = ["--dataset", "folder", "--data-dir", str(grey), "--prepared", str(tmp_path / "none"), "--image-size",
            "16", "--log-dir", str(tmp_path / "logs"), "--max-steps", "1", "--batch-size", "2"]  # fmt: skip
    assert train_main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("train.py: error: --prepared")
    # going ahead: the note is said
    assert prepare_main(["--dataset", "folder", "--data-dir", str(grey), "--out", str(tmp_path / "p")]) == 0
    assert "note: the images under" in capsys.readouterr().err
