"""Faults around prepared datasets, through the real commands: `gan-prepare` refused (a bad image, an --out it cannot
write, another run writing the same --out) or failing (a full disk) says one line and leaves nothing of its own,
a finished dataset already there intact; `--prepared` over a damaged directory is one line before any run
directory exists, and a rerun of gan-prepare rewrites it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_faults
from test_data_images import write_image
from test_run_ux import one_error_line, tree

from gan_lightning.commands.prepare import main as prepare_main
from gan_lightning.commands.train import main as train_main
from gan_lightning.data import prepared as prepared_module
from gan_lightning.data.images import list_image_files
from gan_lightning.data.prepared import PreparedImages, prepare_images

from conftest import REPO

full_disk = test_faults.full_disk  # writes to matching files fail with ENOSPC after some bytes


def photos(root: Path, n: int = 12, size: tuple[int, int] = (20, 20)) -> Path:
    for i in range(n):
        write_image(root / f"{i:03d}.png", size, seed=i)
    return root


def prepare_argv(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "folder", "--data-dir", str(data_dir), "--num-workers", "0", "--out", str(out),
            "--image-size", "16", *extra]  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: what a refused or failed command must leave as it was."""
    return {p: (root / p).read_bytes() for p in tree(root) if (root / p).is_file()}


def error_line(capsys) -> str:
    """The command's one error line: no traceback, and nothing else but its progress lines."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("prepare: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


# ------------------------------------------------------------------------------------------- gan-prepare refused
def test_a_bad_image_leaves_no_output_directory_and_a_finished_dataset_intact(tmp_path, capsys):
    root = photos(tmp_path / "photos")
    png = root / "005.png"
    truncate(png, len(png.read_bytes()) // 2)  # a PNG cut short, as a failed copy leaves it
    out = tmp_path / "new" / "deep" / "prepared"
    assert prepare_main(prepare_argv(root, out)) == 2
    err = one_error_line(capsys)
    assert "cannot read image" in err and "005.png" in err and "--skip-bad-images" in err
    assert not (tmp_path / "new").exists()  # neither the directory nor the parents it would have made

    good = photos(tmp_path / "good")
    finished = tmp_path / "finished"
    assert prepare_main(prepare_argv(good, finished)) == 0
    before = snapshot(finished)
    assert prepare_main(prepare_argv(root, finished)) == 2  # a rebuild from the damaged folder: refused
    capsys.readouterr()
    assert snapshot(finished) == before
    PreparedImages.open(finished)  # still whole


@pytest.mark.parametrize("where", ["read-only filesystem", "inside a file"])
def test_an_out_that_cannot_be_written_is_one_line_before_decoding(tmp_path, capsys, monkeypatch, mounted, where):
    root = photos(tmp_path / "photos")
    if where == "read-only filesystem":
        out = mounted("ro,size=1m") / "prepared"
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "prepared"
    decoded = []
    monkeypatch.setattr(prepared_module, "decode_image", lambda path, mode: decoded.append(path))
    assert prepare_main(prepare_argv(root, out)) == 2
    assert f"--out {out}" in one_error_line(capsys)
    assert decoded == [] and not out.exists()


# ----------------------------------------------------------------------------------------- gan-prepare, full disk
def test_a_disk_without_room_for_the_images_is_one_line_and_exit_4(tmp_path, mounted):
    """A real 3 MiB disk: 100 images at 128 px (4.7 MiB) do not fit; before, the memory map died of SIGBUS."""
    root = photos(tmp_path / "photos", n=100)
    disk = mounted("size=3m")
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_data.py"), *prepare_argv(root, disk / "prepared"),
           "--image-size", "128"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "(No space left on device; the images take 4.7 MiB); nothing partial was kept" in proc.stderr
    assert tree(disk) == []


def test_a_rebuild_that_does_not_fit_keeps_the_finished_dataset(tmp_path, capsys, mounted):
    root = photos(tmp_path / "photos", n=100)
    out = mounted("size=3m") / "prepared"
    assert prepare_main(prepare_argv(root, out)) == 0  # 16 px: 75 KiB
    before = snapshot(out)
    capsys.readouterr()
    assert prepare_main(prepare_argv(root, out, "--image-size", "128")) == 4  # 4.7 MiB
    assert f"the prepared dataset already in {out} is intact" in one_error_line(capsys)
    assert snapshot(out) == before
    PreparedImages.open(out)


@pytest.mark.parametrize("fails", ["images.npy.partial", "progress.json.tmp", "labels.npy.partial",
                                   "manifest.json.partial"])  # fmt: skip
def test_a_write_failing_mid_run_leaves_nothing_and_the_previous_dataset_intact(tmp_path, capsys, full_disk, fails):
    """A disk that fills up after the array was allocated: each file the run writes, in turn."""
    root = photos(tmp_path / "photos", n=30)
    out = tmp_path / "prepared"
    assert prepare_main(prepare_argv(root, out, "--image-size", "8")) == 0
    before = snapshot(out)
    capsys.readouterr()
    # the array's header and first rows fit; the first progress record fits
    full_disk(fails, room=1000 if fails == "images.npy.partial" else 100, after=int(fails == "progress.json.tmp"))
    assert prepare_main(prepare_argv(root, out)) == 4  # a rebuild at 16 px
    err = error_line(capsys)
    assert f"could not write {out / fails} (No space left on device" in err
    assert "(No space left on device" in err and "nothing partial was kept" in err and "is intact" in err
    assert snapshot(out) == before


def test_a_write_failure_keeps_an_interrupted_run_which_a_rerun_continues(tmp_path, capsys, monkeypatch, full_disk):
    root = photos(tmp_path / "photos", n=10)

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done == 6:
            raise KeyboardInterrupt

    out = tmp_path / "prepared"
    with pytest.raises(KeyboardInterrupt):
        prepare_images(root, list_image_files(root), out, image_size=16, channels=3, chunk=3,
                       on_chunk=stop_after_two_chunks)  # fmt: skip
    full_disk("labels.npy.partial", room=10)  # the images are all decoded by then: the labels, then, fail
    assert prepare_main(prepare_argv(root, out)) == 4
    assert f"the interrupted preparation in {out} is kept: free space, then rerun" in error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["images.npy.partial", "progress.json"]  # its work, recorded
    monkeypatch.undo()  # space freed: the disk takes writes again
    assert prepare_main(prepare_argv(root, out)) == 0
    assert "resumed at image 10" in capsys.readouterr().out  # nothing decoded twice
    straight = tmp_path / "straight"
    assert prepare_main(prepare_argv(root, straight)) == 0
    assert (out / "images.npy").read_bytes() == (straight / "images.npy").read_bytes()


# ------------------------------------------------------------------------------------ two runs, one --out
def test_a_second_run_while_one_writes_the_same_out_is_one_line(tmp_path, capsys):
    """Real processes: the first blocks on a named pipe among its images, so it is mid-run when the second starts."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    root = photos(tmp_path / "photos", n=6)
    pipe = root / "zzz.png"  # sorted last: the first run holds the directory while it waits for these bytes
    os.mkfifo(pipe)
    out = tmp_path / "prepared"
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_data.py"), *prepare_argv(root, out)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "progress.json").is_file():
            assert first.poll() is None, first.communicate()
        assert prepare_main(prepare_argv(root, out)) == 2
        assert f"--out {out} is being written by another gan-prepare run" in one_error_line(capsys)
        with open(pipe, "wb") as f:
            f.write((root / "000.png").read_bytes())
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, stderr
    assert "prepared, 7 images" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "labels.npy", "manifest.json"]


def test_a_killed_run_does_not_block_the_next(tmp_path, capsys):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    root = photos(tmp_path / "photos", n=6)
    pipe = root / "zzz.png"
    os.mkfifo(pipe)
    out = tmp_path / "prepared"
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_data.py"), *prepare_argv(root, out)]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (out / "progress.json").is_file():
            assert first.poll() is None
    finally:
        first.kill()  # SIGKILL: no cleanup runs; the kernel drops its lock
        first.wait()
    pipe.unlink()
    write_image(pipe, (20, 20), seed=99)
    assert prepare_main(prepare_argv(root, out)) == 0
    assert "restarted (the source or options changed" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "labels.npy", "manifest.json"]


# ------------------------------------------------------------------------------------------ --prepared, damaged
def cut_images(out: Path) -> None:
    truncate(out / "images.npy", (out / "images.npy").stat().st_size - 500)


def cut_manifest(out: Path) -> None:
    text = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(text[: len(text) // 2])


def edit_manifest(out: Path, **fields) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    for key, value in fields.items():
        if key == "image_size":
            manifest["preprocessing"]["image_size"] = value
            manifest["shape"][1:] = [value, value]
        else:
            manifest[key] = value
    (out / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    "images.npy cut short": (cut_images, r"images\.npy has \d+ bytes, its header's shape needs \d+ \(cut short\)"),
    "manifest.json cut mid-JSON": (cut_manifest, r"manifest\.json cannot be read \(not JSON: "),
    "count edited": (lambda out: edit_manifest(out, count=3), "manifest.json says 3 images but lists 40 source"),
    "manifest says 32 px over a 16 px array": (
        lambda out: edit_manifest(out, image_size=32),
        r"images\.npy has shape \(40, 1, 16, 16\), the manifest says \(40, 1, 32, 32\)",
    ),
    "labels.npy cut short": (
        lambda out: truncate(out / "labels.npy", 200),
        r"labels\.npy has 200 bytes, its header's shape needs 448 \(cut short\)",
    ),
    "labels.npy of floats": (
        lambda out: np.save(out / "labels.npy", np.zeros(40, dtype=np.float32)),
        "labels.npy holds float32, not int64",
    ),
    "labels.npy missing": (lambda out: (out / "labels.npy").unlink(), "labels.npy is missing"),
    "images.npy not an array": (lambda out: (out / "images.npy").write_text("x"), "images.npy is not a .npy array"),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A folder of 40 greyscale images and its prepared dataset at 16 px: (folder, prepared directory)."""
    base = tmp_path_factory.mktemp("finished")
    root = base / "photos"
    for i in range(40):
        write_image(root / f"{i:02d}.png", (24, 20), mode="L", seed=i)
    assert prepare_main(prepare_argv(root, base / "prepared", "--channels", "1")) == 0
    return root, base / "prepared"


def train_argv(root: Path, prepared: Path, logs: Path, *extra: str) -> list[str]:
    return ["--dataset", "folder", "--data-dir", str(root), "--prepared", str(prepared), "--model", "mlp",
            "--image-size", "16", "--channels", "1", "--batch-size", "4", "--latent-dim", "8", "--accelerator", "cpu",
            "--num-workers", "0", "--max-steps", "1", "--log-dir", str(logs), *extra]  # fmt: skip


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_prepared_directory_is_one_line_before_the_run_directory(tmp_path, capsys, finished, damage):
    root, good = finished
    damaged = tmp_path / "prepared"
    shutil.copytree(good, damaged)
    harm, message = DAMAGE[damage]
    harm(damaged)
    logs = tmp_path / "logs"
    size = "32" if "32 px" in damage else "16"  # trained at the size the edited manifest claims
    assert train_main([*train_argv(root, damaged, logs), "--image-size", size]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"train.py: error: --prepared {damaged} is damaged: ")
    assert re.search(message, err), err
    assert err.endswith("rerun gan-prepare to rewrite it") and tree(logs) == []

    assert prepare_main([*prepare_argv(root, damaged, "--channels", "1")]) == 0  # ...which rewrites it
    assert "rebuilt (it was damaged: " in capsys.readouterr().out
    assert snapshot(damaged).keys() == snapshot(good).keys()
    assert (damaged / "images.npy").read_bytes() == (good / "images.npy").read_bytes()
    PreparedImages.open(damaged)


def test_a_damaged_prepared_directory_through_the_train_script(tmp_path, finished):
    """The script as a user runs it: before, `ValueError: mmap length is greater than file size`, 94 lines."""
    root, good = finished
    damaged = tmp_path / "prepared"
    shutil.copytree(good, damaged)
    cut_images(damaged)
    logs = tmp_path / "logs"
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *train_argv(root, damaged, logs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1 and "images.npy has" in lines[0], proc.stderr
    assert tree(logs) == []


def test_labels_outside_the_classes_are_one_line(tmp_path, capsys):
    root = tmp_path / "animals"
    for c, name in enumerate(["cats", "dogs", "owls"]):
        for i in range(8):
            write_image(root / name / f"{i}.png", (20, 24), seed=10 * c + i)
    out = tmp_path / "prepared"
    assert prepare_main(prepare_argv(root, out, "--conditional", "--channels", "1")) == 0
    labels = np.load(out / "labels.npy")
    labels[5] = 7
    np.save(out / "labels.npy", labels)
    capsys.readouterr()
    logs = tmp_path / "logs"
    assert train_main([*train_argv(root, out, logs), "--conditional"]) == 2
    assert "labels.npy holds labels 0..7, not class indices 0..2" in one_error_line(capsys) and tree(logs) == []
