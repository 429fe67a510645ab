"""Sample-quality metrics: the MNIST classifier, frozen extractors, FID/KID/modes on known sets, the callback."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import warnings

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from weights_files import torchvision_inception_file

from gan_lightning import GAN
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.data import MNISTDataModule
from gan_lightning.data.base import to_signed
from gan_lightning.metrics import (
    EXTRACTORS,
    MANIFOLD_METRICS,
    MNISTClassifierFeatures,
    SampleQuality,
    SampleQualityMetrics,
    build_extractor,
    class_statistics,
    load_extractor,
)
from gan_lightning.metrics.classifier import MNISTClassifier, load_classifier, train_classifier
from gan_lightning.metrics.extractors import FeatureExtractor, notice_once

from conftest import cpu_trainer


@pytest.fixture(scope="session")
def fake_sets(fake_mnist_dir) -> dict[str, torch.Tensor]:
    """Two disjoint halves of the fake data, as uint8 images and labels."""
    dm = MNISTDataModule(fake_mnist_dir, download=False, val_fraction=0.5)
    dm.setup()
    return {"a": dm.train_set.images, "b": dm.val_set.images, "b_labels": dm.val_set.labels}


def shuffled_pixels(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The same pixel values in one fixed random order: digit statistics kept, every stroke destroyed."""
    perm = torch.randperm(images[0].numel(), generator=torch.Generator().manual_seed(seed))
    return images.flatten(1)[:, perm].view_as(images)


def score(metrics: SampleQualityMetrics, images: torch.Tensor) -> dict[str, float]:
    metrics.reset()
    metrics.update(to_signed(images), real=False)
    return metrics.compute()


@pytest.fixture
def fresh_notices():
    notice_once.cache_clear()
    yield
    notice_once.cache_clear()


# ------------------------------------------------------------------------------------------------- classifier
def test_classifier_shapes_and_resize():
    model = MNISTClassifier().eval()
    x28, x32 = torch.rand(3, 1, 28, 28) * 2 - 1, torch.rand(3, 1, 32, 32) * 2 - 1
    assert model.features(x28).shape == (3, 128) and model(x28).shape == (3, 10)
    assert model(x32).shape == (3, 10)  # DCGAN's 32x32 samples are resized to 28 inside


def test_classifier_learns_fake_bars(fake_classifier):
    assert fake_classifier["val_accuracy"] == 1.0
    assert fake_classifier["epochs"] == 1


def test_load_classifier_round_trip(fake_classifier):
    path = fake_classifier["path"]
    raw = torch.load(path, weights_only=True)  # plain tensors and values: no pickled classes
    assert raw["meta"]["arch"] == "mnist_cnn" and raw["meta"]["val_accuracy"] == fake_classifier["val_accuracy"]
    model = load_classifier(path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(model(x), fake_classifier["model"].eval()(x))


def test_load_classifier_errors(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match=f"train one with: python scripts/train_classifier.py --data-dir DIR --out "
                       f"{missing}$"):  # fmt: skip
        load_classifier(missing)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a plain weights file") as caught:
        load_classifier(junk)
    assert str(caught.value).endswith("--out PATH") and "--out " + str(junk) not in str(caught.value)  # kept


# ------------------------------------------------------------------------------------------------- extractors
def test_extractor_stays_in_eval_mode_and_frozen(fake_classifier):
    extractor = load_extractor("mnist_classifier", fake_classifier["path"])
    parent = nn.ModuleDict({"extractor": extractor, "other": nn.Linear(2, 2)})
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    before = extractor(x)
    bn = extractor.classifier.body[1]
    stats = bn.running_mean.clone()
    parent.train()
    assert parent["other"].training  # the parent did switch to training...
    assert not any(m.training for m in extractor.modules())  # ...but nothing inside the extractor did
    torch.testing.assert_close(extractor(x), before)  # no dropout, BatchNorm uses its running statistics
    torch.testing.assert_close(bn.running_mean, stats)
    assert not any(p.requires_grad for p in extractor.parameters())
    features, probs = extractor.extract(x)
    assert features.shape == (8, 128) and probs.shape == (8, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(8))


def test_extractor_registry():
    # the built-in extractors at least: a new extractor is one file (docs/extending.md), with no list here to edit
    assert {"inception_fid", "inception_torchvision", "mnist_classifier", "stacked_mnist_classifier"} <= set(
        EXTRACTORS.names()
    )
    with pytest.raises(ValueError, match="choose one of: " + re.escape(", ".join(EXTRACTORS.names())) + "$"):
        load_extractor("vgg", "x.pt")


def test_no_weights_means_no_metrics_and_one_notice(caplog, fresh_notices, monkeypatch):
    def no_downloads(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_downloads)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_downloads)
    with caplog.at_level(logging.WARNING, logger="gan_lightning.metrics"):
        assert build_extractor(3) is None
        assert build_extractor(3) is None
    notices = [r for r in caplog.records if r.name == "gan_lightning.metrics"]
    assert len(notices) == 1
    assert "--fid-weights PATH" in notices[0].getMessage() and "\n" not in notices[0].getMessage()


def test_grey_data_without_classifier_gives_a_notice(caplog, fresh_notices):
    with caplog.at_level(logging.WARNING, logger="gan_lightning.metrics"):
        assert build_extractor(1) is None
    assert [r.getMessage() for r in caplog.records if "--classifier PATH" in r.getMessage()]


def test_build_extractor_picks_the_classifier_for_grey_data(fake_classifier):
    assert isinstance(build_extractor(1, classifier=fake_classifier["path"]), MNISTClassifierFeatures)
    with pytest.raises(DataError, match="train one with"):
        build_extractor(1, classifier="missing/classifier.pt")


def test_missing_inception_weights_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no FID Inception weights .*nothing is downloaded"):
        build_extractor(3, fid_weights=tmp_path / "inception.pth")


def test_inception_from_a_local_weights_file(tmp_path, monkeypatch):
    def no_downloads(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_downloads)
    path = tmp_path / "inception.pth"
    torchvision_inception_file(path)
    extractor = build_extractor(3, fid_weights=path)  # torchvision's file, what --fid-weights took before
    assert extractor.num_features == 2048 and extractor.num_classes is None
    assert extractor.protocol()["extractor"] == "inception_torchvision"  # its scores say they are not the papers'
    with pytest.raises(ConfigError) as caught:  # torchvision's network resizes one fixed way
        build_extractor(3, fid_weights=path, extractor_resize="clean")
    assert "\n" not in str(caught.value) and "takes no other resize than its own, not clean" in str(caught.value)
    nn.Sequential(extractor).train()
    assert not any(m.training for m in extractor.modules())
    assert not any(p.requires_grad for p in extractor.parameters())
    rgb, grey = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 1, 28, 28) * 2 - 1
    features, probs = extractor.extract(rgb)
    assert features.shape == (2, 2048) and probs is None
    assert extractor(grey).shape == (2, 2048)
    assert torch.isfinite(features).all()


# ---------------------------------------------------------------------------------------------------- metrics
def test_class_statistics_exact_values():
    probs = torch.zeros(100, 10)
    probs[:50, 3] = 1.0
    probs[50:, 7] = 1.0
    stats = class_statistics(probs)
    assert stats["modes"] == 2
    assert stats["class_kl"] == pytest.approx(math.log(5))  # uniform over 2 of 10 classes
    assert stats["inception_score"] == pytest.approx(2.0)
    unsure = torch.full((100, 10), 0.02)
    unsure[:, 0] = 0.82  # below the confidence threshold: recognised as nothing
    assert class_statistics(unsure)["modes"] == 0
    rare = torch.zeros(100, 10)
    rare[:99, 0], rare[99, 1] = 1.0, 1.0  # one sample is under 2% of them: not a mode
    assert class_statistics(rare)["modes"] == 1


def test_real_data_scores_well_against_itself(fake_classifier, fake_sets):
    metrics = SampleQualityMetrics(MNISTClassifierFeatures(fake_classifier["model"]), kid_subset_size=100)
    metrics.update(to_signed(fake_sets["a"]), real=True)
    same, other_half = score(metrics, fake_sets["a"]), score(metrics, fake_sets["b"])
    single = score(metrics, fake_sets["b"][fake_sets["b_labels"] == 3])
    noise = score(metrics, shuffled_pixels(fake_sets["b"]))
    assert metrics.num_real == len(fake_sets["a"])  # real features are kept across reset()
    assert set(same) == {"fid", "kid", "kid_std", "modes", "class_kl", "inception_score", *MANIFOLD_METRICS}
    assert abs(same["fid"]) < 1e-3 * single["fid"]
    # Each image on itself: inside its own k-NN ball, and every real ball holds its own image.
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    # Another sample of the same data, one class of ten (collapsed), and pixel noise (off the manifold).
    assert other_half["precision"] > 0.8 and other_half["recall"] > 0.8 and other_half["coverage"] > 0.9
    assert 0.8 < other_half["density"] < 1.2
    assert single["recall"] < 0.15 and single["coverage"] < 0.15
    assert noise["precision"] < 0.05 and noise["density"] < 0.05
    assert other_half["fid"] < 0.05 * single["fid"]  # a different sample of the same data
    assert noise["fid"] > 20 * other_half["fid"]
    assert noise["kid"] > 10 * max(other_half["kid"], 0) + 3 * noise["kid_std"]
    assert same["modes"] == other_half["modes"] == 10
    assert same["class_kl"] < 0.05 and other_half["class_kl"] < 0.05
    assert other_half["inception_score"] > 8  # of at most 10; one class scores ~1
    assert single["modes"] == 1
    assert single["class_kl"] == pytest.approx(math.log(10), abs=0.05)
    assert single["inception_score"] < 1.1


def test_compute_joins_the_feature_store_once_and_scores_the_same_again(fake_classifier, fake_sets):
    metrics = SampleQualityMetrics(MNISTClassifierFeatures(fake_classifier["model"]), kid_subset_size=50)
    real, fake = to_signed(fake_sets["a"]), to_signed(fake_sets["b"])
    for part in real.split(70):  # batches, as the evaluator and the callback feed it
        metrics.update(part, real=True)
    for part in fake.split(70):
        metrics.update(part, real=False)
    expected = [torch.cat([metrics.extract(x)[0] for x in images.split(70)]) for images in (real, fake)]
    first = metrics.compute()
    # each side is kept as one tensor (its batches released), holding the same features in the same order
    assert [len(metrics.manifold.real_features), len(metrics.manifold.fake_features)] == [1, 1]
    for joined, features in zip(metrics.stored_features(), expected, strict=True):
        torch.testing.assert_close(joined, features)
    assert metrics.compute() == first
    assert torch.equal(metrics.real_state()["features"], metrics.stored_features()[0])


def test_diverged_samples_give_nan_not_a_crash(fake_classifier, fake_sets):
    metrics = SampleQualityMetrics(MNISTClassifierFeatures(fake_classifier["model"]), kid_subset_size=50)
    metrics.update(to_signed(fake_sets["a"]), real=True)
    fake = to_signed(fake_sets["b"])
    fake[0, 0, 0, 0] = float("nan")
    metrics.update(fake, real=False)
    results = metrics.compute()
    assert set(results) == {"fid", "kid", "kid_std", "modes", "class_kl", "inception_score", *MANIFOLD_METRICS}
    assert all(math.isnan(v) for v in results.values())


class SilentExtractor(FeatureExtractor):
    """All-zero features, as a network whose weights file left it dead gives."""

    num_features, name = 8, "silent"

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.zeros(x.shape[0], self.num_features), None


def test_all_zero_features_say_the_scores_mean_nothing(fake_sets):
    metrics = SampleQualityMetrics(SilentExtractor(), kid_subset_size=10)
    metrics.update(to_signed(fake_sets["a"][:20]), real=True)
    metrics.update(to_signed(fake_sets["b"][:20]), real=False)
    with pytest.warns(UserWarning, match="every silent feature of the real images is 0") as caught:
        results = metrics.compute()
    assert results["fid"] == 0.0 and len(caught) == 1  # the score, and one warning saying what it is worth
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.compute()  # said once


def test_metrics_reject_uint8_images(fake_classifier, fake_sets):
    metrics = SampleQualityMetrics(MNISTClassifierFeatures(fake_classifier["model"]))
    with pytest.raises(ValueError, match="float images in \\[-1, 1\\]"):
        metrics.update(fake_sets["a"], real=True)


@pytest.mark.slow
def test_real_mnist_classifier_and_metrics(real_mnist_dir, tmp_path):
    result = train_classifier(real_mnist_dir, tmp_path / "clf.pt", epochs=1)
    assert result["val_accuracy"] > 0.98
    dm = MNISTDataModule(real_mnist_dir, download=False)
    dm.setup()
    metrics = SampleQualityMetrics(load_extractor("mnist_classifier", tmp_path / "clf.pt"))
    metrics.update(to_signed(dm.val_set.images), real=True)
    train = dm.train_set
    real = score(metrics, train.images[:2000])
    ones = score(metrics, train.images[train.labels == 1][:1000])
    noise = score(metrics, shuffled_pixels(train.images[:1000]))
    assert real["fid"] < 0.05 * ones["fid"] and noise["fid"] > 20 * real["fid"]
    assert real["modes"] == 10 and real["class_kl"] < 0.02 and real["inception_score"] > 9
    assert ones["modes"] == 1 and ones["class_kl"] == pytest.approx(math.log(10), abs=0.1)


# --------------------------------------------------------------------------------------------------- callback
def test_callback_logs_to_tensorboard_and_jsonl(tmp_path, fake_mnist_dir, fake_classifier):
    gan = GAN("mlp", latent_dim=8)
    dm = MNISTDataModule(fake_mnist_dir, batch_size=64, download=False, val_fraction=0.25)
    logger = TensorBoardLogger(tmp_path, name="run")
    quality = SampleQuality(
        load_extractor("mnist_classifier", fake_classifier["path"]), every_n_steps=2, num_samples=200,
        kid_subset_size=50,
    )  # fmt: skip
    trainer = cpu_trainer(tmp_path, logger=logger, callbacks=[quality], max_steps=gan.optimizer_steps(5))
    trainer.fit(gan, datamodule=dm)

    ea = EventAccumulator(str(logger.log_dir), size_guidance={"scalars": 0})
    ea.Reload()
    for tag in ("val/fid", "val/kid", "val/kid_std", "val/modes", "val/class_kl", "val/inception_score"):
        assert [e.step for e in ea.Scalars(tag)] == [2, 4, 5], tag  # every 2 iterations, and at the end
    lines = [json.loads(line) for line in (tmp_path / "run" / "version_0" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4, 5]
    assert {k: v for k, v in lines[-1].items() if k not in ("step", "global_step", "protocol")} == quality.last
    # every line says how its numbers were measured
    sha = hashlib.sha256(fake_classifier["path"].read_bytes()).hexdigest()
    assert all(line["protocol"] == {
        "num_generated": 200, "reference": "MNISTDataModule.val_set", "num_reference": len(dm.val_set),
        "extractor": "mnist_classifier", "extractor_sha256": sha, "resize": MNISTClassifierFeatures.resize,
        "seed": 4321, "truncation": None, "truncation_threshold": None, "kid_prdc_reference": len(dm.val_set),
        "kid_prdc_generated": 200, "kid_subsets": 50, "kid_subset_size": 50} for line in lines)  # fmt: skip
    assert ea.Tags()["tensors"] == ["val/protocol/text_summary"]  # TensorBoard text beside the scalars
    assert ea.Scalars("val/fid")[-1].value == pytest.approx(quality.last["fid"], rel=1e-6)
    assert quality.last["fid"] > 0 and 0 <= quality.last["modes"] <= 10
    assert quality.metrics.num_real == len(dm.val_set)  # real features extracted once, not per evaluation

    # A fixed noise batch and a seeded KID: the same generator scores the same.
    quality.last_step = -1
    again = quality.evaluate(trainer, gan)
    assert again == pytest.approx(quality.last)


def test_callback_real_sources_and_once_per_step(tmp_path, fake_classifier, fake_sets):
    from torch.utils.data import TensorDataset

    gan = GAN("mlp", latent_dim=8)
    trainer = cpu_trainer(tmp_path, max_steps=2)
    trainer.strategy.model = gan
    extractor = load_extractor("mnist_classifier", fake_classifier["path"])
    images = fake_sets["a"]
    as_tensor = SampleQuality(extractor, num_samples=64, real_images=images[:100], kid_subset_size=50)
    dataset = TensorDataset(to_signed(images), torch.zeros(len(images)))
    as_dataset = SampleQuality(
        extractor, num_samples=64, real_images=dataset, num_real=100, batch_size=32, kid_subset_size=50
    )
    first = as_tensor.evaluate(trainer, gan)
    assert as_tensor.evaluate(trainer, gan) is None  # the same iteration is scored once
    assert as_dataset.evaluate(trainer, gan) == pytest.approx(first)  # the first 100 images either way
    assert as_tensor.metrics.num_real == as_dataset.metrics.num_real == 100


def test_callback_evaluates_on_rank_zero_only(tmp_path, fake_classifier, monkeypatch):
    gan = GAN("mlp", latent_dim=8)
    quality = SampleQuality(load_extractor("mnist_classifier", fake_classifier["path"]))
    trainer = cpu_trainer(tmp_path, max_steps=2)
    trainer.strategy.model = gan
    monkeypatch.setattr(type(trainer), "is_global_zero", property(lambda self: False))
    called = []
    monkeypatch.setattr(gan, "sample", lambda *a, **k: called.append(1))
    assert quality.evaluate(trainer, gan) is None and not called and quality.metrics.num_real == 0


def test_callback_without_real_images_fails_clearly(tmp_path, fake_classifier):
    gan = GAN("mlp", latent_dim=8)
    quality = SampleQuality(load_extractor("mnist_classifier", fake_classifier["path"]), num_samples=4)
    trainer = cpu_trainer(tmp_path, max_steps=2)
    trainer.strategy.model = gan
    with pytest.raises(DataError, match="needs real images"):
        quality.evaluate(trainer, gan)


def test_a_resume_from_an_older_checkpoint_drops_the_later_metrics_records(tmp_path, fake_mnist_dir, fake_classifier):
    # after a hard kill, last.ckpt may be older than the last scores: those iterations are scored again, once
    from gan_lightning.commands.train import main as train_main

    logs = tmp_path / "logs"
    argv = ["--data-dir", str(fake_mnist_dir), "--log-dir", str(logs), "--name", "run", "--batch-size", "16",
            "--latent-dim", "8", "--eval-every", "2", "--eval-samples", "64", "--classifier",
            str(fake_classifier["path"]), "--checkpoint-every", "2", "--keep-checkpoints"]  # fmt: skip
    assert train_main([*argv, "--max-steps", "4"]) == 0
    run = logs / "run" / "version_0"
    shutil.copy(run / "checkpoints" / "iter_0000002.ckpt", run / "checkpoints" / "last.ckpt")  # as if killed at 3
    assert train_main([*argv, "--max-steps", "4", "--ckpt-path", "last"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]


def test_scoring_during_training_leaves_the_global_random_state_alone(tmp_path, fake_mnist_dir, fake_classifier):
    # a plugin network drawing from torch's global generator (dropout) trains the same with --eval-every or without
    from gan_lightning.commands.train import main as train_main

    base = ["--data-dir", str(fake_mnist_dir), "--batch-size", "16", "--latent-dim", "8", "--max-steps", "3",
            "--num-workers", "0"]  # fmt: skip
    scored = ["--eval-every", "1", "--eval-samples", "64", "--classifier", str(fake_classifier["path"])]
    states = []
    for name, extra in (("plain", []), ("scored", scored)):
        assert train_main([*base, *extra, "--log-dir", str(tmp_path / name), "--name", "run"]) == 0
        ckpt = torch.load(tmp_path / name / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
        states.append(ckpt["gan_rng"])
    assert torch.equal(states[0]["torch"], states[1]["torch"])
