"""Run UX: every bad input one line (exit 2, nothing written), resume with changed flags, config.yaml replay,
TensorBoard's layout, the run-wide progress lines, and the installed commands."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_lightning.callbacks import CUSTOM_SCALARS, RunProgress
from gan_lightning.commands.train import TrainParser, build_parser, main, resolve
from gan_lightning.commands.train.runconfig import run_config, write_config
from gan_lightning.data.loading import resume_position

from conftest import cpu_trainer, make_fake_mnist, run_all

TINY = ["--batch-size", "16", "--latent-dim", "8", "--accelerator", "cpu", "--log-every", "1"]


def tree(root: Path) -> list[str]:
    """Every path under root (empty when root does not exist): what a failed command must leave unchanged."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_mnist_dir) -> Path:
    """A finished 4-iteration run: LOG_DIR/mlp/version_0."""
    logs = tmp_path_factory.mktemp("ux") / "logs"
    assert main(["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--max-steps", "4", *TINY]) == 0
    return logs / "mlp" / "version_0"


def status_of(argv: list[str]) -> int:
    """The train command's exit status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------------------------- bad inputs
def _damaged_mnist(tmp: Path) -> Path:
    root = make_fake_mnist(tmp / "damaged")
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    return root


def _mismatched_mnist(tmp: Path) -> Path:
    root = make_fake_mnist(tmp / "mismatched")
    other = make_fake_mnist(tmp / "other", n_train=300)
    shutil.copy(other / "MNIST" / "raw" / "train-labels-idx1-ubyte", root / "MNIST" / "raw")
    return root


def _folder_with_a_non_image(tmp: Path) -> Path:
    folder = tmp / "folder"
    folder.mkdir()
    for i in range(40):
        Image_save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"this is not a png")
    return folder


def Image_save(path: Path) -> None:
    from PIL import Image

    Image.fromarray((torch.rand(28, 28) * 255).byte().numpy()).save(path)


def _text_file(tmp: Path) -> Path:
    (tmp / "notes.ckpt").write_text("not a checkpoint")
    return tmp / "notes.ckpt"


def _truncated_checkpoint(tmp: Path, trained: Path) -> Path:
    data = (trained / "checkpoints" / "last.ckpt").read_bytes()
    (tmp / "cut.ckpt").write_bytes(data[: len(data) // 2])
    return tmp / "cut.ckpt"


def _a_file(tmp: Path) -> Path:
    (tmp / "plain_file").write_text("x")
    return tmp / "plain_file"


def _bad_yaml(tmp: Path) -> Path:
    (tmp / "bad.yaml").write_text("args: [unclosed")
    return tmp / "bad.yaml"


def _unknown_flag_yaml(tmp: Path) -> Path:
    (tmp / "unknown.yaml").write_text("args: {model: mlp, warp_drive: 9}")
    return tmp / "unknown.yaml"


# flags of a part the run leaves off, each of which would change nothing
OFF_PART_FLAGS = {
    "--lecam-decay 0.5": "--lecam-decay 0.5 applies only with --lecam, which this run does not switch on; add it or "
    "drop --lecam-decay",
    "--gp-weight 5": "--gp-weight 5.0 applies only with a gradient-penalty loss (--loss wgan-gp)",
    "--n-cat 5": "--n-cat 5 applies only with --infogan",
    "--ema-bn-stats copy": "--ema-bn-stats copy applies only with --ema-decay",
}
CASES = {
    # name: (argv builder (tmp, fake_mnist, trained run) -> argv, message fragment)
    "truncated MNIST file": (lambda t, m, r: ["--data-dir", str(_damaged_mnist(t))], "is damaged: 5000 bytes"),
    "MNIST files from two releases": (lambda t, m, r: ["--data-dir", str(_mismatched_mnist(t))], "different releases"),
    "MNIST data dir is a file": (lambda t, m, r: ["--data-dir", str(_a_file(t)), "--no-download"], "MNIST not found"),
    "folder with a non-image": (
        lambda t, m, r: [
            "--dataset",
            "folder",
            "--data-dir",
            str(_folder_with_a_non_image(t)),
            "--channels",
            "1",
            "--image-size",
            "28",
        ],
        "cannot read image",
    ),  # fmt: skip
    "empty folder": (lambda t, m, r: ["--dataset", "folder", "--data-dir", str(t)], "no images to train on"),
    "checkpoint missing": (lambda t, m, r: ["--data-dir", str(m), "--ckpt-path", str(t / "no.ckpt")], "no such"),
    "checkpoint is a directory": (lambda t, m, r: ["--data-dir", str(m), "--ckpt-path", str(t)], "is a directory"),
    "checkpoint is a text file": (
        lambda t, m, r: ["--data-dir", str(m), "--ckpt-path", str(_text_file(t))],
        "not a plain weights file",
    ),
    "checkpoint truncated": (
        lambda t, m, r: ["--data-dir", str(m), "--ckpt-path", str(_truncated_checkpoint(t, r))],
        "is not a readable checkpoint (truncated, or not written by torch.save)",
    ),  # fmt: skip
    "checkpoint of another architecture": (
        lambda t, m, r: [
            "--data-dir",
            str(m),
            "--ckpt-path",
            str(r / "checkpoints" / "last.ckpt"),
            "--model",
            "dcgan_mnist",
        ],
        "--model mlp -> dcgan_mnist",
    ),  # fmt: skip
    "log dir is a file": (lambda t, m, r: ["--data-dir", str(m), "--log-dir", str(_a_file(t))], "is a file"),
    "log dir inside a file": (
        lambda t, m, r: ["--data-dir", str(m), "--log-dir", str(_a_file(t) / "sub")],
        "which is a file",
    ),
    "classifier is not a classifier": (
        lambda t, m, r: ["--data-dir", str(m), "--eval-every", "2", "--classifier", str(_text_file(t))],
        "train one with: python scripts/train_classifier.py",
    ),  # fmt: skip
    **{
        f"{flags}, its part off": (lambda t, m, r, f=flags: ["--data-dir", str(m), *f.split()], message)
        for flags, message in OFF_PART_FLAGS.items()
    },  # fmt: skip
    "seed out of range": (lambda t, m, r: ["--data-dir", str(m), "--seed", "-1"], "--seed -1 is out of range"),
    "config missing": (lambda t, m, r: ["--config", str(t / "none.yaml")], "no such file"),
    "config not YAML": (lambda t, m, r: ["--config", str(_bad_yaml(t))], "not readable YAML"),
    "config from another version": (lambda t, m, r: ["--config", str(_unknown_flag_yaml(t))], "unknown flags"),
    "conditional without labels": (
        lambda t, m, r: ["--dataset", "folder", "--data-dir", str(t), "--conditional"],
        "--conditional needs",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, fake_mnist_dir, trained, capsys):
    build, message = CASES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    argv = build(inputs, fake_mnist_dir, trained)
    if "--log-dir" not in argv:
        argv += ["--log-dir", str(tmp_path / "logs")]
    before, run_before = tree(tmp_path), tree(trained)
    assert status_of([*argv, *TINY, "--max-steps", "2"]) == 2
    assert message in one_error_line(capsys)
    assert tree(tmp_path) == before and tree(trained) == run_before  # no run directory, no file touched


def test_an_srun_launch_lightning_refuses_is_one_line_before_any_file(tmp_path, fake_mnist_dir, monkeypatch, capsys):
    # srun --ntasks=2 without --ntasks-per-node: Lightning's Slurm environment raises, which must not be a traceback
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    logs = tmp_path / "logs"
    assert status_of(["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), *TINY, "--max-steps", "2"]) == 2
    line = one_error_line(capsys)
    assert "Slurm" in line and "--ntasks-per-node" in line and not logs.exists()


def test_unwritable_log_dir(read_only_dir, fake_mnist_dir, capsys):
    locked = read_only_dir
    assert main(["--data-dir", str(fake_mnist_dir), "--log-dir", str(locked / "logs"), *TINY]) == 2
    assert "is not writable" in one_error_line(capsys) and tree(locked) == []


def test_unreadable_image_mid_run_stops_with_one_line_and_a_good_checkpoint(tmp_path, capsys):
    from lightning.pytorch import Callback

    from gan_lightning.commands.base import run_command
    from gan_lightning.commands.train import run

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(64):
        Image_save(folder / f"{i:02d}.png")

    class CutFilesAfterIteration2(Callback):
        """Storage failing mid-run: every PNG loses its pixels after its header (the pre-run check passed)."""

        def on_train_batch_end(self, trainer, pl_module, *args):
            if pl_module.iteration == 2:
                for path in folder.iterdir():
                    path.write_bytes(path.read_bytes()[:60])

    logs = tmp_path / "logs"
    argv = ["--dataset", "folder", "--data-dir", str(folder), "--channels", "1", "--image-size", "28",
            "--log-dir", str(logs), "--max-steps", "50", "--checkpoint-every", "1", "--num-workers", "0",
            *TINY]  # fmt: skip
    train = lambda cfg: run(resolve(cfg), callbacks=[CutFilesAfterIteration2()])  # noqa: E731
    assert run_command(build_parser(), train, argv) == 2
    err = one_error_line(capsys)
    ckpt = logs / "mlp" / "version_0" / "checkpoints" / "last.ckpt"
    assert "cannot read image" in err and "image file is truncated" in err
    assert "stopped at iteration 2" in err and f"last good checkpoint: {ckpt}" in err
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2 * 2  # intact, from the last good iteration


# ------------------------------------------------------------------------------------------------- resume
def test_resume_with_changed_training_flags_warns_records_and_applies(tmp_path, fake_mnist_dir):
    logs = tmp_path / "logs"
    base = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), *TINY]
    assert main([*base, "--max-steps", "2"]) == 0
    with pytest.warns(UserWarning, match=r"--batch-size 16 -> 8, --lr 0.001 -> 0.0002.*data order continues"):
        assert main([*base, "--max-steps", "4", "--ckpt-path", "last", "--lr", "2e-4", "--batch-size", "8"]) == 0
    run = logs / "mlp" / "version_0"
    changes = yaml.safe_load((run / "config_changes.yaml").read_text())
    ckpt_path = str((run / "checkpoints" / "last.ckpt").resolve())
    expected = {"lr": {"old": 0.001, "new": 0.0002}, "batch_size": {"old": 16, "new": 8}}
    assert changes == [{"iteration": 2, "checkpoint": ckpt_path, "changes": expected}]
    config = yaml.safe_load((run / "config.yaml").read_text())["args"]
    assert config["lr"] == 2e-4 and config["batch_size"] == 8
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert {g["lr"] for s in ckpt["optimizer_states"] for g in s["param_groups"]} == {2e-4}  # took effect
    assert ckpt["global_step"] == 4 * 2


def test_resume_refuses_network_changes_listing_all(tmp_path, fake_mnist_dir, trained, capsys):
    ckpt = trained / "checkpoints" / "last.ckpt"
    argv = ["--data-dir", str(fake_mnist_dir), "--ckpt-path", str(ckpt), "--log-dir", str(tmp_path), *TINY]
    assert main([*argv, "--latent-dim", "16", "--conditional", "--loss", "wgan-gp"]) == 2
    err = one_error_line(capsys)
    assert "--latent-dim 8 -> 16" in err and "--conditional False -> True" in err
    assert "D steps per iteration 1 -> 5" in err  # wgan-gp's default k would change the step accounting


def test_resume_position_after_a_batch_size_change():
    assert resume_position({"epoch": 2, "batches": 3}, 16, 10) == (2, 3)  # older checkpoints: same size
    assert resume_position({"epoch": 2, "batches": 3, "batch_size": 16}, 16, 10) == (2, 3)
    # 48 images seen: with batches of 32 the epoch continues at batch 2 (images 64..), none repeated
    assert resume_position({"epoch": 2, "batches": 3, "batch_size": 16}, 32, 5) == (2, 2)
    assert resume_position({"epoch": 2, "batches": 3, "batch_size": 16}, 8, 20) == (2, 6)
    assert resume_position({"epoch": 2, "batches": 9, "batch_size": 16}, 32, 5) == (3, 0)  # epoch done


# ------------------------------------------------------------------------------------------------- config
def test_config_yaml_round_trip_resolves_to_the_same_configuration(tmp_path):
    argv = ["--preset", "modern_mnist", "--diffaug", "color,cutout", "--max-steps", "123", "--seed", "7"]
    first = resolve(build_parser().parse_args(argv))
    path = write_config(tmp_path, run_config(first))
    doc = yaml.safe_load(path.read_text())
    assert set(doc) == {"args", "environment", "cwd", "written"}
    assert doc["environment"]["torch"] == str(torch.__version__)
    assert doc["cwd"] == os.getcwd()  # what the relative paths among the flags are relative to
    replayed = resolve(build_parser().parse_args(["--config", str(path)]))
    assert run_config(replayed) == run_config(first)
    overridden = resolve(build_parser().parse_args(["--config", str(tmp_path), "--lr", "0.01"]))
    assert overridden.lr == 0.01 and overridden.r1 == first.r1 == 1.0  # explicit flags win, the rest replays
    assert isinstance(build_parser(), TrainParser)


def test_every_run_writes_its_config(trained):
    doc = yaml.safe_load((trained / "config.yaml").read_text())
    assert doc["args"]["max_steps"] == 4 and doc["args"]["model"] == "mlp" and "ckpt_path" not in doc["args"]
    assert {"torch", "lightning", "git_commit", "gan_lightning"} <= set(doc["environment"])


# -------------------------------------------------------------------------------------- TensorBoard, progress
def test_event_file_holds_the_custom_scalars_layout_and_no_epoch_chart(trained):
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    ea = EventAccumulator(str(trained), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    assert "epoch" not in ea.Tags()["scalars"] and "train/d_loss" in ea.Tags()["scalars"]
    layout = layout_pb2.Layout()
    layout.ParseFromString(ea.Tensors(metadata.CONFIG_SUMMARY_TAG)[0].tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["D and G losses"] == [r"train/d_loss$", r"train/g_loss$"]
    assert charts["D(x) and D(G(z))"] == [r"train/p_real$", r"train/p_fake$"]
    assert [cat.title for cat in layout.category] == list(CUSTOM_SCALARS)
    # the trained run has no regularizer, schedule or adaptive augmentation: no chart that would stay empty
    assert "regularizers and component statistics" not in charts


def test_the_component_statistics_chart_is_there_when_a_component_logs(tmp_path):
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata
    from torch.utils.data import DataLoader, TensorDataset

    from gan_lightning import GAN
    from gan_lightning.callbacks import GANLogger

    gan = GAN("mlp", latent_dim=8, image_size=8, loss="rpgan", r1=1.0)
    logger = GANLogger(str(tmp_path), name="r1", default_hp_metric=False)
    trainer = cpu_trainer(tmp_path, logger=logger, log_every_n_steps=1, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(32, 1, 8, 8) * 2 - 1), batch_size=16))
    ea = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    ea.Reload()
    layout = layout_pb2.Layout()
    layout.ParseFromString(ea.Tensors(metadata.CONFIG_SUMMARY_TAG)[0].tensor_proto.string_val[0])
    charts = {c.title for cat in layout.category for c in cat.chart}
    assert "regularizers and component statistics" in charts and "train/r1" in ea.Tags()["scalars"]


def test_a_score_logged_before_the_first_training_scalars_leaves_the_layout_whole(tmp_path):
    # an evaluation can log first (--eval-every 10 --log-every 20): the layout waits for the training scalars
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    from gan_lightning.callbacks import GANLogger

    logger = GANLogger(str(tmp_path), name="early", default_hp_metric=False)
    logger.log_metrics({"val/fid": 30.0}, step=10)
    logger.log_metrics({"train/d_loss": 1.0, "train/g_loss": 1.0, "train/r1": 0.1}, step=20)
    logger.finalize("success")
    ea = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    ea.Reload()
    [event] = ea.Tensors(metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout()
    layout.ParseFromString(event.tensor_proto.string_val[0])
    assert "regularizers and component statistics" in {c.title for cat in layout.category for c in cat.chart}


def test_progress_lines_come_about_every_5_percent_whatever_the_logging_interval(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from gan_lightning import GAN

    out = io.StringIO()
    gan = GAN("mlp", latent_dim=8, image_size=8)
    trainer = cpu_trainer(tmp_path, callbacks=[RunProgress(stream=out)], enable_progress_bar=True,
                          log_every_n_steps=50, max_steps=gan.optimizer_steps(60))  # fmt: skip
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(64, 1, 8, 8) * 2 - 1), batch_size=16))
    lines = out.getvalue().splitlines()
    assert [int(line.split()[1].split("/")[0]) for line in lines] == list(range(3, 61, 3))  # 20 lines of 60


def test_classifier_training_progress_is_plain_lines_off_a_terminal(capsys):
    from gan_lightning.metrics.classifier import PlainProgress

    bar = PlainProgress(40, "training the MNIST classifier")
    for _ in range(40):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and len(err.splitlines()) == 20
    assert err.splitlines()[0].startswith("training the MNIST classifier: 2/40 steps (5%), ")


def test_progress_lines_count_iterations_over_the_whole_run(tmp_path, fake_mnist_dir):
    from gan_lightning import GAN
    from gan_lightning.data import MNISTDataModule

    out = io.StringIO()
    progress = RunProgress(line_every=3, stream=out)
    gan = GAN("mlp", latent_dim=8, d_steps=2)
    dm = MNISTDataModule(fake_mnist_dir, batch_size=32, download=False)
    trainer = cpu_trainer(tmp_path, callbacks=[progress], enable_progress_bar=True, log_every_n_steps=1,
                          max_steps=gan.optimizer_steps(7))  # fmt: skip
    trainer.fit(gan, datamodule=dm)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split(",")[0] for line in lines] == [
        "iteration 3/7 (43%)",
        "iteration 6/7 (86%)",
        "iteration 7/7 (100%)",
    ]
    assert "it/s" in lines[0] and "ETA" in lines[0] and "d_loss" in lines[0] and "g_loss" in lines[0]


# ------------------------------------------------------------------------------------------------ commands
def test_installed_commands_exist_and_answer_help(capsys):
    # pip writes each command from its entry point: every one is installed beside this Python, names a main() that
    # answers --help, and one runs as the installed file, the way a user types it
    from importlib.metadata import entry_points

    commands = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.value.startswith("gan_lightning.")}
    assert set(commands) == {"gan-train", "gan-sample", "gan-evaluate", "gan-train-classifier", "gan-prepare"}
    beside = Path(sys.executable).parent
    found = {c: str(beside / c) if (beside / c).exists() else shutil.which(c) for c in commands}
    missing = [c for c, path in found.items() if not path]
    assert not missing, f"{missing} not installed: run the README's `pip install -e .`"
    for name, entry in commands.items():
        with pytest.raises(SystemExit) as stopped:
            entry.load()(["--help"])
        assert stopped.value.code == 0 and "usage:" in capsys.readouterr().out, name
    [proc] = run_all([[found["gan-sample"], "--help"]], timeout=300)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize(("signalled_in", "status"), [(2, 130), (3, 0)])
def test_a_stop_signal_in_the_last_iteration_ends_a_complete_run_with_status_0(tmp_path, fake_mnist_dir,
                                                                               signalled_in, status):  # fmt: skip
    # Ctrl-C, SIGTERM or Slurm's SIGUSR1 during iteration 2 of 3 stops early (130: resume it); during the last
    # iteration the run is complete, and a job script must not see it fail
    from lightning.pytorch import Callback

    from gan_lightning.commands.base import run_command
    from gan_lightning.commands.train import run

    class SignalDuring(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.iteration == signalled_in - 1:
                os.kill(os.getpid(), signal.SIGTERM)

    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(tmp_path / "logs"), "--max-steps", "3", *TINY]

    def train(cfg) -> None:
        run(resolve(cfg), callbacks=[SignalDuring()])

    assert run_command(build_parser(), train, argv) == status
    ckpt = torch.load(tmp_path / "logs" / "mlp" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 * signalled_in
