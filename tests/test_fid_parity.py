"""The FID Inception against the reference implementations, offline: torch-fidelity's network with random weights
saved as the weights file, the project's FID, KID and IS against torch-fidelity's `calculate_metrics` on the same
images and file."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset
from weights_files import torchvision_inception_file

from gan_lightning.bench import fid as fid_benchmark
from gan_lightning.core.errors import DataError
from gan_lightning.data.base import to_signed
from gan_lightning.metrics import SampleQualityMetrics, build_extractor, load_extractor

torch_fidelity = pytest.importorskip("torch_fidelity")

N = 16  # images per set: Inception runs at 299x299 whatever the input size, a fraction of a second per image


def random_fid_weights(path, seed: int = 0) -> None:
    """Save a seeded random FID Inception state_dict at `path`, in the published file's format."""
    fid_benchmark.write_random_fid_weights(path, seed)


def image_sets(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different distributions of smooth uint8 RGB images (N, 3, 32, 32): blurry colour blobs, and the same
    kind darker with finer detail."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(N, 3, 4, 4, generator=g)
    fine = torch.rand(N, 3, 16, 16, generator=g)
    up = torch.nn.functional.interpolate
    a = up(coarse, size=32, mode="bilinear", align_corners=False)
    b = 0.6 * up(fine, size=32, mode="bilinear", align_corners=False) + 0.1
    return (a * 255).round().to(torch.uint8), (b * 255).round().to(torch.uint8)


class _Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("fid") / "random-inception.pth"
    random_fid_weights(path)
    return path


@pytest.fixture(scope="module")
def images():
    return image_sets()


@pytest.fixture(scope="module")
def project_scores(weights, images):
    real, fake = images
    extractor = load_extractor("inception_fid", weights, checked=False)
    metrics = SampleQualityMetrics(extractor, kid_subset_size=N, kid_subsets=5)
    metrics.update(to_signed(real), real=True)
    metrics.update(to_signed(fake), real=False)
    return metrics.compute()


def test_project_equals_torch_fidelity(weights, images, project_scores):
    real, fake = images
    reference = torch_fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), cuda=False, isc=True, fid=True, kid=True, verbose=False,
        feature_extractor_weights_path=str(weights), kid_subset_size=N, batch_size=N, cache=False, save_cpu_ram=True,
    )  # fmt: skip
    ours = (project_scores["fid"], project_scores["kid"], project_scores["inception_score"])
    theirs = [reference[k] for k in ("frechet_inception_distance", "kernel_inception_distance_mean",
                                     "inception_score_mean")]  # fmt: skip
    pairs = zip(("FID", "KID", "IS"), ours, theirs, strict=True)
    print("\nproject / torch-fidelity: " + ", ".join(f"{name} {a:.8g} / {b:.8g}" for name, a, b in pairs))
    assert project_scores["fid"] > 1.0  # the two sets do differ in these random features: a real comparison
    assert project_scores["fid"] == pytest.approx(reference["frechet_inception_distance"], rel=1e-4)
    # KID subsets of the whole set are permutations of it: the unbiased MMD, whatever either library draws
    assert project_scores["kid"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-4)
    assert project_scores["inception_score"] == pytest.approx(reference["inception_score_mean"], rel=1e-6)
    # The std over splits is a difference of near-equal split scores (random weights: IS ~ 1, spread ~ 6e-4), so the
    # float32 rounding the mean is allowed (rel 1e-6 of IS) is its bound too, as an absolute error; a wrong std (the
    # population's instead of the sample's over 10 splits: 5%, 3e-5 here) is still 30x outside it
    assert project_scores["inception_score_std"] == pytest.approx(
        reference["inception_score_std"], abs=1e-6 * reference["inception_score_mean"]
    )


def test_a_foreign_weights_file_is_one_line(tmp_path, weights):
    unchecked = build_extractor(3, fid_weights=weights, fid_weights_unchecked=True)
    assert unchecked.protocol()["extractor"] == "inception_fid"
    with pytest.raises(DataError) as err:  # the layout is right, the hash is not the published one
        build_extractor(3, fid_weights=weights)
    message = str(err.value)
    assert "has the FID Inception's layout but other weights" in message and "6726825d" in message
    assert "--fid-weights-unchecked" in message and "\n" not in message
    other = tmp_path / "classifier.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"arch": "mnist_cnn"}}, other)
    with pytest.raises(DataError, match=r"holds a 'mnist_cnn' classifier, not Inception weights; expected the FID "
                                        r"Inception, SHA-256 6726825d"):  # fmt: skip
        build_extractor(3, fid_weights=other, fid_weights_unchecked=True)


def test_the_fid_benchmark_times_both_extractors_and_refuses_other_weights(tmp_path, weights, capsys):
    argv = ["--fid-weights", str(weights), "--batch-size", "2", "--rounds", "1", "--image-size", "16"]
    assert fid_benchmark.main(argv) == 2  # random weights: only with --fid-weights-unchecked
    assert fid_benchmark.main([*argv, "--fid-weights-unchecked"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["plain_images_per_s"] > 0 and result["ours_images_per_s"] > 0
    assert result["max_abs_feature_diff"] < 1e-3 * result["feature_scale"]  # the same network, rounding apart
    torchvision_file = tmp_path / "inception_v3_google.pth"
    torchvision_inception_file(torchvision_file)
    assert fid_benchmark.main(["--fid-weights", str(torchvision_file), "--fid-weights-unchecked"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not the FID Inception's layout" in err
