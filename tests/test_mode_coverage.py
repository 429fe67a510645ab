"""Evaluation with no setup: Stacked MNIST mode counts, the classifier cache, run-level evaluation and plots."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.core.errors import DataError
from gan_lightning.data import DATASETS
from gan_lightning.data.base import to_signed
from gan_lightning.metrics import (
    SampleQualityMetrics,
    StackedMNISTFeatures,
    build_extractor,
    load_extractor,
    stacked_mode_statistics,
)
from gan_lightning.metrics import classifier as classifier_module
from gan_lightning.metrics.classifier import cached_classifier, mnist_fingerprint

from conftest import make_fake_mnist


def one_hot_probs(digits: torch.Tensor) -> torch.Tensor:
    """Per-channel probabilities (N, 3, 10) that put all mass on the given digits (N, 3)."""
    return torch.nn.functional.one_hot(digits, 10).float()


# ------------------------------------------------------------------------------------------- mode statistics
def test_stacked_mode_statistics_exact_values():
    every_code = torch.stack(torch.meshgrid(*[torch.arange(10)] * 3, indexing="ij"), -1).reshape(-1, 3)
    stats = stacked_mode_statistics(one_hot_probs(every_code))
    assert stats == {"modes": 1000, "mode_kl": pytest.approx(0.0, abs=1e-12)}
    one_code = one_hot_probs(torch.tensor([[3, 1, 4]]).repeat(50, 1))
    assert stacked_mode_statistics(one_code) == {"modes": 1, "mode_kl": pytest.approx(math.log(1000))}
    # Two codes, 3:1: KL = 0.75 log(0.75 * 1000) + 0.25 log(0.25 * 1000).
    two = one_hot_probs(torch.tensor([[0, 0, 1]] * 3 + [[9, 9, 9]]))
    expected = 0.75 * math.log(750) + 0.25 * math.log(250)
    assert stacked_mode_statistics(two) == {"modes": 2, "mode_kl": pytest.approx(expected)}
    # The channel order matters: (1, 0, 0) and (0, 0, 1) are different modes.
    assert stacked_mode_statistics(one_hot_probs(torch.tensor([[1, 0, 0], [0, 0, 1]])))["modes"] == 2


@pytest.fixture(scope="module")
def stacked_fake(fake_mnist_dir):
    """The Stacked MNIST built from the fake bars (each channel's digit is readable from its bar's row)."""
    dm = DATASETS.get("stacked_mnist")(str(fake_mnist_dir), batch_size=8, download=False)
    dm.setup("fit")
    return dm


def test_stacked_features_read_each_channel(fake_classifier, stacked_fake):
    extractor = load_extractor("stacked_mnist_classifier", fake_classifier["path"])
    assert isinstance(extractor, StackedMNISTFeatures) and extractor.num_features == 3 * 128
    images, codes = stacked_fake.val_set.images[:64], stacked_fake.val_set.labels[:64]
    features, probs = extractor.extract(to_signed(images))
    assert features.shape == (64, 384) and probs.shape == (64, 3, 10)
    assert torch.equal(features, extractor(to_signed(images)))
    digits = probs.argmax(2)
    assert torch.equal(digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2], codes)
    # Channel 1's features are the classifier's features of channel 1 alone.
    alone = fake_classifier["model"].features(to_signed(images[:, 1:2]))
    torch.testing.assert_close(features[:, 128:256], alone)


def test_real_stacked_data_covers_the_modes_and_one_digit_covers_one(fake_classifier, stacked_fake):
    metrics = SampleQualityMetrics(load_extractor("stacked_mnist_classifier", fake_classifier["path"]))
    train = stacked_fake.train_set
    # Both sets from the training split: the fake MNIST's 50 validation digits need not hold every class.
    metrics.update(to_signed(train.images[:2000]), real=True)
    metrics.update(to_signed(train.images[2000:7000]), real=False)
    real = metrics.compute()
    # 5000 draws of 1000 equally likely codes miss 1000 * (1 - 1/1000)^5000 ~ 6.7 of them on average.
    assert real["modes"] >= 985 and real["mode_kl"] < 0.15
    metrics.reset()
    same = train.images[train.labels == train.labels[0]][:1].repeat(300, 1, 1, 1)
    metrics.update(to_signed(same), real=False)
    collapsed = metrics.compute()
    assert collapsed["modes"] == 1 and collapsed["mode_kl"] == pytest.approx(math.log(1000))
    # One image: it may sit inside the real manifold (precision), but covers almost none of it.
    assert collapsed["recall"] < 0.01 and collapsed["coverage"] < 0.01
    # Held-out real images: most of the manifold both ways (k-NN estimates stay below 1 at these sizes).
    assert real["recall"] > 0.75 and real["coverage"] > 0.75 and real["precision"] > 0.7
    assert 0.7 < real["density"] < 1.3


def test_build_extractor_by_dataset(fake_classifier):
    path = fake_classifier["path"]
    assert isinstance(build_extractor(3, classifier=path, dataset="stacked_mnist"), StackedMNISTFeatures)
    from gan_lightning.core.errors import ConfigError

    with pytest.raises(ConfigError, match="MNIST-like"):
        build_extractor(3, classifier=path, dataset="celeba")


# ----------------------------------------------------------------------------------------------------- cache
def test_classifier_is_trained_once_then_read_from_the_cache(tmp_path, fake_mnist_dir, monkeypatch):
    calls = []
    real_train = classifier_module.train_classifier

    def counting_train(*args, **kwargs):
        calls.append(args)
        return real_train(*args, **{**kwargs, "epochs": 1})

    monkeypatch.setattr(classifier_module, "train_classifier", counting_train)
    first = cached_classifier(fake_mnist_dir, cache_dir=tmp_path / "cache", progress=False)
    assert len(calls) == 1 and first.is_file() and first.parent == tmp_path / "cache"
    assert mnist_fingerprint(fake_mnist_dir) in first.name
    second = cached_classifier(fake_mnist_dir, cache_dir=tmp_path / "cache", progress=False)
    assert second == first and len(calls) == 1  # a hit: no retraining
    other = make_fake_mnist(tmp_path / "other", seed=1)  # different data, different entry
    assert cached_classifier(other, cache_dir=tmp_path / "cache", progress=False) != first and len(calls) == 2
    assert not list((tmp_path / "cache").glob("*.partial*"))  # written atomically


def test_cache_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="MNIST not found"):
        cached_classifier(tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    (tmp_path / "file").write_text("x")
    make_fake_mnist(tmp_path / "data")
    with pytest.raises(DataError, match="is a file, not a directory"):
        cached_classifier(tmp_path / "data", cache_dir=tmp_path / "file")


# ------------------------------------------------------------------------------------- train and evaluate
def _train(tmp_path, data_dir, *extra: str) -> int:
    from gan_lightning.commands.train import main

    argv = ["--data-dir", str(data_dir), "--max-steps", "4", "--batch-size", "16", "--latent-dim", "8",
            "--accelerator", "cpu", "--log-dir", str(tmp_path / "logs"), "--log-every", "1", *extra]  # fmt: skip
    return main(argv)


@pytest.mark.parametrize("dataset", ["mnist", "stacked_mnist"])
def test_eval_every_without_classifier_logs_every_metric(tmp_path, fake_mnist_dir, dataset):
    args = ["--dataset", dataset, "--name", "ev", "--eval-every", "2", "--eval-samples", "64", "--model", "dcgan_mnist"]
    assert _train(tmp_path, fake_mnist_dir, *args) == 0
    ea = EventAccumulator(str(tmp_path / "logs" / "ev" / "version_0"), size_guidance={"scalars": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    wanted = {"val/fid", "val/kid", "val/modes", "val/precision", "val/recall", "val/density", "val/coverage"}
    wanted |= {"val/mode_kl"} if dataset == "stacked_mnist" else {"val/class_kl"}
    assert wanted <= tags
    assert [e.step for e in ea.Scalars("val/coverage")] == [2, 4]
    cache = list((tmp_path.parent / "gan_cache").glob("mnist_classifier-*.pt"))
    assert [p.name for p in cache] == [f"mnist_classifier-{mnist_fingerprint(fake_mnist_dir)}.pt"]


def test_evaluate_run_dirs_writes_table_and_plot(tmp_path, fake_mnist_dir, fake_classifier, capsys):
    common = ["--checkpoint-every", "2", "--keep-checkpoints"]
    assert _train(tmp_path, fake_mnist_dir, "--name", "a", *common) == 0
    assert _train(tmp_path, fake_mnist_dir, "--name", "b", "--seed", "1", *common) == 0
    runs = [tmp_path / "logs" / name / "version_0" for name in ("a", "b")]
    assert sorted(p.name for p in (runs[0] / "checkpoints").iterdir()) == [
        "iter_0000002.ckpt", "iter_0000004.ckpt", "last.ckpt"
    ]  # fmt: skip
    argv = [str(r) for r in runs] + ["-n", "64", "--classifier", str(fake_classifier["path"])]
    assert evaluate_main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    scored = [line for line in lines if "summary" not in line]
    assert len(scored) == 4  # two checkpoints per run; last.ckpt is the iteration-4 one again
    # and the two runs' mean and spread at each iteration both scored, beside them
    assert [(line["summary"], line["iteration"]) for line in lines if "summary" in line] == [("2 runs", 2),
                                                                                            ("2 runs", 4)]  # fmt: skip
    assert (tmp_path / "logs" / "evaluation_summary.csv").is_file()
    for run in runs:
        rows = list(csv.DictReader(open(run / "evaluation.csv")))
        assert [int(r["iteration"]) for r in rows] == [2, 4]
        assert {"fid", "precision", "recall", "density", "coverage", "modes"} <= set(rows[0])
        table = json.loads((run / "evaluation.json").read_text())
        assert [r["checkpoint"] for r in table] == ["iter_0000002.ckpt", "iter_0000004.ckpt"]
        assert (run / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_bad_run_dir_is_one_line(tmp_path, capsys):
    assert evaluate_main([str(tmp_path / "missing")]) == 2
    assert evaluate_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a run directory" in err[0] and "no checkpoints" in err[1]
    assert not list(tmp_path.iterdir())


def test_folder_of_exported_digits_is_scored_against_mnist(tmp_path, fake_mnist_dir, fake_classifier, capsys):
    from gan_lightning.commands.export_mnist import main as export_main

    assert export_main(["--data-dir", str(fake_mnist_dir), "--out", str(tmp_path / "png"), "--num", "120"]) == 0
    pngs = sorted((tmp_path / "png").rglob("*.png"))
    assert len(pngs) == 120 and {p.parent.name for p in pngs} <= {str(d) for d in range(10)}
    assert export_main(["--data-dir", str(fake_mnist_dir), "--out", str(tmp_path / "png")]) == 2  # not empty
    args = ["--dataset", "folder", "--channels", "1", "--image-size", "28", "--name", "f", "--num-workers", "0"]
    assert _train(tmp_path, tmp_path / "png", *args) == 0
    ckpt = tmp_path / "logs" / "f" / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert evaluate_main(["--ckpt", str(ckpt), "-n", "64", "--classifier", str(fake_classifier["path"])]) == 2
    assert "pass evaluate.py --dataset mnist" in capsys.readouterr().err
    argv = ["--ckpt", str(ckpt), "-n", "64", "--dataset", "mnist", "--data-dir", str(fake_mnist_dir)]
    assert evaluate_main([*argv, "--classifier", str(fake_classifier["path"])]) == 0
    assert {"fid", "precision", "coverage", "modes"} <= set(json.loads(capsys.readouterr().out.splitlines()[-1]))
