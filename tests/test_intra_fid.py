"""Intra-class FID of conditional generators (`Scorer`): the mean of per-class FIDs against hand-computed ones,
absent without classes or labels, cached with the reference, and in evaluate.py's output and metrics.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from gan_lightning import GAN
from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.data import MNISTDataModule
from gan_lightning.metrics import FeatureExtractor, SampleQuality, Scorer, load_extractor
from gan_lightning.metrics.evaluator import Evaluator
from gan_lightning.metrics.extractors.base import to_uint8
from gan_lightning.training.latents import LatentSpace

from conftest import cpu_trainer

K, COUNTS = 3, (20, 25, 30)  # classes and real images per class


class Pixels(FeatureExtractor):
    """The 4 pixels of a (1, 2, 2) image as its features: FIDs computable by hand."""

    num_features = 4
    name = "pixels"

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x.flatten(1), None


class Stub:
    """A generator of (1, 2, 2) images: its 4-dim noise plus an offset of its class; records what it was asked."""

    device = torch.device("cpu")

    def __init__(self, num_classes: int) -> None:
        self.latents = LatentSpace(4, "normal", num_classes=num_classes)
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def sample(self, latents: torch.Tensor, **truncation: object) -> torch.Tensor:  # GAN.sample's keywords
        z, onehot = latents[:, :4], latents[:, 4:]
        labels = onehot.argmax(1) if onehot.shape[1] else None
        offset = 0 if labels is None else torch.tensor([[0.0, 1, 2, 3]])[0, labels, None] * torch.ones(1, 4)
        images = (z * 0.5 + offset).view(-1, 1, 2, 2)
        self.calls.append((images, labels))
        return images


def real_set(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """COUNTS[c] images of class c (mean c / 2, spread 0.3 + c / 10), shuffled."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    images = torch.randn(len(labels), 1, 2, 2, generator=g) * (0.3 + labels.view(-1, 1, 1, 1) / 10)
    return images + labels.view(-1, 1, 1, 1) / 2, labels


def scorer(labels: bool = True) -> Scorer:
    images, y = real_set()
    s = Scorer(Pixels(), batch_size=1000, kid_subset_size=5, kid_subsets=2)
    s.add_real(images.split(16), reference="synthetic", labels=y if labels else None)
    return s


def fid_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (N, D): tr sqrt(S1 S2) as the sum of the square roots of S1 S2's eigenvalues
    (real and non-negative for a product of covariance matrices), independent of the project's formula."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2) - 2 * root_trace)


def test_intra_fid_is_the_mean_of_hand_computed_per_class_fids():
    s, gan = scorer(), Stub(K)
    results = s.score(gan, 32, seed=7, per_class=True)
    overall, balanced = gan.calls  # one batch each: the FID samples, then 32 // 3 = 10 images of each class
    assert torch.equal(balanced[1], torch.arange(K).repeat_interleave(10))
    real, labels = real_set()
    fake = balanced[0].flatten(1).double().numpy()
    expected = [fid_by_hand(real.flatten(1)[labels == c].double().numpy(), fake[balanced[1] == c]) for c in range(K)]
    assert results["intra_fid_per_class"] == pytest.approx(expected, rel=1e-6)
    assert results["intra_fid"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert min(expected) > 0.01 and max(expected) > 2 * min(expected)  # classes differ: no trivial mean
    # the overall FID is as before: random labels, all 32 samples
    assert len(overall[0]) == 32 and results["fid"] != pytest.approx(results["intra_fid"])
    protocol = s.protocol(32, 7, num_classes=K)
    assert protocol["intra_fid_generated_per_class"] == 10 and protocol["intra_fid_reference_per_class"] == [*COUNTS]
    assert "intra_fid_per_class" not in s.score(gan, 32, seed=7)  # only asked for (evaluate.py)
    assert s.score(gan, 32, seed=7)["intra_fid"] == results["intra_fid"]  # seeded: repeatable


def test_intra_fid_is_absent_without_classes_labels_or_samples():
    unconditional = scorer().score(Stub(0), 32, seed=0, per_class=True)
    assert "fid" in unconditional and not any(k.startswith("intra_fid") for k in unconditional)
    unlabelled = scorer(labels=False)
    assert "intra_fid" not in unlabelled.score(Stub(K), 32, seed=0)
    assert not any(k.startswith("intra_fid") for k in unlabelled.protocol(32, 0, num_classes=K))
    labelled = scorer()
    assert "intra_fid" not in labelled.score(Stub(K), 5, seed=0)  # 5 // 3 = 1 image per class: no covariance
    assert "intra_fid" not in labelled.score(Stub(4), 32, seed=0)  # 4 classes, the reference has 3
    assert not any(k.startswith("intra_fid") for k in labelled.protocol(32, 0, num_classes=0))


class QuantisedPixels(Pixels):
    """`Pixels` of the uint8 image, as the FID Inception, CLIP, DINOv2 and VGG16 see their input: NaN turns black."""

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return to_uint8(x)[:, 0].flatten(1).float(), None


class Diverged(Stub):
    """`Stub` whose first generated image of every call is NaN, as a diverged generator's are."""

    def sample(self, latents: torch.Tensor, **truncation: object) -> torch.Tensor:
        images = super().sample(latents, **truncation).clone()
        images[0] = float("nan")
        return images


def test_a_diverged_generator_scores_nan_even_through_uint8_extractors():
    s = Scorer(QuantisedPixels(), batch_size=1000, kid_subset_size=5, kid_subsets=2)
    images, y = real_set()
    s.add_real(images.split(16), reference="synthetic", labels=y)
    assert np.isfinite(list(s.score(Stub(K), 32, seed=0).values())).all()  # finite images: finite scores
    results = s.score(Diverged(K), 32, seed=0)  # NaN pixels quantise to 0: finite features, yet NaN scores
    assert set(results) >= {"fid", "kid", "intra_fid"} and np.isnan(list(results.values())).all(), results


def test_cached_reference_gives_the_same_intra_fid():
    first = scorer()
    restored = Scorer(Pixels(), batch_size=1000, kid_subset_size=5, kid_subsets=2)
    restored.load_real_state(first.real_state())
    assert restored.score(Stub(K), 32, seed=3) == first.score(Stub(K), 32, seed=3)
    older = {k: v for k, v in first.real_state().items() if k != "label_counts"}  # a cache from before the counts
    restored.load_real_state(older)
    assert restored.score(Stub(K), 32, seed=3) == first.score(Stub(K), 32, seed=3)


def test_generated_labels_are_drawn_as_often_as_the_reference_holds_them():
    # StyleGAN2-ADA's metrics draw each generated image's label from the dataset: on an imbalanced reference a
    # perfect conditional generator drawn uniformly would have the wrong class mix, and a worse FID than it deserves
    n, expected = 3000, [3000 * c / sum(COUNTS) for c in COUNTS]  # 800, 1000, 1200
    gan, s = Stub(K), scorer()
    s.score(gan, n, seed=0)

    def drawn(gan: Stub) -> list[int]:  # the overall metrics' images: the first calls, in chunks of 1000
        return torch.bincount(torch.cat([labels for _, labels in gan.calls[:3]]), minlength=K).tolist()

    counts = drawn(gan)
    assert all(abs(got - want) < 100 for got, want in zip(counts, expected, strict=True)), counts  # sd ~ 25
    assert s.protocol(n, 0, num_classes=K)["generated_labels"] == "reference"
    gan, unlabelled = Stub(K), scorer(labels=False)  # no reference labels: uniform
    unlabelled.score(gan, n, seed=0)
    assert all(abs(got - 1000) < 100 for got in drawn(gan)), drawn(gan)
    assert unlabelled.protocol(n, 0, num_classes=K)["generated_labels"] == "uniform"
    assert "generated_labels" not in s.protocol(n, 0, num_classes=0)
    # labels all 0 are a dataset without classes (CelebA, a folder of photos), not a one-class reference
    gan, photos = Stub(K), Scorer(Pixels(), batch_size=1000, kid_subset_size=5, kid_subsets=2)
    photos.add_real(real_set()[0].split(16), labels=torch.zeros(len(real_set()[1]), dtype=torch.long))
    photos.score(gan, n, seed=0)
    assert all(abs(got - 1000) < 100 for got in drawn(gan)), drawn(gan)
    assert photos.protocol(n, 0, num_classes=K)["generated_labels"] == "uniform"


def test_a_reference_cache_from_before_the_label_counts_still_draws_the_references_labels(tmp_path, fake_mnist_dir,
                                                                                        fake_classifier):  # fmt: skip
    gan = GAN("mlp", latent_dim=8, conditional=True)
    evaluator = Evaluator(fake_classifier["path"], "mnist", str(fake_mnist_dir), 28, cache_dir=tmp_path)
    fresh = evaluator(gan, 100, seed=5)
    # a labelled reference with too many classes for per-class sums kept neither those nor the counts
    state = torch.load(evaluator.cache, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("class_") and k != "label_counts"}, evaluator.cache)
    again = Evaluator(fake_classifier["path"], "mnist", str(fake_mnist_dir), 28, cache_dir=tmp_path)
    assert again.cached
    results = again(gan, 100, seed=5)
    assert results["fid"] == fresh["fid"] and results["protocol"]["generated_labels"] == "reference"


@pytest.mark.filterwarnings("ignore:The number of training batches")
def test_conditional_mnist_run_reports_intra_fid(tmp_path, fake_mnist_dir, fake_classifier, capsys):
    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8, conditional=True)
    dm = MNISTDataModule(str(fake_mnist_dir), batch_size=32, download=False)  # evaluate.py's split
    dm.setup("fit")
    quality = SampleQuality(load_extractor("mnist_classifier", fake_classifier["path"]), every_n_steps=2,
                            num_samples=100, seed=5, real_images=dm.train_set, kid_subset_size=50)  # fmt: skip
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = cpu_trainer(tmp_path, logger=logger, callbacks=[quality], max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, dm)
    [line] = [json.loads(x) for x in (tmp_path / "run" / "version_0" / "metrics.jsonl").read_text().splitlines()]
    assert line["intra_fid"] == quality.last["intra_fid"] > 0
    counts = torch.bincount(dm.train_set.labels, minlength=10).tolist()
    assert line["protocol"]["intra_fid_generated_per_class"] == 10
    assert line["protocol"]["intra_fid_reference_per_class"] == counts
    # evaluate.py: the same number from the same reference (the train split), and the per-class values
    offline = Evaluator(fake_classifier["path"], "mnist", str(fake_mnist_dir), 28, split="train")(gan, 100, seed=5)
    assert offline["intra_fid"] == quality.last["intra_fid"]
    assert len(offline["intra_fid_per_class"]) == 10
    assert offline["intra_fid"] == pytest.approx(sum(offline["intra_fid_per_class"]) / 10)
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    flags = ["--ckpt", str(ckpt), "--classifier", str(fake_classifier["path"]), "--data-dir", str(fake_mnist_dir),
             "-n", "100", "--seed", "5", "--reference", "train"]  # fmt: skip
    capsys.readouterr()
    assert evaluate_main(flags) == 0
    [printed] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert printed["intra_fid"] == round(offline["intra_fid"], 4)
    assert printed["intra_fid_per_class"] == offline["intra_fid_per_class"]
    assert printed["protocol"]["intra_fid_reference_per_class"] == counts
    # unconditional: absent, not zero
    plain = Evaluator(fake_classifier["path"], "mnist", str(fake_mnist_dir), 28, split="train")
    assert "intra_fid" not in plain(GAN("mlp", latent_dim=8), 100, seed=5)
