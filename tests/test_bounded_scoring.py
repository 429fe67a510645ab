"""Scoring in bounded memory: FID from float64 running sums equals FID over every feature held at once; KID and
precision/recall/density/coverage hold at most `max_features` features a side whatever the sample count; KID from
that shared store equals torchmetrics' KernelInceptionDistance; the extractor's slices change no feature."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.image.kid import KernelInceptionDistance

from gan_lightning.metrics import FeatureExtractor
from gan_lightning.metrics.gaussians import frechet_distance
from gan_lightning.metrics.manifold import prdc
from gan_lightning.metrics.quality import SampleQualityMetrics, kernel_distance


class Projection(FeatureExtractor):
    """A fixed random projection of the pixels to 8 features; records the batch sizes it was given."""

    num_features = 8
    name = "projection"

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
        self.batches: list[int] = []

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.batches.append(len(x))
        return x.flatten(1) @ self.weight, None  # (B, 8)


def images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 4, 4, generator=g) * 1.6 - 0.8 + shift).clamp(-1, 1)  # (n, 1, 4, 4) in [-1, 1]


def gaussian(features: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    f = torch.from_numpy(features).double()
    return f.mean(0), torch.from_numpy(np.cov(features, rowvar=False))


def test_running_sum_fid_equals_the_fid_of_all_features_at_once():
    metrics = SampleQualityMetrics(Projection(), kid_subset_size=10, max_features=10)
    real, fake = images(300, 1), images(500, 2, shift=0.3)
    for batch in real.split(64):
        metrics.update(batch, real=True)
    for batch in fake.split(64):
        metrics.update(batch, real=False)
    project = metrics.compute()["fid"]
    extractor = Projection()
    whole = [extractor.extract(x)[0].double().numpy() for x in (real, fake)]
    direct = frechet_distance(*gaussian(whole[0]), *gaussian(whole[1]))
    assert project == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert direct > 0.1  # the two sets differ: not a vacuous equality of zeros


def test_kid_and_prdc_hold_at_most_max_features_and_fid_sees_every_image():
    cap = 40
    bounded = SampleQualityMetrics(Projection(), kid_subset_size=20, kid_subsets=5, max_features=cap)
    first_only = SampleQualityMetrics(Projection(), kid_subset_size=20, kid_subsets=5, max_features=10_000)
    real, fake = images(cap, 3), images(5 * cap, 4, shift=0.2)
    for metrics in (bounded, first_only):
        metrics.update(real, real=True)
    for batch in fake.split(30):
        bounded.update(batch, real=False)
    first_only.update(fake[:cap], real=False)
    assert bounded.fake_kept == cap and bounded.num_fake == 5 * cap
    a, b = bounded.compute(), first_only.compute()
    for key in ("kid", "kid_std", "precision", "recall", "density", "coverage"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key  # the first `cap` fakes, nothing more
    assert a["fid"] != pytest.approx(b["fid"], rel=1e-3)  # FID's sums saw all 200 fakes


def test_kernel_distance_equals_torchmetrics_kid():
    g = torch.Generator().manual_seed(5)
    real, fake = torch.randn(120, 8, generator=g), torch.randn(90, 8, generator=g) + 0.4
    reference = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=7, subset_size=30)  # features arrive ready
    reference.update(real, real=True)
    reference.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        kid, kid_std = reference.compute()
    ours = kernel_distance(real, fake, subsets=7, subset_size=30, seed=11)
    assert ours["kid"] == pytest.approx(float(kid), rel=1e-6) and ours["kid_std"] == pytest.approx(float(kid_std))
    assert ours["kid"] > 0.01


def test_the_extractor_sees_slices_and_the_features_do_not_change():
    sliced_extractor = Projection()
    sliced = SampleQualityMetrics(sliced_extractor, kid_subset_size=10, extract_batch=7)
    whole = SampleQualityMetrics(Projection(), kid_subset_size=10, extract_batch=1000)
    batch = images(30, 6)
    assert torch.equal(sliced.update(batch, real=True), whole.update(batch, real=True))
    assert sliced_extractor.batches == [7, 7, 7, 7, 2]
    assert sliced.batch_size_on(torch.device("cpu")) == 7


def test_prdc_of_the_shared_store_equals_the_direct_computation():
    metrics = SampleQualityMetrics(Projection(), kid_subset_size=10)
    real, fake = images(60, 7), images(50, 8, shift=0.1)
    metrics.update(real, real=True)
    metrics.update(fake, real=False)
    extractor = Projection()
    direct = prdc(extractor.extract(real)[0], extractor.extract(fake)[0], k_pr=3, k_dc=5, chunk_size=7)
    got = metrics.compute()
    assert {k: got[k] for k in direct} == pytest.approx(direct)
