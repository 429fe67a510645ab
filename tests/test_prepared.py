"""Prepared datasets (`gan-prepare`, `--prepared DIR`): the lazy path's images bit for bit, labels, bad files, a
changed source refused, an interrupted prepare resumed, exact training resume, disjoint ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_images import make_celeba, make_tree, write_image

from gan_lightning.commands.prepare import main as prepare_main
from gan_lightning.commands.train import main as train_main
from gan_lightning.core.errors import DataError
from gan_lightning.data import CelebADataModule, ImageFolderDataModule
from gan_lightning.data import prepared as prepared_module
from gan_lightning.data.images import list_image_files
from gan_lightning.data.prepared import PreparedImages, default_prepared_dir, prepare_images

from conftest import REPO


def prepare(data_dir: Path, *extra: str, dataset: str = "folder") -> Path:
    """Run the prepare command; return the directory it wrote."""
    out = data_dir.parent / f"{data_dir.name}-prepared"
    assert prepare_main(["--dataset", dataset, "--data-dir", str(data_dir), "--num-workers", "0", "--out", str(out),
                         *extra]) == 0  # fmt: skip
    return out


def batches(dm) -> list[tuple[torch.Tensor, torch.Tensor]]:
    dm.setup("fit")
    return list(dm.train_dataloader())


@contextmanager
def no_image_decoded():
    """Fails on any image file opened inside: a prepared dataset serves its rows without reading the source files."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail(f"an image file was opened: {args[0]}"))
        yield


def assert_same_batches(lazy, fast) -> None:
    a = batches(lazy)
    with no_image_decoded():
        b = batches(fast)
    assert len(a) == len(b) > 0
    for (x, y), (u, v) in zip(a, b, strict=True):
        assert torch.equal(x, u) and torch.equal(y, v)  # bit for bit, same order


@pytest.mark.parametrize("channels", [1, 3])
def test_prepared_images_equal_the_lazy_path_bit_for_bit(tmp_path, channels):
    make_tree(tmp_path / "tree")  # PNG, JPEG, greyscale, wide, tall, and smaller than the training size
    out = prepare(tmp_path / "tree", "--image-size", "32", "--channels", str(channels))
    kwargs = {"batch_size": 2, "num_workers": 0, "image_size": 32, "channels": channels, "val_fraction": 0.34}
    lazy = ImageFolderDataModule(str(tmp_path / "tree"), **kwargs)
    fast = ImageFolderDataModule(str(tmp_path / "tree"), prepared=str(out), **kwargs)
    assert_same_batches(lazy, fast)
    lazy_val = torch.stack([lazy.val_set[i][0] for i in range(len(lazy.val_set))])
    with no_image_decoded():
        fast_val = torch.cat([x for x, _ in fast.reference_dataloader()])
    assert torch.equal(lazy_val, fast_val)
    assert np.load(out / "images.npy").shape == (6, channels, 32, 32)  # every file, at the training size


def test_celeba_layout_is_prepared_beside_its_images_and_split_by_partition(tmp_path):
    image_dir = make_celeba(tmp_path, n=12, partition=[0] * 8 + [1] * 2 + [2] * 2)
    assert prepare_main(["--dataset", "celeba", "--data-dir", str(tmp_path), "--num-workers", "0"]) == 0
    out = default_prepared_dir(image_dir, 64, 3)
    assert out.parent == image_dir.parent and (out / "manifest.json").is_file()
    lazy = CelebADataModule(str(tmp_path), batch_size=4, num_workers=0)
    fast = CelebADataModule(str(tmp_path), batch_size=4, num_workers=0, prepared=str(out))
    assert_same_batches(lazy, fast)
    assert len(fast.train_set) == 8 and len(fast.val_set) == 2


def make_classes(root: Path) -> Path:
    for c, name in enumerate(["cats", "dogs", "owls"]):
        for i in range(4):
            write_image(root / name / f"{i}.png", (20, 24), seed=10 * c + i)
    return root


def test_conditional_labels_are_preserved(tmp_path, capsys):
    root = make_classes(tmp_path / "animals")
    out = prepare(root, "--conditional", "--image-size", "16")
    assert np.load(out / "labels.npy").tolist() == [0] * 4 + [1] * 4 + [2] * 4  # files in sorted order
    assert PreparedImages.open(out).classes == ["cats", "dogs", "owls"]
    kwargs = {"batch_size": 3, "num_workers": 0, "image_size": 16, "conditional": True, "val_fraction": 0.25}
    lazy = ImageFolderDataModule(str(root), **kwargs)
    fast = ImageFolderDataModule(str(root), prepared=str(out), **kwargs)
    assert_same_batches(lazy, fast)
    assert fast.class_names == ["cats", "dogs", "owls"]
    assert sorted(torch.cat([y for _, y in batches(fast)]).unique().tolist()) == [0, 1, 2]

    plain = prepare(root, "--image-size", "16")  # no --conditional: no classes recorded
    with pytest.raises(DataError, match="rerun gan-prepare --conditional") as err:
        ImageFolderDataModule(str(root), prepared=str(plain), **kwargs).setup("fit")
    assert "\n" not in str(err.value)


def test_the_printed_training_command_runs_as_printed(tmp_path, capsys):
    import shlex

    root = make_classes(tmp_path / "animals")
    capsys.readouterr()
    out = prepare(root, "--conditional", "--image-size", "8", "--channels", "1")
    printed = capsys.readouterr().out.strip().splitlines()[-1].split("train with ", 1)[1]
    assert f"--prepared {out} --image-size 8 --channels 1 --conditional" in printed
    logs = tmp_path / "logs"
    argv = [*shlex.split(printed), "--log-dir", str(logs), "--max-steps", "1", "--batch-size", "4", "--latent-dim",
            "8", "--accelerator", "cpu"]  # fmt: skip
    assert train_main(argv) == 0, capsys.readouterr().err
    assert prepare_main(["--data-dir", str(root)]) == 2  # no --dataset: what to give, not "--dataset (none)"
    assert capsys.readouterr().err.strip().endswith("give --dataset celeba or folder: only image-file datasets are "
                                                    "prepared (MNIST, the train command's default, is read into "
                                                    "memory already)")  # fmt: skip


def test_a_changed_source_is_refused_in_one_line_and_rebuilt_by_prepare(tmp_path, capsys):
    root = tmp_path / "photos"
    for i in range(6):
        write_image(root / f"{i}.png", (20, 20), seed=i)
    out = prepare(root, "--image-size", "16")
    kwargs = {"batch_size": 2, "num_workers": 0, "image_size": 16, "prepared": str(out)}
    ImageFolderDataModule(str(root), **kwargs).setup("fit")  # fresh: accepted

    write_image(root / "new.png", (20, 20), seed=99)
    with pytest.raises(DataError, match=r"out of date.*1 file\(s\) added \(e\.g\. new\.png\)") as err:
        ImageFolderDataModule(str(root), **kwargs).setup("fit")
    assert "\n" not in str(err.value) and "rerun gan-prepare" in str(err.value)
    capsys.readouterr()
    prepare(root, "--image-size", "16")
    assert "rebuilt (1 file(s) added" in capsys.readouterr().out
    ImageFolderDataModule(str(root), **kwargs).setup("fit")

    stat = os.stat(root / "3.png")
    write_image(root / "3.png", (20, 20), seed=1234)  # new pixels...
    os.utime(root / "3.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # ...at a later time
    with pytest.raises(DataError, match=r"1 file\(s\) modified \(e\.g\. 3\.png\)"):
        ImageFolderDataModule(str(root), **kwargs).setup("fit")
    (root / "new.png").unlink()
    with pytest.raises(DataError, match=r"1 file\(s\) removed \(e\.g\. new\.png\), 1 file\(s\) modified"):
        ImageFolderDataModule(str(root), **kwargs).setup("fit")
    with pytest.raises(DataError, match="holds 16px 3-channel images, this run needs 32px"):
        ImageFolderDataModule(str(root), **{**kwargs, "image_size": 32}).setup("fit")


def test_other_decoder_versions_warn_in_training_and_re_decode_in_prepare(tmp_path, capsys, caplog, monkeypatch):
    root = tmp_path / "photos"
    for i in range(4):
        write_image(root / f"{i}.png", (20, 20), seed=i)
    out = prepare(root, "--image-size", "16")
    assert json.loads((out / "manifest.json").read_text())["decoders"] == prepared_module.decoders()
    kwargs = {"batch_size": 2, "num_workers": 0, "image_size": 16, "val_fraction": 0.25, "prepared": str(out)}
    with caplog.at_level("WARNING"):
        ImageFolderDataModule(str(root), **kwargs).setup("fit")
    assert "decoded with" not in caplog.text
    capsys.readouterr()
    prepare(root, "--image-size", "16")
    assert "up to date" in capsys.readouterr().out

    upgraded = {"Pillow": "99.0", "torchvision": "9.99"}
    monkeypatch.setattr(prepared_module, "decoders", lambda: upgraded)
    with caplog.at_level("WARNING"):
        ImageFolderDataModule(str(root), **kwargs).setup("fit")  # warned, not refused
    assert f"--prepared {out} was decoded with Pillow " in caplog.text and "this run has Pillow 99.0" in caplog.text
    prepare(root, "--image-size", "16")
    assert "rebuilt (decoded with Pillow " in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["decoders"] == upgraded


def test_an_interrupted_prepare_resumes_where_it_stopped(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    for i in range(10):
        write_image(root / f"{i}.png", (30, 20), seed=i)
    files = list_image_files(root)
    decoded = []
    original = prepared_module.decode_image
    monkeypatch.setattr(prepared_module, "decode_image",
                        lambda path, mode: decoded.append(path) or original(path, mode))  # fmt: skip

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done == 6:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prepare_images(root, files, out, image_size=16, channels=3, chunk=3, on_chunk=stop_after_two_chunks)
    assert len(decoded) == 6
    with pytest.raises(DataError, match="unfinished"):
        PreparedImages.open(out)
    decoded.clear()
    progress = []
    how = prepare_images(root, files, out, image_size=16, channels=3, chunk=3,
                         on_chunk=lambda done, total: progress.append((done, total)))  # fmt: skip
    assert how == "resumed at image 6" and len(decoded) == 4 and progress == [(9, 10), (10, 10)]
    whole = tmp_path / "whole"
    assert prepare_images(root, files, whole, image_size=16, channels=3, chunk=4) == "prepared"
    assert np.array_equal(np.load(out / "images.npy"), np.load(whole / "images.npy"))
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "labels.npy", "manifest.json"]
    assert prepare_images(root, files, out, image_size=16, channels=3) == "up to date"


def test_bad_source_files_are_handled_as_the_lazy_path_handles_them(tmp_path, capsys):
    root = tmp_path / "photos"
    for i in range(8):
        write_image(root / f"{i}.png", (20, 20), seed=i)
    (root / "3.png").write_bytes(b"not an image")
    out = tmp_path / "photos-prepared"
    assert prepare_main(["--dataset", "folder", "--data-dir", str(root), "--num-workers", "0", "--out", str(out),
                         "--image-size", "16"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3.png" in err and "--skip-bad-images" in err
    assert not out.exists()  # refused: nothing left behind (tests/test_prepared_faults.py has the other faults)
    prepare(root, "--image-size", "16", "--skip-bad-images")
    kwargs = {"batch_size": 2, "num_workers": 0, "image_size": 16, "val_fraction": 0.0}
    with pytest.raises(DataError, match=r"cannot read image .*3\.png.*--skip-bad-images"):
        ImageFolderDataModule(str(root), prepared=str(out), **kwargs).setup("fit")
    lazy = ImageFolderDataModule(str(root), skip_bad_images=True, **kwargs)
    fast = ImageFolderDataModule(str(root), skip_bad_images=True, prepared=str(out), **kwargs)
    assert_same_batches(lazy, fast)  # 3.png replaced by the next readable file, 4.png, in both
    assert fast.num_skipped == lazy.num_skipped == 1


def test_two_ranks_read_disjoint_samples_covering_the_epoch(tmp_path):
    root = tmp_path / "photos"
    for i in range(16):
        write_image(root / f"{i:02d}.png", (20, 20), seed=i)
    out = prepare(root, "--image-size", "16")
    seen = []
    for rank in (0, 1):
        dm = ImageFolderDataModule(str(root), batch_size=4, num_workers=0, image_size=16, val_fraction=0.0,
                                   prepared=str(out), seed=3, pin_memory=False)  # fmt: skip
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)  # as a Trainer on 2 processes attaches it
        images = torch.cat([x for x, _ in batches(dm)])
        seen.append({x.numpy().tobytes() for x in images})
        assert len(seen[-1]) == len(images) == 8
    everything = {dm.train_set[i][0].numpy().tobytes() for i in range(16)}
    assert not seen[0] & seen[1] and seen[0] | seen[1] == everything


@pytest.mark.slow  # two processes and a gloo group; the sampler-level test above keeps the fast suite's coverage
def test_two_gloo_ranks_of_the_train_command_read_disjoint_samples_covering_each_epoch(tmp_path):
    """Real processes: `--devices 2 --prepared DIR` on CPU; each rank records the images of every batch it trained."""
    from prepared_probe import STEP

    root = tmp_path / "greys"
    root.mkdir()
    for i in range(33):  # uniform greys, the value encodes the index; 32 left for training after the 5% held out
        Image.new("L", (16, 16), i * STEP).save(root / f"{i:02d}.png")
    out = prepare(root, "--image-size", "16", "--channels", "1")
    probe = tmp_path / "probe"
    probe.mkdir()
    # 16 images per rank and epoch: 2 iterations of 2 D steps x 4 images, over 2 epochs
    cmd = [sys.executable, str(REPO / "tests" / "prepared_probe.py"), str(probe), "--dataset", "folder", "--data-dir",
           str(root), "--prepared", str(out), "--model", "mlp", "--image-size", "16", "--channels", "1",
           "--batch-size", "4", "--d-steps", "2", "--latent-dim", "8", "--max-epochs", "2", "--accelerator", "cpu",
           "--devices", "2", "--num-workers", "0", "--seed", "0", "--log-dir", str(tmp_path / "logs"),
           "--sample-every", "1000", "--checkpoint-every", "1000"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["strategy"] == "PerNetworkDDPStrategy" for r in ranks)  # the default
    split = set(ranks[0]["train_split"])
    assert ranks[1]["train_split"] == ranks[0]["train_split"] and len(split) == 32 and split < set(range(33))
    for r in ranks:
        assert set(r["epochs"]) == {"0", "1"}
    for epoch in ("0", "1"):
        a, b = (r["epochs"][epoch] for r in ranks)
        assert len(a) == len(set(a)) == len(b) == len(set(b)) == 16  # no image twice on a rank
        assert not set(a) & set(b) and set(a) | set(b) == split
    assert set(ranks[0]["epochs"]["0"]) != set(ranks[0]["epochs"]["1"])  # the shards are redrawn every epoch


def train(log_dir: Path, data_dir: Path, steps: int, *extra: str) -> dict[str, torch.Tensor]:
    argv = ["--dataset", "folder", "--data-dir", str(data_dir), "--model", "mlp", "--image-size", "16", "--channels",
            "1", "--batch-size", "4", "--latent-dim", "8", "--d-steps", "2", "--accelerator", "cpu", "--seed", "0",
            "--num-workers", "0", "--log-dir", str(log_dir), "--name", "run", "--sample-every", "1000",
            "--checkpoint-every", "1000", "--max-steps", str(steps), *extra]  # fmt: skip
    assert train_main(argv) == 0
    ckpt = torch.load(log_dir / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("generator.")}


def test_training_resumes_exactly_from_a_prepared_dataset(tmp_path):
    root = tmp_path / "photos"
    for i in range(40):  # 38 training images: 4 iterations of 2 x 4 per epoch, so step 6 is mid-epoch
        write_image(root / f"{i:02d}.png", (24, 20), mode="L", seed=i)
    out = prepare(root, "--image-size", "16", "--channels", "1")
    straight = train(tmp_path / "straight", root, 12, "--prepared", str(out))
    half = train(tmp_path / "resumed", root, 6)  # the first half decodes the files...
    resumed = train(tmp_path / "resumed", root, 12, "--prepared", str(out), "--ckpt-path", "last")  # ...then not
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)  # bit-identical on CPU
    assert any(not torch.equal(half[k], resumed[k]) for k in half)  # the second half trained


def test_the_loader_benchmark_reports_the_three_paths_at_each_worker_count(tmp_path, capsys):
    from gan_lightning.bench.data import main as benchmark_main

    argv = ["--data-dir", str(tmp_path), "--num-images", "24", "--image-size", "16", "--batch-size", "4",
            "--batches", "2", "--workers", "0"]  # fmt: skip
    assert benchmark_main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num_images"] == 24 and set(report["results"]) == {"workers=0"}
    row = report["results"]["workers=0"]
    assert all(row[k] > 0 for k in ("lazy", "prepared", "in_memory"))  # speeds are reported, not asserted here
    assert len(list_image_files(tmp_path / "celeba" / "img_align_celeba")) == 24  # generated, CelebA's layout


def test_a_prepared_dataset_loads_in_the_main_process(tmp_path):
    """Nothing is left to decode: asked for workers, the prepared path still gathers in the main process."""
    from PIL import Image

    from gan_lightning.commands.prepare import main as prepare_main
    from gan_lightning.data.folder import ImageFolderDataModule

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(40):
        Image.new("RGB", (10, 12), (i * 6, 3 * i, 255 - i)).save(src / f"{i:03d}.png")
    out = tmp_path / "packed"
    argv = ["--dataset", "folder", "--data-dir", str(src), "--out", str(out), "--image-size", "8", "--channels", "3"]
    assert prepare_main(argv) == 0
    dm = ImageFolderDataModule(str(src), batch_size=8, num_workers=2, image_size=8, prepared=str(out))
    assert dm.train_dataloader().num_workers == 0
    lazy = ImageFolderDataModule(str(src), batch_size=8, num_workers=2, image_size=8)
    assert lazy.train_dataloader().num_workers == 2


def test_relative_data_and_prepared_paths_resume_and_score_from_anywhere(tmp_path, monkeypatch, capsys):
    from weights_files import torchscript_file

    from gan_lightning.commands.evaluate import main as evaluate_main

    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    for i in range(20):
        write_image(started / "photos" / f"{i:02d}.png", (24, 20), mode="L", seed=i)
    prepare(started / "photos", "--image-size", "16", "--channels", "1")  # project/photos-prepared
    torchscript_file(tmp_path / "features.pt")
    monkeypatch.chdir(started)
    train(Path("logs"), Path("photos"), 2, "--prepared", "photos-prepared")  # both paths relative to the project
    ckpt = started / "logs" / "run" / "version_0" / "checkpoints" / "last.ckpt"
    monkeypatch.chdir(elsewhere)
    assert train_main(["--ckpt-path", str(ckpt), "--max-steps", "3"]) == 0
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3 * 3
    capsys.readouterr()
    argv = ["--ckpt", str(ckpt), "--extractor", "torchscript", "--extractor-weights", str(tmp_path / "features.pt"),
            "-n", "10"]  # fmt: skip
    assert evaluate_main(argv) == 2  # 20 images hold one back for validation: too few, said in one line
    assert "has 1 val image(s)" in capsys.readouterr().err
    assert evaluate_main([*argv, "--reference", "train"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fid"] >= 0
    assert not list(elsewhere.iterdir())
