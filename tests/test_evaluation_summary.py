"""Results across runs: `evaluate.py RUN_DIR RUN_DIR ...` reports every metric's mean and standard deviation over
the runs, at each iteration they all scored."""

from __future__ import annotations

import json
import statistics

import pytest

from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.commands.evaluate_runs import summarize_runs
from gan_lightning.commands.evaluate_summary import summarize
from gan_lightning.commands.train import main as train_main

from conftest import make_fake_mnist

PROTOCOL = {"num_generated": 10, "reference": "mnist/val"}


def row(iteration: int, fid: float, modes: int, **extra) -> dict:
    return {"iteration": iteration, "checkpoint": "x.ckpt", "fid": fid, "modes": modes, "code_classes": [1, 2],
            "protocol": PROTOCOL, **extra}  # fmt: skip


def test_mean_and_std_over_runs_at_the_iterations_all_of_them_scored():
    tables = {"a": [row(1000, 20.0, 10), row(2000, 10.0, 10), row(3000, 8.0, 10)],
              "b": [row(1000, 24.0, 9), row(2000, 14.0, 10)],
              "c": [row(1000, 22.0, 8), row(2000, 15.0, 10)]}  # fmt: skip
    first, second = summarize(tables)  # 3000: only run a has it
    assert (first["iteration"], first["runs"], second["iteration"]) == (1000, 3, 2000)
    assert first["fid"] == pytest.approx(22.0) and first["fid_sd"] == pytest.approx(2.0)  # sample std, n - 1
    assert first["modes"] == pytest.approx(9.0) and first["modes_sd"] == pytest.approx(1.0)
    assert second["fid"] == pytest.approx(13.0) and second["fid_sd"] == pytest.approx(statistics.stdev([10, 14, 15]))
    assert "code_classes" not in first and "checkpoint" not in first  # lists and names do not average
    assert first["protocol"] == PROTOCOL


def test_runs_scored_differently_or_alone_give_no_summary():
    assert summarize({"a": [row(1000, 20.0, 10)]}) == []
    other = {**PROTOCOL, "num_generated": 50}
    assert summarize({"a": [row(1000, 20.0, 10)], "b": [row(1000, 20.0, 10, protocol=other)]}) == []
    assert summarize({"a": [row(1000, 20.0, 10)], "b": [row(2000, 20.0, 10)]}) == []


def test_a_diverged_run_does_not_hide_the_others():
    nan = float("nan")
    [summary] = summarize({"a": [row(1000, nan, 3)], "b": [row(1000, 20.0, 9)], "c": [row(1000, 24.0, 9)]})
    assert summary["fid"] == pytest.approx(22.0) and summary["fid_n"] == 2  # averaged over the finite ones
    assert summary["modes"] == pytest.approx(7.0) and "modes_n" not in summary
    [lone] = summarize({"a": [row(1000, nan, 3)], "b": [row(1000, 20.0, 9)]})
    assert lone["fid"] == 20.0 and lone["fid_n"] == 1 and lone["fid_sd"] != lone["fid_sd"]  # NaN: one value


def test_runs_of_different_recipes_are_averaged_only_when_asked(tmp_path, capsys):
    tables = {str(tmp_path / "a" / "version_0"): [row(1000, 20.0, 10)],
              str(tmp_path / "b" / "version_0"): [row(1000, 24.0, 9)]}  # fmt: skip
    summarize_runs(tables, None, same_recipe=False)
    assert "differ in more than their seed" in capsys.readouterr().out and not list(tmp_path.iterdir())
    summarize_runs(tables, tmp_path / "out", same_recipe=False)
    assert (tmp_path / "out" / "evaluation_summary.json").is_file()


def test_psi_rows_are_summarized_apart():
    tables = {run: [row(1000, fid, 10, truncation=0.5), row(1000, fid + 5, 10, truncation=1.0)]
              for run, fid in (("a", 10.0), ("b", 12.0))}  # fmt: skip
    rows = summarize(tables)
    assert [(r["truncation"], r["fid"]) for r in rows] == [(0.5, 11.0), (1.0, 16.0)]


def test_evaluate_writes_the_summary_of_three_seeds(tmp_path, fake_mnist_dir, fake_classifier, capsys):
    logs = tmp_path / "logs"
    for seed in range(3):
        argv = ["--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "32", "--latent-dim", "8",
                "--accelerator", "cpu", "--log-dir", str(logs), "--name", "seeds", "--max-steps", "2",
                "--sample-every", "1000", "--seed", str(seed)]  # fmt: skip
        assert train_main(argv) == 0
    runs = sorted((logs / "seeds").glob("version_*"))
    capsys.readouterr()
    code = evaluate_main([*map(str, runs), "--classifier", str(fake_classifier["path"]), "--data-dir",
                          str(fake_mnist_dir), "-n", "40"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert f"wrote {logs / 'seeds' / 'evaluation_summary'}.csv, .json and .png" in out
    [summary] = json.loads((logs / "seeds" / "evaluation_summary.json").read_text())
    fids = [json.loads((run / "evaluation.json").read_text())[-1]["fid"] for run in runs]
    assert len(set(fids)) == 3  # three different runs
    assert summary["runs"] == 3 and summary["iteration"] == 2
    assert summary["fid"] == pytest.approx(statistics.fmean(fids))
    assert summary["fid_sd"] == pytest.approx(statistics.stdev(fids))
    assert (logs / "seeds" / "evaluation_summary.png").stat().st_size > 0
    assert "fid_sd" in (logs / "seeds" / "evaluation_summary.csv").read_text().splitlines()[0]
    assert summary["kid_std"] == pytest.approx(
        statistics.fmean(  # KID's own spread, averaged: not overwritten
            json.loads((run / "evaluation.json").read_text())[-1]["kid_std"] for run in runs
        )
    )
    assert evaluate_main([str(runs[0]), "--summary", str(tmp_path / "one")]) == 2  # nothing to average
    assert "--summary averages several RUN_DIRs" in capsys.readouterr().err


def test_summary_with_one_checkpoint_is_refused(tmp_path, capsys):
    assert evaluate_main(["--ckpt", str(tmp_path / "x.ckpt"), "--summary", str(tmp_path)]) == 2
    assert "--summary summarizes several RUN_DIRs" in capsys.readouterr().err


def test_runs_on_different_data_are_each_scored_against_their_own(tmp_path, fake_mnist_dir, fake_classifier, capsys):
    # two runs of one dataset and size on different folders: scored together, each keeps its own reference images
    other = make_fake_mnist(tmp_path / "other", seed=1)
    runs = []
    for name, data in (("a", fake_mnist_dir), ("b", other)):
        argv = ["--data-dir", str(data), "--no-download", "--batch-size", "32", "--latent-dim", "8", "--accelerator",
                "cpu", "--log-dir", str(tmp_path / "logs"), "--name", name, "--max-steps", "1", "--sample-every",
                "1000"]  # fmt: skip
        assert train_main(argv) == 0
        runs.append(tmp_path / "logs" / name / "version_0")
    score = ["--classifier", str(fake_classifier["path"]), "-n", "40"]

    def last(run):
        return json.loads((run / "evaluation.json").read_text())[-1]

    assert evaluate_main([str(runs[1]), *score]) == 0
    alone = last(runs[1])
    assert evaluate_main([*map(str, runs), *score, "--summary", str(tmp_path / "summary")]) == 0
    together = last(runs[1])
    assert together["fid"] == alone["fid"] and together["precision"] == alone["precision"]


def test_a_run_dir_is_scored_with_the_classifier_the_run_recorded(tmp_path, fake_mnist_dir, fake_classifier,
                                                                  monkeypatch, capsys):  # fmt: skip
    logs, cache = tmp_path / "logs", tmp_path / "cache"
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--name", "run", "--max-steps", "2",
            "--batch-size", "16", "--eval-every", "2", "--eval-samples", "64", "--classifier",
            str(fake_classifier["path"])]  # fmt: skip
    assert train_main(argv) == 0
    monkeypatch.setenv("GAN_CACHE_DIR", str(cache))  # no cached classifier: one would be trained if it were asked for
    run = logs / "run" / "version_0"
    assert evaluate_main([str(run), "--data-dir", str(fake_mnist_dir), "-n", "64"]) == 0
    assert (run / "evaluation.json").is_file() and not list(cache.glob("mnist_classifier-*"))  # none trained


def test_runs_that_recorded_different_classifiers_are_each_scored_with_their_own(tmp_path, fake_mnist_dir,
                                                                                 fake_classifier, capsys):  # fmt: skip
    from gan_lightning.metrics import file_sha256
    from gan_lightning.metrics.classifier import train_classifier

    other = train_classifier(fake_mnist_dir, tmp_path / "other.pt", epochs=1, batch_size=32, seed=1)["path"]
    runs = {}
    for name, classifier in (("a", fake_classifier["path"]), ("b", other)):
        argv = ["--data-dir", str(fake_mnist_dir), "--no-download", "--batch-size", "16", "--latent-dim", "8",
                "--log-dir", str(tmp_path / "logs"), "--name", name, "--max-steps", "1", "--sample-every", "1000",
                "--classifier", str(classifier)]  # fmt: skip
        assert train_main(argv) == 0
        runs[tmp_path / "logs" / name / "version_0"] = file_sha256(classifier)
    assert len(set(runs.values())) == 2
    assert evaluate_main([*map(str, runs), "--data-dir", str(fake_mnist_dir), "-n", "40", "--summary",
                          str(tmp_path / "summary")]) == 0  # fmt: skip
    for run, sha in runs.items():
        assert json.loads((run / "evaluation.json").read_text())[-1]["protocol"]["extractor_sha256"] == sha
