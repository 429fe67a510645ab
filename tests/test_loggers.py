"""`--logger`: every tracker receives the run's scalars, a sample grid, a text and its config, read back through the
tracker's own reader (TensorBoard's EventAccumulator, the csv module, `wandb leet inspect`, MlflowClient); a resume
continues the same tracker run; a tracker whose package is missing is one line, exit status 2."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import Logger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from weights_files import mnist_classifier_file

from gan_lightning.commands.train import main
from gan_lightning.loggers import LOGGERS, RunLocation, flat_config

HAS_WANDB = importlib.util.find_spec("wandb") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
needs_wandb = pytest.mark.skipif(not HAS_WANDB, reason='W&B not installed: pip install -e ".[wandb]"')
needs_mlflow = pytest.mark.skipif(not HAS_MLFLOW, reason='MLflow not installed: pip install -e ".[mlflow]"')


def train(tmp_path: Path, data: Path, loggers: str, *extra: str) -> int:
    argv = ["--data-dir", str(data), "--log-dir", str(tmp_path / "logs"), "--name", "run", "--batch-size", "16",
            "--max-steps", "4", "--log-every", "1", "--sample-every", "2", "--num-workers", "0", "--logger", loggers,
            "--preset", "cs231n_gan", *extra]  # fmt: skip
    return main(argv)


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.parametrize("name", LOGGERS.names())
def test_every_tracker_declares_its_logger(name, tmp_path):
    kind = LOGGERS.get(name)
    assert issubclass(kind.logger_class, Logger)
    assert kind.requires is None or kind.extra, f"{name} needs a package but names no extra to install it"
    if kind.requires and importlib.util.find_spec(kind.requires) is None:
        pytest.skip(f"{kind.requires} not installed")
    logger = kind().build(RunLocation(tmp_path, "r", 0), {"model": "mlp"})
    assert isinstance(logger, kind.logger_class)


def test_flat_config_names_each_flag_by_its_section():
    assert flat_config({"model": "mlp", "resumes": {"n": 1, "at": {"it": 4}}, "p": [1, 2]}) == {
        "model": "mlp", "resumes/n": 1, "resumes/at/it": 4, "p": "[1, 2]"}  # fmt: skip


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def wandb_records(log: Path) -> list[dict]:
    """A W&B run's records, read from its transaction log by W&B's own reader."""
    out = subprocess.run([shutil.which("wandb") or "wandb", "leet", "inspect", "--json", str(log)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def wandb_history(records: list[dict]) -> dict[str, list]:
    """Each history key's values in order."""
    values: dict[str, list] = {}
    for record in records:
        for key, value in record.get("history", {}).get("item", {}).items():
            values.setdefault(key, []).append(value)
    return values


def test_one_run_reaches_every_installed_tracker_and_each_reads_it_back(tmp_path, fake_mnist_dir, offline_wandb):
    # W&B and MLflow are optional extras (not in `dev`): their checks below run where they are installed
    names = ["tensorboard", "csv"] + ["wandb"] * HAS_WANDB + ["mlflow"] * HAS_MLFLOW
    classifier = tmp_path / "clf.pt"  # random weights: the scores' values do not matter here, their delivery does
    mnist_classifier_file(classifier)
    evaluation = ["--eval-every", "4", "--eval-samples", "64", "--classifier", str(classifier)]
    assert train(tmp_path, fake_mnist_dir, ",".join(names), *evaluation) == 0
    run_dir = tmp_path / "logs" / "run" / "version_0"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/d_loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Images("samples")] == [2, 4]
    fid = [e.value for e in events.Scalars("val/fid")]
    assert len(fid) == 1 and "val/protocol/text_summary" in events.Tags()["tensors"]

    rows = read_csv_rows(run_dir / "csv" / "version_0" / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["train/d_loss"]] == [1, 2, 3, 4]
    assert sorted(p.name for p in (run_dir / "csv" / "version_0" / "images").iterdir()) == [
        "samples_0000002.png", "samples_0000004.png"]  # fmt: skip
    tb_losses = [e.value for e in events.Scalars("train/d_loss")]
    assert [float(r["train/d_loss"]) for r in rows if r["train/d_loss"]] == pytest.approx(tb_losses)
    assert [float(r["val/fid"]) for r in rows if r.get("val/fid")] == pytest.approx(fid)
    texts = read_csv_rows(run_dir / "csv" / "version_0" / "texts.csv")
    assert [(t["step"], t["tag"]) for t in texts] == [("4", "val/protocol")] and "extractor" in texts[0]["text"]

    if HAS_WANDB:
        (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
        records = wandb_records(log)
        history = wandb_history(records)
        assert history["train/d_loss"] == pytest.approx(tb_losses)
        assert history["trainer/global_step"][:4] == [1, 2, 2, 3]  # the grid of iteration 2 follows its scalars
        assert [len(f) for f in history["samples.filenames"]] == [1, 1]  # the grids of iterations 2 and 4
        assert history["val/fid"] == pytest.approx(fid)
        assert history["val/protocol._type"] == ["table-file"]
        config = [r["config"]["update"] for r in records if r.get("type") == "config"]
        assert any(update.get("model") == "mlp" for update in config)

    if HAS_MLFLOW:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
        run_id = (run_dir / "mlflow_run_id").read_text().strip()
        assert [m.value for m in client.get_metric_history(run_id, "train/d_loss")] == pytest.approx(tb_losses)
        assert [a.path for a in client.list_artifacts(run_id, "images")] == [
            "images/samples_0000002.png", "images/samples_0000004.png"]  # fmt: skip
        assert [m.value for m in client.get_metric_history(run_id, "val/fid")] == pytest.approx(fid)
        assert [a.path for a in client.list_artifacts(run_id, "text")] == ["text/val_protocol_0000004.md"]
        assert client.get_run(run_id).data.params["model"] == "mlp"


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (the [mlflow] extra)")
def test_mlflow_logs_the_modules_hyperparameters_lightning_passes(tmp_path):
    from lightning.pytorch.utilities.parsing import AttributeDict
    from mlflow.tracking import MlflowClient

    from gan_lightning.loggers.mlflow import GANMLFlowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = GANMLFlowLogger(experiment_name="x", tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"))
    logger.log_hyperparams(AttributeDict(latent_dim=8, loss="bce"))  # what save_hyperparameters hands a logger
    logger.log_hyperparams({"latent_dim": 16, "seed": 0})  # a held parameter is not logged again (MLflow refuses)
    params = MlflowClient(uri).get_run(logger.run_id).data.params
    assert params == {"latent_dim": "8", "loss": "bce", "seed": "0"}


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (the [mlflow] extra)")
def test_a_second_mlflow_run_in_one_process_uses_its_own_store(tmp_path, fake_mnist_dir, monkeypatch):
    # Lightning's MLflow logger sets MLFLOW_TRACKING_URI for the process; taken for the user's, it would send the
    # next run (a notebook, the Python API) to the first one's database
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert train(tmp_path / "a", fake_mnist_dir, "mlflow", "--max-steps", "1") == 0
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert train(tmp_path / "b", fake_mnist_dir, "mlflow", "--max-steps", "1") == 0
    assert (tmp_path / "b" / "logs" / "mlflow.db").is_file() and (tmp_path / "b" / "logs" / "mlartifacts").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'users.db'}")
    monkeypatch.chdir(tmp_path)  # the user's store keeps MLflow's own artifact default: ./mlruns
    assert train(tmp_path / "c", fake_mnist_dir, "mlflow", "--max-steps", "1") == 0
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'users.db'}"
    assert (tmp_path / "users.db").is_file() and not (tmp_path / "c" / "logs" / "mlflow.db").exists()


BUILD_AT = """
import sys, time
from pathlib import Path
from gan_lightning.loggers import LOGGERS, RunLocation
while time.time() < float(sys.argv[2]):  # every process builds at the same moment, as DDP ranks and array jobs do
    time.sleep(0.001)
LOGGERS.get("mlflow")().build(RunLocation(Path(sys.argv[1]), "race", int(sys.argv[3])), {})
"""


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (the [mlflow] extra)")
@pytest.mark.parametrize("store", ["log_dir", "tracking_uri"])
def test_processes_starting_together_share_a_fresh_mlflow_store(tmp_path, store):
    # each MLflow client creates or migrates the local SQLite store: two at once failed with "duplicate column
    # name" or an alembic CommandError (and the surviving DDP rank waited forever); jobs of different --log-dir
    # share one through MLFLOW_TRACKING_URI
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    database = tmp_path / "logs" / "mlflow.db"
    if store == "tracking_uri":
        database = tmp_path / "shared.db"
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{database}"
    start = time.time() + 8  # after every interpreter has imported mlflow
    log_dirs = [tmp_path / "logs" if store == "log_dir" else tmp_path / f"logs{i}" for i in range(3)]
    for log_dir in log_dirs:
        log_dir.mkdir(exist_ok=True)  # as check_writable_dir leaves them
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_AT, str(log_dir), str(start), str(i)], env=env,
                              stderr=subprocess.PIPE, text=True) for i, log_dir in enumerate(log_dirs)]  # fmt: skip
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], errors
    assert database.is_file() and not list(database.parent.glob(".*.lock"))


def test_a_tracker_that_cannot_start_is_one_line_exit_2(tmp_path, fake_mnist_dir, monkeypatch, capsys):
    def refuse(self, logger, run, config):
        raise RuntimeError("No API key configured.\nUse `wandb login` to log in.")  # as W&B without a login

    monkeypatch.setattr(LOGGERS.get("csv"), "started", refuse)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    started_first = "mlflow," if HAS_MLFLOW else "tensorboard,"
    assert train(tmp_path, fake_mnist_dir, started_first + "csv") == 2
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if "error:" in line]  # (MLflow logs its database's creation itself)
    assert len(ours) == 1 and "CSVLogger could not start (RuntimeError: No API key configured.)" in ours[0]
    assert "Traceback" not in err and "MLFLOW_TRACKING_URI" not in os.environ  # the tracker that started finished
    # the new run's directory goes (config.yaml, the trackers' files): a rerun after the fix starts cleanly
    assert not (tmp_path / "logs" / "run").exists()
    if HAS_MLFLOW:  # the MLflow run that did start is marked failed, not left running
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
        [run] = client.search_runs([client.get_experiment_by_name("run").experiment_id])
        assert run.info.status == "FAILED"


def test_a_full_disk_while_a_tracker_starts_keeps_its_own_message_and_status(tmp_path, fake_mnist_dir, monkeypatch,
                                                                             capsys):  # fmt: skip
    from gan_lightning.core.errors import WriteError

    def full(self, logger, run, config):
        raise WriteError("could not write the W&B run id (No space left on device)")

    monkeypatch.setattr(LOGGERS.get("csv"), "started", full)
    assert train(tmp_path, fake_mnist_dir, "csv") == 4
    err = capsys.readouterr().err
    assert "No space left on device" in err and "login" not in err


def test_a_resume_from_an_earlier_checkpoint_shows_each_iteration_once_in_tensorboard(tmp_path, fake_mnist_dir):
    # a run killed without a final checkpoint has logged past its last one: resumed from there, TensorBoard drops
    # the dead process's later events instead of charting those iterations twice
    assert train(tmp_path, fake_mnist_dir, "tensorboard", "--checkpoint-every", "2", "--keep-checkpoints") == 0
    run_dir = tmp_path / "logs" / "run" / "version_0"
    earlier = run_dir / "checkpoints" / "iter_0000002.ckpt"
    assert train(tmp_path, fake_mnist_dir, "tensorboard", "--ckpt-path", str(earlier), "--max-steps", "5") == 0
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/d_loss")] == [1, 2, 3, 4, 5]
    assert [e.step for e in events.Images("samples")] == [2, 4, 5]  # every 2nd iteration and the last
    # the loader of `tensorboard --load_fast=false` purges only at a run's second start marker
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator as PluginAccumulator

    served = PluginAccumulator(str(run_dir), size_guidance={"tensors": 0})
    served.Reload()
    assert [e.step for e in served.Tensors("train/d_loss")] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_a_resume_continues_each_trackers_run(tmp_path, fake_mnist_dir, offline_wandb):
    names = ["csv"] + ["wandb"] * HAS_WANDB + ["mlflow"] * HAS_MLFLOW
    assert train(tmp_path, fake_mnist_dir, ",".join(names)) == 0
    run_dir = tmp_path / "logs" / "run" / "version_0"
    first_id = (run_dir / "mlflow_run_id").read_text() if HAS_MLFLOW else None
    # a changed training flag on resume: MLflow refuses to change a logged parameter, so only new ones are logged
    assert train(tmp_path, fake_mnist_dir, ",".join(names), "--ckpt-path", "last", "--max-steps", "6",
                 "--lr", "0.0002") == 0  # fmt: skip
    assert not (tmp_path / "logs" / "run" / "version_1").exists()
    first = read_csv_rows(run_dir / "csv" / "version_0" / "metrics.csv")
    second = read_csv_rows(run_dir / "csv" / "version_1" / "metrics.csv")
    assert [int(r["step"]) for r in first if r["train/d_loss"]] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in second if r["train/d_loss"]] == [5, 6]
    if HAS_WANDB:
        assert len(list(run_dir.glob("wandb/offline-run-*"))) == 2
        ids = {next(r["run"]["run_id"] for r in wandb_records(log) if r.get("type") == "run")
               for log in run_dir.glob("wandb/offline-run-*/run-*.wandb")}  # fmt: skip
        assert len(ids) == 1, f"a resume started another W&B run: {ids}"
    if HAS_MLFLOW:
        from mlflow.tracking import MlflowClient

        assert (run_dir / "mlflow_run_id").read_text() == first_id
        client = MlflowClient(f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
        steps = [m.step for m in client.get_metric_history(first_id.strip(), "train/d_loss")]
        assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("flag, expected", [
    ("nothing", "--logger: unknown logger 'nothing'; choose from"),
    ("csv,csv", "--logger names a logger twice: csv,csv"),
])  # fmt: skip
def test_bad_logger_is_one_line_exit_2(flag, expected, tmp_path, fake_mnist_dir, capsys):
    assert train(tmp_path, fake_mnist_dir, flag) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "logs").exists()


def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path, fake_mnist_dir):
    # the package hidden from this process (sys.modules[name] = None is how Python marks a module unimportable)
    code = ("import sys; sys.modules['wandb'] = None; from gan_lightning.commands.train import main; "
            f"sys.exit(main(['--data-dir', {str(fake_mnist_dir)!r}, '--log-dir', {str(tmp_path / 'logs')!r}, "
            "'--max-steps', '1', '--logger', 'tensorboard,wandb']))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1
    assert "--logger wandb needs the wandb package, which is not installed" in lines[0]
    assert 'pip install -e ".[wandb]"' in lines[0]
    assert not (tmp_path / "logs").exists()


def test_tensorboard_only_run_keeps_its_layout(tmp_path, fake_mnist_dir):
    assert train(tmp_path, fake_mnist_dir, "tensorboard") == 0
    run_dir = tmp_path / "logs" / "run" / "version_0"
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("events.")) == [
        "checkpoints", "config.yaml", "hparams.yaml", "samples"]  # fmt: skip
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] > 0


def test_a_run_the_trainer_refuses_leaves_no_tracker_store(tmp_path, fake_mnist_dir, offline_wandb, capsys):
    # a tracker's client may create its store as it is built (MLflow's SQLite database): only after every check
    if torch.backends.mps.is_available():
        pytest.skip("needs a machine without Apple's MPS, so that --accelerator mps is refused")
    names = ["tensorboard", "csv"] + ["wandb"] * HAS_WANDB + ["mlflow"] * HAS_MLFLOW
    assert train(tmp_path, fake_mnist_dir, ",".join(names), "--accelerator", "mps") == 2
    assert "cannot set up training on this machine" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_a_run_stopped_between_logged_iterations_logs_each_iteration_once(tmp_path, fake_mnist_dir):
    # Lightning writes the step metrics it holds when a run stops: after an iteration it did not log, those were the
    # last logged iteration's, written again at every signal stop with --log-every > 1
    from lightning.pytorch import Callback

    from gan_lightning.commands.base import run_command
    from gan_lightning.commands.train import build_parser, resolve, run

    class SignalDuring(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.iteration == 9:  # the 10th iteration; --log-every 7 logs the 7th and 14th
                os.kill(os.getpid(), signal.SIGUSR1)

    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(tmp_path / "logs"), "--name", "run", "--batch-size",
            "16", "--latent-dim", "8", "--max-steps", "20", "--log-every", "7",
            "--logger", "tensorboard,csv"]  # fmt: skip
    assert run_command(build_parser(), lambda cfg: run(resolve(cfg), callbacks=[SignalDuring()]), argv) == 130
    run_dir = tmp_path / "logs" / "run" / "version_0"
    rows = read_csv_rows(run_dir / "csv" / "version_0" / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["train/d_loss"]] == [7, 10]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("train/d_loss")] == [7, 10]
