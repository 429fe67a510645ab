"""Faults lose nothing and say one line: resuming into another log directory, a disk that fills up under each
output, checks made before the run directory exists, a dying DDP rank, and Lightning's notices kept out.

A full disk is simulated where it happens, in the file objects: `full_disk` makes writes to matching file names
fail with ENOSPC after some bytes, as a real full disk does mid-file. `test_real_full_disk` repeats the checkpoint
case on a real, tiny tmpfs where this machine allows mounting one.
"""

from __future__ import annotations

import builtins
import errno
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
import yaml
from test_run_ux import TINY, Image_save, one_error_line, tree

from gan_lightning.callbacks.ranks import collective_failed, process_fate
from gan_lightning.commands.evaluate_report import write_table
from gan_lightning.commands.sample import main as sample_main
from gan_lightning.commands.train import LightningNotices, main
from gan_lightning.core.errors import WriteError
from gan_lightning.core.files import atomic_write, data_lock, write_text

from conftest import REPO


class FillingFile:
    """A writable file on a disk with `room` bytes left: the write that crosses it lands partly, then fails."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            self.f.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """`full_disk(pattern, room=..., after=k)`: the (k+1)-th and later files opened for writing whose name matches
    `pattern` run out of space after `room` bytes."""
    real_open = builtins.open
    rules: list[dict] = []

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            for rule in rules:
                if fnmatch(Path(file).name, rule["pattern"]):
                    rule["seen"] += 1
                    if rule["seen"] > rule["after"]:
                        return FillingFile(f, rule["room"])
        return f

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)

    def add(pattern: str, room: int = 1000, after: int = 0) -> None:
        rules.append({"pattern": pattern, "room": room, "after": after, "seen": 0})

    return add


def no_partial_files(root: Path) -> bool:
    return not [p for p in tree(root) if p.endswith(".partial")]


# ------------------------------------------------------------------------------ resuming into another log dir
@pytest.mark.parametrize("change", [("--loss", "lsgan"), ("--batch-size", "8"), ("--lr", "2e-4"), ()])
def test_resume_into_another_log_dir_records_where_from_and_what_changed(tmp_path, fake_mnist_dir, change):
    base = ["--data-dir", str(fake_mnist_dir), *TINY]
    source = tmp_path / "a"
    assert main([*base, "--log-dir", str(source), "--max-steps", "2"]) == 0
    ckpt = source / "mlp" / "version_0" / "checkpoints" / "last.ckpt"
    before = {p: (source / p).read_bytes() for p in tree(source) if (source / p).is_file()}
    branch = tmp_path / "b"
    argv = [*base, "--log-dir", str(branch), "--max-steps", "4", "--ckpt-path", str(ckpt), *change]
    if change:
        with pytest.warns(UserWarning, match="resuming at iteration 2 with changed training flags"):
            assert main(argv) == 0
    else:
        assert main(argv) == 0
    run = branch / "mlp" / "version_0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["resumed_from"] == {"checkpoint": str(ckpt.resolve()), "iteration": 2}
    if change:
        flag = change[0][2:].replace("-", "_")
        (entry,) = yaml.safe_load((run / "config_changes.yaml").read_text())
        assert entry["iteration"] == 2 and entry["checkpoint"] == str(ckpt.resolve())
        assert list(entry["changes"]) == [flag] and str(entry["changes"][flag]["new"]) in (change[1], "0.0002")
    else:
        assert not (run / "config_changes.yaml").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4 * 2
    # the source run is untouched
    assert {p: (source / p).read_bytes() for p in tree(source) if (source / p).is_file()} == before


# ------------------------------------------------------------------------------------------- full disk: train
def test_checkpoint_on_a_full_disk_keeps_the_previous_one_and_stops(tmp_path, fake_mnist_dir, full_disk, capfd):
    logs = tmp_path / "logs"
    full_disk("last.ckpt.partial", room=4096, after=1)  # the first save fits, the second does not
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--max-steps", "8", "--checkpoint-every", "2",
            "--sample-every", "100", *TINY]  # fmt: skip
    assert main(argv) == 4
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("train.py")]
    ckpt = logs / "mlp" / "version_0" / "checkpoints" / "last.ckpt"
    assert err == [
        f"train.py: error: could not write the iteration-4 checkpoint {ckpt} (No space left on device); training "
        f"stopped and nothing partial was kept; the previous {ckpt} (iteration 2) is intact: free space, then "
        f"resume with --ckpt-path {ckpt}"
    ]
    assert no_partial_files(logs)
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2 * 2  # intact and loadable
    # training stopped at the failed save: no final sample grid (iteration 8) was written
    assert not (ckpt.parent.parent / "samples").exists()


def test_first_checkpoint_on_a_full_disk(tmp_path, fake_mnist_dir, full_disk, capsys):
    logs = tmp_path / "logs"
    full_disk("last.ckpt.partial", room=0)
    assert main(["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--max-steps", "4", "--checkpoint-every",
                 "2", *TINY]) == 4  # fmt: skip
    assert "this run has no checkpoint yet: free space" in one_error_line(capsys)
    assert list((logs / "mlp" / "version_0" / "checkpoints").iterdir()) == []


def test_sample_grid_on_a_full_disk_stops_with_one_line(tmp_path, fake_mnist_dir, full_disk, capsys):
    logs = tmp_path / "logs"
    full_disk("*.png.partial", room=100, after=1)
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--max-steps", "8", "--checkpoint-every", "2",
            "--sample-every", "2", *TINY]  # fmt: skip
    assert main(argv) == 4
    err = one_error_line(capsys)
    run = logs / "mlp" / "version_0"
    assert f"could not write the sample grid {run}/samples/samples_0000004.png (No space left on device)" in err
    assert "training stopped at iteration 4" in err and f"Last good checkpoint: {run}/checkpoints/last.ckpt" in err
    assert no_partial_files(logs) and [p.name for p in (run / "samples").iterdir()] == ["samples_0000002.png"]


# --------------------------------------------------------------------------- full disk: files the commands write
def test_data_lock_makes_processes_take_turns_and_leaves_nothing(tmp_path, read_only_dir):
    # every task of an srun job prepares the data: the second waits until the first has downloaded and let go
    events, holding = [], threading.Event()
    work = tmp_path / "work"
    work.mkdir()

    def first() -> None:
        with data_lock(work / "data"):  # no data folder yet: the lock lives in its parent
            holding.set()
            time.sleep(0.3)
            events.append("first let go")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait()
    with data_lock(work / "data"):
        events.append("second in")
    thread.join()
    assert events == ["first let go", "second in"] and list(work.iterdir()) == []
    with data_lock(read_only_dir / "mnist"):  # nothing can be downloaded there: no lock, no error
        events.append("read-only")
    assert events[-1] == "read-only"


def test_atomic_write_keeps_the_previous_file_and_leaves_no_partial(tmp_path, full_disk):
    path = tmp_path / "table.json"
    write_text(path, "old\n", "the table")
    full_disk("table.json.partial", room=3)
    with pytest.raises(WriteError, match=r"could not write the table .*table.json \(No space left on device\); the "
                                         r"previous one is intact"):  # fmt: skip
        write_text(path, "a longer new text\n", "the table")
    assert path.read_text() == "old\n" and tree(tmp_path) == ["table.json"]


APPEND_PAST_A_LIMIT = """
import resource, signal, sys
from gan_lightning.core.errors import WriteError
from gan_lightning.core.files import append_text
path = sys.argv[1]
append_text(path, '{"step": 1}\\n', "the metrics log")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() then fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    append_text(path, '{"step": 2, "fid": 3.5}\\n', "the metrics log")
except WriteError as err:
    print(err)
"""


def test_a_failed_append_leaves_only_whole_records(tmp_path):
    # A real partial write: the file may grow to 16 bytes, so the second record's first 4 bytes land before the
    # write fails (a file-size limit, as a full disk, in a process of its own)
    path = tmp_path / "metrics.jsonl"
    done = subprocess.run([sys.executable, "-c", APPEND_PAST_A_LIMIT, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"could not append to the metrics log .*; the earlier records are intact\n", done.stdout)
    assert path.read_text() == '{"step": 1}\n'


def test_evaluation_table_on_a_full_disk(tmp_path, full_disk):
    rows = [{"iteration": 2, "fid": 1.5}]
    write_table(rows, tmp_path)
    full_disk("evaluation.json.partial", room=2)
    with pytest.raises(WriteError, match="could not write the evaluation table"):
        write_table([*rows, {"iteration": 4, "fid": 1.0}], tmp_path)
    assert no_partial_files(tmp_path) and "1.0" not in (tmp_path / "evaluation.json").read_text()


def test_a_write_that_fails_inside_torch_save_names_the_disk(tmp_path, full_disk):
    full_disk("x.pt.partial", room=700)  # inside the archive: torch would otherwise say "unexpected pos"
    with pytest.raises(WriteError, match=r"\(No space left on device\)"):
        atomic_write(tmp_path / "x.pt", lambda p: __import__("gan_lightning.core.files").core.files.save_torch(
            torch.zeros(10_000), p), "the tensor")  # fmt: skip
    assert tree(tmp_path) == []


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, fake_mnist_dir) -> Path:
    logs = tmp_path_factory.mktemp("faults") / "logs"
    assert main(["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--max-steps", "1", *TINY]) == 0
    return logs / "mlp" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("where", ["inside a file", "in a read-only directory"])
def test_sample_out_that_cannot_be_created_is_one_line_before_any_work(tmp_path, ckpt, capsys, where, request):
    if where == "inside a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "grids" / "g.png"
    else:
        out = request.getfixturevalue("read_only_dir") / "grids" / "g.png"
    assert sample_main(["--ckpt", str(ckpt), "--out", str(out)]) == 2
    assert "--out" in one_error_line(capsys) and not out.parent.exists()


@pytest.mark.parametrize("out,pattern,expected", [
    ("grid.png", "grid.png.partial", "could not write the sample grid"),
    ("samples.pt", "samples.pt.partial", "could not write the samples"),
    ("pngs", "00003.png.partial", "could not write the image .*00003.png .*; 3 of 8 images were written before it"),
])  # fmt: skip
def test_sample_outputs_on_a_full_disk(tmp_path, ckpt, full_disk, capsys, out, pattern, expected):
    full_disk(pattern, room=50)
    assert sample_main(["--ckpt", str(ckpt), "--out", str(tmp_path / out), "-n", "8"]) == 4
    err = one_error_line(capsys)
    assert __import__("re").search(expected, err) and "No space left on device" in err, err
    assert no_partial_files(tmp_path)


# ------------------------------------------------------------------------ checks before the run directory exists
def test_batch_larger_than_the_training_set_writes_nothing(tmp_path, fake_mnist_dir, capsys):
    logs = tmp_path / "logs"
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), *TINY, "--batch-size", "1000"]
    assert main(argv) == 2
    assert "fewer than one batch of 1000" in one_error_line(capsys) and tree(logs) == []


@pytest.mark.parametrize("flags", [["--ada-target", "0.6", "--ada-kimg", "inf"], ["--lecam", "inf"]])
def test_an_infinite_option_value_writes_nothing(tmp_path, fake_mnist_dir, capsys, flags):
    logs = tmp_path / "logs"
    assert main(["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), *TINY, *flags]) == 2
    assert f"{flags[-2]} must be a finite number, got inf" in one_error_line(capsys) and tree(logs) == []


@pytest.mark.parametrize("flag", ["--fid-weights", "--extractor-weights", "--classifier"])
def test_a_weights_file_that_does_not_exist_is_refused_without_evaluation(tmp_path, fake_mnist_dir, capsys, flag):
    logs, missing = tmp_path / "logs", tmp_path / "nowhere.pth"
    assert main(["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), *TINY, flag, str(missing)]) == 2
    hint = "train one with: python scripts/train_classifier.py" if flag == "--classifier" else "pass the weights file"
    assert f"{flag} {missing}: no such file; {hint}" in one_error_line(capsys)
    assert tree(logs) == []


def test_batchnorm_micro_batches_of_one_image_write_nothing(tmp_path, fake_mnist_dir, capsys):
    logs = tmp_path / "logs"
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), *TINY, "--model", "dcgan_mnist",
            "--batch-size", "8", "--accumulate", "8"]  # fmt: skip
    assert main(argv) == 2
    message = one_error_line(capsys)
    assert "micro-batches of 1, but G uses BatchNorm" in message
    assert "--accumulate 4 or less (a divisor of 8)" in message
    assert tree(logs) == []
    # no BatchNorm: micro-batches of one image each are fine
    assert main([*argv, "--model", "mlp", "--max-steps", "1", "--sample-every", "1"]) == 0


def test_folder_smaller_than_one_batch_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(20):
        Image_save(folder / f"{i}.png")
    logs = tmp_path / "logs"
    argv = ["--dataset", "folder", "--data-dir", str(folder), "--channels", "1", "--image-size", "28",
            "--log-dir", str(logs), *TINY, "--batch-size", "32"]  # fmt: skip
    assert main(argv) == 2
    assert "fewer than one batch of 32" in one_error_line(capsys) and tree(logs) == []


def test_each_process_needs_a_whole_batch(fake_mnist_dir):
    from gan_lightning.core.errors import DataError
    from gan_lightning.data import MNISTDataModule

    dm = MNISTDataModule(fake_mnist_dir, batch_size=300, download=False)
    dm.check_batches(1)
    with pytest.raises(DataError, match=r"\(\d+ per process of 2\), fewer than one batch of 300"):
        dm.check_batches(2)


# ---------------------------------------------------------------------------------------------- a dying rank
def process_state_after(action: str) -> str | None:
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(30)" if action != "exit 3" else
                              "import sys; sys.exit(3)"])  # fmt: skip
    if action == "kill":
        child.send_signal(signal.SIGKILL)
    if action != "running":
        while process_fate(child.pid) is None:
            pass
    fate = process_fate(child.pid)
    child.kill()
    child.wait()  # still the parent's to reap: process_fate did not
    return fate


def test_process_fate_reads_a_child_without_reaping_it():
    assert process_state_after("running") is None
    assert process_state_after("kill") == "was killed by SIGKILL"
    assert process_state_after("exit 3") == "exited with status 3"


def test_collective_failures_are_recognised():
    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:55978: Connection reset by peer.")
    assert collective_failed(gloo) and not collective_failed(RuntimeError("shape mismatch"))


def _ddp_fault(tmp_path: Path, fake_mnist_dir: Path, kill: str) -> tuple[subprocess.CompletedProcess, Path]:
    logs = tmp_path / "logs"
    cmd = [sys.executable, str(REPO / "tests" / "fault_probe.py"), "--data-dir", str(fake_mnist_dir), "--no-download",
           "--log-dir", str(logs), "--max-steps", "8", "--checkpoint-every", "2", "--devices", "2", *TINY]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "FAULT_KILL": kill})
    return proc, logs / "mlp" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("kill", ["1:3", pytest.param("0:3", marks=pytest.mark.slow)])
def test_a_killed_rank_stops_the_run_with_one_line_naming_it(tmp_path, fake_mnist_dir, kill):
    proc, ckpt = _ddp_fault(tmp_path, fake_mnist_dir, kill)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("train.py")]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    dead = kill.split(":")[0]
    if dead == "1":
        assert proc.returncode == 5
        assert "rank 1 of 2 (pid " in lines[0]
        assert "was killed by SIGKILL (out of memory, or killed by hand)" in lines[0]
    else:  # rank 0 is the launcher: the shell sees its SIGKILL, rank 1 says what happened
        assert proc.returncode == -signal.SIGKILL
        assert "rank 0 of 2 (pid " in lines[0] and "has exited" in lines[0]
    assert f"Last good checkpoint: {ckpt} (iteration 2); resume with: python " in lines[0]
    assert lines[0].endswith(f"--ckpt-path {ckpt}")
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2 * 2
    assert no_partial_files(ckpt.parent)


@pytest.mark.slow
def test_the_fault_probe_without_a_fault_ends_as_train_py_does(tmp_path, fake_mnist_dir):
    proc, ckpt = _ddp_fault(tmp_path, fake_mnist_dir, kill="")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(ckpt, weights_only=True)["global_step"] == 8 * 2


# ----------------------------------------------------------------------------------------- Lightning's notices
def test_lightning_notices_are_not_shown(tmp_path, fake_mnist_dir):
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "--data-dir", str(fake_mnist_dir), "--log-dir",
           str(tmp_path), "--max-steps", "1", *TINY]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    err = proc.stderr
    assert proc.returncode == 0 and "Total params" in err  # Lightning's own output is still there: the model summary
    for notice in ("litlogger", "GPU available", "TPU available", "`Trainer.fit` stopped", "weights_only"):
        assert notice not in err, notice


def test_lightning_warnings_pass_the_notice_filter():
    def record(level, text):
        return logging.LogRecord("lightning.pytorch", level, __file__, 1, text, None, None)

    notices = LightningNotices()
    assert not notices.filter(record(logging.INFO, "💡 Tip: For seamless cloud logging, try litlogger"))
    assert notices.filter(record(logging.INFO, "Restored all states from the checkpoint at x.ckpt"))
    assert notices.filter(record(logging.WARNING, "GPU available but not used."))


# --------------------------------------------------------------------------------- a real disk, where possible
@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_real_full_disk(tiny_tmpfs, fake_mnist_dir, capsys):
    """mlp checkpoints are about 26 MB: the first fits into 40 MB, the second does not."""
    logs = tiny_tmpfs / "logs"
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--max-steps", "8", "--checkpoint-every", "2",
            *TINY, "--latent-dim", "96"]  # fmt: skip
    assert main(argv) == 4
    assert "(No space left on device)" in one_error_line(capsys)
    ckpt = logs / "mlp" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2 * 2 and no_partial_files(logs)


def test_the_classifier_on_a_full_disk_is_one_line_exit_4_and_no_partial_file(tmp_path, fake_mnist_dir, full_disk,
                                                                             capsys):  # fmt: skip
    from gan_lightning.commands.train_classifier import main as train_classifier_main

    out = tmp_path / "out"
    out.mkdir()
    full_disk("c.pt.partial*", room=700)  # inside torch.save's archive
    argv = ["--data-dir", str(fake_mnist_dir), "--out", str(out / "c.pt"), "--epochs", "1", "--batch-size", "256"]
    assert train_classifier_main(argv) == 4
    err = capsys.readouterr().err  # the training progress, then the one error line
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("train_classifier.py: error: ")
    assert "could not write the classifier" in err and "(No space left on device)" in err
    assert tree(out) == []


def test_the_reference_cache_on_a_full_disk_is_one_line_exit_4(tmp_path, ckpt, fake_mnist_dir, fake_classifier,
                                                                 full_disk, monkeypatch, capsys):  # fmt: skip
    from gan_lightning.commands.evaluate import main as evaluate_main

    cache = tmp_path / "cache"
    monkeypatch.setenv("GAN_CACHE_DIR", str(cache))
    full_disk("reference-*.partial*", room=700)
    argv = ["--ckpt", str(ckpt), "--classifier", str(fake_classifier["path"]), "--data-dir", str(fake_mnist_dir),
            "-n", "64", "--num-reference", "64"]  # fmt: skip
    assert evaluate_main(argv) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err and "could not write the reference statistics cache" in err
    assert "(No space left on device)" in err and not [p for p in tree(cache) if "partial" in p]


def test_a_missing_feature_weights_file_is_refused_before_a_classifier_is_trained(tmp_path, ckpt, fake_mnist_dir,
                                                                                  monkeypatch, capsys):  # fmt: skip
    from gan_lightning.commands.evaluate import main as evaluate_main

    cache, missing = tmp_path / "cache", tmp_path / "nope.pth"
    monkeypatch.setenv("GAN_CACHE_DIR", str(cache))  # no cached classifier: evaluate would train one first
    argv = ["--ckpt", str(ckpt), "--fid-weights", str(missing), "--data-dir", str(fake_mnist_dir), "-n", "64"]
    assert evaluate_main(argv) == 2
    assert f"no FID Inception weights at {missing}" in one_error_line(capsys)
    assert tree(tmp_path) == []  # no classifier trained into the cache


def test_run_dirs_with_a_damaged_checkpoint_are_refused_before_any_run_is_scored(tmp_path, fake_mnist_dir,
                                                                                 fake_classifier, capsys):  # fmt: skip
    from gan_lightning.commands.evaluate import main as evaluate_main

    logs = tmp_path / "logs"
    for name in ("a", "b"):
        argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--name", name, "--max-steps", "1", *TINY]
        assert main(argv) == 0
    damaged = logs / "b" / "version_0" / "checkpoints" / "last.ckpt"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    before = tree(logs)
    argv = [str(logs / "a" / "version_0"), str(logs / "b" / "version_0"), "--classifier", str(fake_classifier["path"]),
            "--data-dir", str(fake_mnist_dir), "-n", "64"]  # fmt: skip
    assert evaluate_main(argv) == 2
    assert f"{damaged} is not a readable checkpoint" in one_error_line(capsys)
    assert tree(logs) == before  # run a's tables were not written


@pytest.mark.parametrize("flags,words", [
    (["--device", "cuda:99"], "--device cuda:99: this machine has"),
    (["--device", "foo"], "--device foo is not a device"),
    (["--device", "meta"], "--device meta: sampling runs on cpu, cuda, cuda:N or mps"),
    (["--out", "{tmp}/adir.png"], "--out {tmp}/adir.png is a directory"),
    (["--save-latents", "{tmp}/adir.png"], "--save-latents {tmp}/adir.png is a directory"),
    (["--interpolate", "--labels", "1"], "--labels chooses the classes of drawn images; --interpolate"),
])  # fmt: skip
def test_sample_refuses_before_reading_or_writing(tmp_path, ckpt, capsys, flags, words):
    (tmp_path / "adir.png").mkdir()
    argv = ["--ckpt", str(ckpt), "--out", str(tmp_path / "g.png"), *(f.format(tmp=tmp_path) for f in flags)]
    assert sample_main(argv) == 2
    assert words.format(tmp=tmp_path) in one_error_line(capsys)
    assert tree(tmp_path) == ["adir.png"]


def test_sample_into_a_folder_refuses_to_leave_an_earlier_samples_images_beside_its_own(tmp_path, ckpt, capsys):
    out = tmp_path / "pngs"
    assert sample_main(["--ckpt", str(ckpt), "--out", str(out), "-n", "5"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sample_main(["--ckpt", str(ckpt), "--out", str(out), "-n", "3", "--seed", "5"]) == 2
    assert "holds 2 image(s) from an earlier sample (00003.png on)" in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sample_main(["--ckpt", str(ckpt), "--out", str(out), "-n", "5", "--seed", "5"]) == 0  # replaces all
    assert sorted(p.name for p in out.iterdir()) == sorted(before) and any(
        (out / name).read_bytes() != data for name, data in before.items())  # fmt: skip


@pytest.mark.parametrize("mode", ["--ckpt", "RUN_DIR"])
def test_evaluate_refuses_a_plot_path_that_is_a_folder_before_scoring(tmp_path, ckpt, fake_mnist_dir, fake_classifier,
                                                                      mode, capsys):  # fmt: skip
    from gan_lightning.commands.evaluate import main as evaluate_main

    plot = tmp_path / "dir.png"
    plot.mkdir()
    where = ["--ckpt", str(ckpt), "--truncation", "0.5", "1"] if mode == "--ckpt" else [str(ckpt.parent.parent)]
    before = tree(ckpt.parent.parent)
    argv = [*where, "--plot", str(plot), "--classifier", str(fake_classifier["path"]), "--data-dir",
            str(fake_mnist_dir), "-n", "64"]  # fmt: skip
    assert evaluate_main(argv) == 2
    assert f"--plot {plot} is a directory" in one_error_line(capsys)
    assert tree(ckpt.parent.parent) == before  # no evaluation table written into the run


def test_export_mnist_on_a_full_disk_keeps_no_half_folder(tmp_path, fake_mnist_dir, full_disk, capsys):
    from gan_lightning.commands.export_mnist import main as export_main

    (tmp_path / "png").mkdir()  # an empty --out is allowed, and stays as it was
    full_disk("*.png", room=10, after=5)  # the sixth digit runs out of space
    argv = ["--data-dir", str(fake_mnist_dir), "--out", str(tmp_path / "png"), "--num", "20"]
    assert export_main(argv) == 4
    line = one_error_line(capsys)
    expected = f"could not write the digits under {tmp_path / 'png'} (No space left on device); nothing was kept"
    assert f"{expected}: free space or pass another --out" in line
    assert tree(tmp_path) == ["png"]


def test_export_mnist_into_the_current_empty_folder(tmp_path, fake_mnist_dir, monkeypatch):
    from gan_lightning.commands.export_mnist import main as export_main

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert export_main(["--data-dir", str(fake_mnist_dir), "--out", ".", "--num", "5"]) == 0
    assert len(list(here.rglob("*.png"))) == 5 and tree(tmp_path) == ["here", *(f"here/{p}" for p in tree(here))]


def test_stale_images_counts_every_numbered_png_past_the_new_sample(tmp_path):
    from gan_lightning.commands.sample import stale_images

    for name in ("00001.png", "00003.png", "100000.png", "notes.png", "00004.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in stale_images(tmp_path, 3)] == ["00003.png", "100000.png"]
    assert stale_images(tmp_path / "missing", 3) == []
