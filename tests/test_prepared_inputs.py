"""Inputs to image folders and gan-prepare: 16-bit greyscale read by its values on the lazy and the prepared path,
bad options and an --out of someone else's files refused in one line with nothing written, symlink loops listed
once, and the errors that name what is wrong (a folder prepared from another one, a --data-dir that is a file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_images import write_image
from test_prepared import no_image_decoded
from test_run_ux import one_error_line, tree

from gan_lightning.commands.prepare import main as prepare_main
from gan_lightning.core.errors import DataError
from gan_lightning.data import ImageFolderDataModule
from gan_lightning.data.images import list_image_files
from gan_lightning.data.prepared import PreparedImages


def prepare_argv(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "folder", "--data-dir", str(data_dir), "--num-workers", "0", "--out", str(out),
            "--image-size", "16", *extra]  # fmt: skip


def photos(root: Path, n: int = 4) -> Path:
    for i in range(n):
        write_image(root / f"{i}.png", (20, 20), seed=i)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: what a refused command must leave as it was."""
    return {p: (root / p).read_bytes() for p in tree(root) if (root / p).is_file()}


def all_images(dm: ImageFolderDataModule) -> torch.Tensor:
    dm.setup("fit")
    return torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])


# ---------------------------------------------------------------------------------------- 16-bit greyscale
@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_greyscale_is_read_by_its_values_on_the_lazy_and_the_prepared_path(tmp_path, capsys, channels):
    """Before, PIL's convert("L") clipped every 16-bit value above 255, so these images loaded as pure white."""
    root = tmp_path / "scans"
    root.mkdir()
    gradient = np.tile(np.arange(32, dtype=np.uint16) * 2000 + 300, (32, 1))  # 300 .. 62300 along each row
    for i in range(3):
        Image.fromarray(gradient + i).save(root / f"{i}.png")
        assert Image.open(root / f"{i}.png").mode == "I;16"
    expected = torch.from_numpy((gradient >> 8).astype(np.float32)).div(255).sub(0.5).div(0.5)  # the high byte
    expected = expected.expand(3, channels, 32, 32)
    kwargs = {"batch_size": 2, "num_workers": 0, "image_size": 32, "channels": channels, "val_fraction": 0.0}
    lazy = all_images(ImageFolderDataModule(str(root), **kwargs))
    assert torch.equal(lazy, expected)

    out = tmp_path / "prepared"
    assert prepare_main(prepare_argv(root, out, "--image-size", "32", "--channels", str(channels))) == 0
    with no_image_decoded():
        fast = all_images(ImageFolderDataModule(str(root), prepared=str(out), **kwargs))
    assert torch.equal(fast, expected)


def test_wider_greyscale_is_read_as_16_bit_or_refused_in_one_line(tmp_path, capsys):
    """Mode I (32-bit int) holds 16-bit values when it comes from a 16-bit file; beyond them, and float (mode F),
    there is no range to map, so the file is refused like an unreadable one, naming the mode."""
    gradient = np.tile(np.arange(32) * 2000, (32, 1))
    ints = tmp_path / "ints"
    ints.mkdir()
    Image.fromarray(gradient.astype(np.int32)).save(ints / "a.tif")
    assert Image.open(ints / "a.tif").mode == "I"
    kwargs = {"batch_size": 1, "num_workers": 0, "image_size": 32, "channels": 1, "val_fraction": 0.0}
    image = all_images(ImageFolderDataModule(str(ints), **kwargs))[0, 0]
    assert torch.equal(image, torch.from_numpy((gradient >> 8).astype(np.float32)).div(255).sub(0.5).div(0.5))

    for name, array, words in (("floats", gradient.astype(np.float32) / 65535, "mode F"),
                               ("huge", gradient.astype(np.int32) * 100, "outside the 16-bit range")):  # fmt: skip
        (tmp_path / name).mkdir()
        Image.fromarray(array).save(tmp_path / name / "a.tif")
        out = tmp_path / f"{name}-prepared"
        assert prepare_main(prepare_argv(tmp_path / name, out, "--channels", "1")) == 2
        err = one_error_line(capsys)
        assert "cannot read image" in err and words in err and "a.tif" in err
        assert not out.exists()


# ------------------------------------------------------------------------------------------ options refused
@pytest.mark.parametrize("flag, value, words", [
    ("--num-workers", "-1", "--num-workers must be >= 0, got -1"),
    ("--image-size", "0", "--image-size must be positive, got 0"),  # as a negative size is
])  # fmt: skip
def test_a_bad_option_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys, flag, value, words):
    """Before, --num-workers -1 was torch's traceback leaving images.npy.partial and progress.json, and
    --image-size 0 silently prepared 64 px images."""
    root = photos(tmp_path / "photos")
    out = tmp_path / "prepared"
    assert prepare_main([*prepare_argv(root, out), flag, value]) == 2
    assert one_error_line(capsys).endswith(words)
    assert not out.exists()


# ------------------------------------------------------------------------------------- --out of other files
SOMEONE_ELSES = [
    {"manifest.json": '{"name": "my web app"}', "notes.txt": "mine"},
    {"notes.txt": "mine"},
    {"manifest.json": '{"name": "my web app"}'},
    {"manifest.json": "not json", "readme.md": "x"},
]


def test_an_out_of_someone_elses_files_is_refused_and_left_untouched(tmp_path, capsys):
    """Before, such a directory was "rebuilt (written by another version)" or "prepared": the arrays and manifest
    written into it, over the user's own manifest.json. Empty, or a prepared dataset of any version, it is written."""
    root = photos(tmp_path / "photos")
    for i, files in enumerate(SOMEONE_ELSES):
        out = tmp_path / f"mine{i}"
        out.mkdir()
        for name, text in files.items():
            (out / name).write_text(text)
        before = snapshot(out)
        assert prepare_main(prepare_argv(root, out)) == 2
        err = one_error_line(capsys)
        assert f"--out {out} is neither empty nor a prepared dataset" in err and "give a new or empty directory" in err
        assert snapshot(out) == before and tree(out) == sorted(files)

    out = tmp_path / "mine0"
    for name in SOMEONE_ELSES[0]:
        (out / name).unlink()
    assert prepare_main(prepare_argv(root, out)) == 0  # emptied: written
    (out / "notes.txt").write_text("kept")  # beside a dataset of ours: neither refused nor removed
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "format": 0}))
    capsys.readouterr()
    assert prepare_main(prepare_argv(root, out)) == 0
    assert "rebuilt (written by another version)" in capsys.readouterr().out
    assert (out / "notes.txt").read_text() == "kept"
    PreparedImages.open(out)


# ------------------------------------------------------------------------------------------- symlink loops
def test_a_link_back_up_the_tree_lists_each_image_once(tmp_path):
    """Before, sub/up -> .. was followed round the loop until the OS refused the path: 82 files for these 2."""
    root = photos(tmp_path / "photos", n=2)
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "up")
    (tmp_path / "more").mkdir()
    write_image(tmp_path / "more" / "x.png", (20, 20), seed=7)
    os.symlink(tmp_path / "more", root / "linked")  # a link to a folder elsewhere is still followed
    assert [p.relative_to(root).as_posix() for p in list_image_files(root)] == ["0.png", "1.png", "linked/x.png"]
    dm = ImageFolderDataModule(str(root), batch_size=1, num_workers=0, image_size=16, val_fraction=0.0)
    dm.setup("fit")
    assert len(dm.train_set) == 3


def test_a_folder_and_a_link_to_it_list_the_folder_whichever_sorts_first(tmp_path):
    root = tmp_path / "classes"
    photos(root / "zebra", n=2)
    os.symlink(root / "zebra", root / "antelope")  # sorts first, but is the link: the real folder keeps its images
    assert [p.relative_to(root).as_posix() for p in list_image_files(root)] == ["zebra/0.png", "zebra/1.png"]


# ------------------------------------------------------------------------------------------- what is wrong
def test_a_dataset_prepared_from_another_folder_names_both(tmp_path):
    """Before: "--prepared P is out of date: B changed since it was prepared (4 file(s) modified ...)"."""
    first = photos(tmp_path / "first")
    out = tmp_path / "prepared"
    assert prepare_main(prepare_argv(first, out)) == 0
    second = photos(tmp_path / "second")  # the same names, written later: not the same files
    kwargs = {"batch_size": 2, "num_workers": 0, "image_size": 16, "prepared": str(out)}
    with pytest.raises(DataError) as err:
        ImageFolderDataModule(str(second), **kwargs).setup("fit")
    message = str(err.value)
    assert f"--prepared {out} was prepared from {first.resolve()}, not from {second}" in message
    assert "\n" not in message and "changed since" not in message

    moved = tmp_path / "moved"
    first.rename(moved)  # the same files under another name: still accepted
    ImageFolderDataModule(str(moved), **kwargs).setup("fit")


def test_a_data_dir_that_is_a_file_says_so(tmp_path, capsys):
    """Before: "the folder X does not exist", of a file that does."""
    image = write_image(tmp_path / "one.png", (20, 20))
    assert prepare_main(prepare_argv(image, tmp_path / "prepared")) == 2
    err = one_error_line(capsys)
    assert f"{image} is a file, not a folder" in err and "does not exist" not in err
    assert tree(tmp_path) == ["one.png"]
    with pytest.raises(DataError, match=f"{image} is a file, not a folder"):
        ImageFolderDataModule(str(image), batch_size=1, num_workers=0).setup("fit")
