"""Conditional image folders: one subfolder per class (torchvision ImageFolder's labels), the class names in the
run's config, checkpoint and sample grids, sampling by class name, and bad layouts refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_run_ux import one_error_line, status_of, tree
from torchvision.datasets import ImageFolder

from gan_lightning.commands.sample import load_gan
from gan_lightning.commands.sample import main as sample_main
from gan_lightning.data import DATASETS, ImageFolderDataModule

CLASSES = ["cat", "dog", "zebra"]  # sorted: labels 0, 1, 2
TINY = ["--model", "dcgan", "--image-size", "32", "--ngf", "8", "--ndf", "8", "--latent-dim", "8",
        "--batch-size", "16", "--accelerator", "cpu", "--num-workers", "0", "--log-every", "1"]  # fmt: skip


def write_png(path: Path, label: int, seed: int) -> None:
    """A 16x16 RGB image whose channel `label` is saturated, so each class looks different."""
    pixels = np.random.default_rng(seed).integers(0, 60, (16, 16, 3)).astype(np.uint8)
    pixels[:, :, label] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def labelled_folder(root: Path, per_class: int = 24) -> Path:
    """root/{cat,dog,zebra}/*.png, a third of each class one level deeper (nested folders belong to their class)."""
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            write_png(root / name / ("nested" if i % 3 == 0 else "") / f"{i:02d}.png", label, seed=100 * label + i)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return labelled_folder(tmp_path_factory.mktemp("labelled") / "images")


def datamodule(root: Path, **options) -> ImageFolderDataModule:
    dm = DATASETS.get("folder")(str(root), batch_size=4, image_size=16, num_workers=0, **options)
    dm.setup("fit")
    return dm


# ------------------------------------------------------------------------------------------------------ labels
def test_each_file_gets_its_subfolders_label_as_torchvision_imagefolder_gives_it(folder):
    dm = datamodule(folder, conditional=True)
    expected = {str(Path(path)): label for path, label in ImageFolder(str(folder)).samples}
    assert len(expected) == 3 * 24
    seen = {}
    for ds in (dm.train_set, dm.val_set):
        seen |= {str(f): int(label) for f, label in zip(ds.files, ds.labels, strict=True)}
        for i in (0, len(ds) - 1):  # what the loader serves: the image's own label
            image, label = ds[i]
            assert int(label) == expected[str(ds.files[i])] and image.shape == (3, 16, 16)
    assert seen == expected  # every file, train and val together, labelled as ImageFolder labels it
    assert len(dm.val_set) == 3  # the folder's usual 5% split (floor of 72 * 0.05)
    assert dm.class_names == CLASSES and dm.num_classes == 3
    # a batch's labels are its images' classes: the saturated channel says which
    images, labels = next(iter(dm.train_dataloader()))
    assert torch.equal(images.mean(dim=(2, 3)).argmax(dim=1), labels)


def test_unconditional_folder_is_unchanged_same_files_order_and_split_labels_zero(folder):
    plain, labelled = datamodule(folder), datamodule(folder, conditional=True)
    for a, b in ((plain.train_set, labelled.train_set), (plain.val_set, labelled.val_set)):
        assert list(a.files) == list(b.files)
        assert not a.labels.any()
    assert plain.class_names is None and DATASETS.get("folder").class_names(str(folder)) is None


def test_the_spec_reads_the_classes_from_the_data_dir_and_others_declare_none(folder, tmp_path):
    assert DATASETS.get("folder").class_names(str(folder), conditional=True) == CLASSES
    assert DATASETS.get("mnist").class_names(str(tmp_path), conditional=True) is None  # fixed classes: num only


# ------------------------------------------------------------------------------------------------ a training run
@pytest.fixture(scope="module")
def run_dir(folder, tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("cond_runs") / "logs"
    argv = ["--dataset", "folder", "--data-dir", str(folder), "--conditional", "--log-dir", str(logs),
            "--max-steps", "3", "--sample-every", "2", *TINY]  # fmt: skip
    assert status_of(argv) == 0
    return logs / "dcgan" / "version_0"


def test_class_names_are_recorded_in_config_and_checkpoint(run_dir):
    args = yaml.safe_load((run_dir / "config.yaml").read_text())["args"]
    assert args["class_names"] == CLASSES and args["num_classes"] == 3 and args["conditional"] is True
    gan = load_gan(run_dir / "checkpoints" / "last.ckpt")
    assert gan.hparams.class_names == CLASSES and gan.latents.class_names == CLASSES
    assert gan.latents.num_classes == 3 and gan.latents.input_dim == 8 + 3


def test_grids_have_one_row_per_class_and_name_the_rows(run_dir):
    samples = run_dir / "samples"
    assert sorted(p.name for p in samples.glob("*.png")) == ["samples_0000002.png", "samples_0000003.png"]
    assert (samples / "samples_rows.txt").read_text().splitlines() == CLASSES
    grid = np.asarray(Image.open(samples / "samples_0000003.png"))
    assert grid.shape[0] == 2 + 3 * (32 + 2)  # make_grid: three rows of 32 px with 2 px padding
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    (text,) = events.Tensors("samples/rows/text_summary")
    table = text.tensor_proto.string_val[0].decode()
    assert all(f"| {i} | {name} |" in table for i, name in enumerate(CLASSES))


def test_sample_by_class_name_equals_sample_by_label(run_dir, tmp_path):
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    by_name, by_label = tmp_path / "name.pt", tmp_path / "label.pt"
    assert sample_main(["--ckpt", ckpt, "--out", str(by_name), "-n", "4", "--class", "zebra,cat"]) == 0
    assert sample_main(["--ckpt", ckpt, "--out", str(by_label), "-n", "4", "--labels", "2,0"]) == 0
    assert torch.equal(torch.load(by_name), torch.load(by_label))


def test_an_unknown_class_name_is_one_line_listing_the_classes(run_dir, tmp_path, capsys):
    argv = ["--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "x.png"), "--class", "lion"]
    assert sample_main(argv) == 2
    assert "no class named 'lion'; the classes are: cat, dog, zebra" in one_error_line(capsys)
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------------------------- bad layouts
def _loose_image(root: Path) -> Path:
    labelled_folder(root, per_class=4)
    write_png(root / "stray.png", 0, seed=9)
    return root


def _empty_class(root: Path) -> Path:
    labelled_folder(root, per_class=12)
    (root / "empty").mkdir()
    return root


BAD = {
    # name: (layout writer, extra flags, message fragment)
    "images directly in the root": (_loose_image, [], "image(s) lie directly in it (e.g. stray.png)"),
    "--num-classes disagrees": (labelled_folder, ["--num-classes", "4"], "has 3 classes (found in"),
    "--class-names disagree": (labelled_folder, ["--class-names", "a,b,c"], "differ from the classes"),
    "a class folder without images": (_empty_class, [], "has no images"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_conditional_folder_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    layout, flags, message = BAD[case]
    root = layout(tmp_path / "images")
    before = tree(tmp_path)
    argv = ["--dataset", "folder", "--data-dir", str(root), "--conditional", "--log-dir", str(tmp_path / "logs"),
            "--max-steps", "2", *TINY, *flags]  # fmt: skip
    assert status_of(argv) == 2
    assert message in one_error_line(capsys)
    assert tree(tmp_path) == before


def test_class_names_without_conditional_are_refused(folder, tmp_path, capsys):
    argv = ["--dataset", "folder", "--data-dir", str(folder), "--class-names", "a,b,c", "--log-dir", str(tmp_path),
            "--max-steps", "2", *TINY]  # fmt: skip
    assert status_of(argv) == 2
    assert "--class-names names the classes of a conditional GAN" in one_error_line(capsys)
    assert tree(tmp_path) == []
