"""CLIP features (`--extractor clip`): torch-fidelity's CLIP tower loaded from a local archive in OpenAI's format
(random weights here: the published file cannot be had offline), the same features as torch-fidelity's own
extractor, FID in them equal to the Fréchet distance computed by hand, the published hash checked in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_fid_protocol import setup  # noqa: F401  (an RGB folder, a trained checkpoint)
from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.core.errors import DataError
from gan_lightning.metrics import file_sha256, load_extractor
from gan_lightning.metrics.extractors.clip import write_random_clip_archive
from gan_lightning.metrics.gaussians import frechet_distance
from gan_lightning.metrics.quality import SampleQualityMetrics


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_random_clip_archive(tmp_path_factory.mktemp("clip") / "ViT-B-32.pt", seed=0)


def uint8_images(n: int, seed: int, channels: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, 20, 20), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)  # fmt: skip


def signed(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1  # the [-1, 1] images every extractor here takes


def test_features_equal_torch_fidelitys_own_extractor(archive):
    ours = load_extractor("clip", archive, checked=False)
    reference = FeatureExtractorCLIP("clip-vit-b-32", ["clip"], feature_extractor_weights_path=str(archive)).eval()
    images = uint8_images(6, 1)
    with torch.no_grad():
        expected = reference(images)[0]
    features, probs = ours.extract(signed(images))
    assert probs is None and features.shape == (6, ours.num_features) == (6, 32)
    assert torch.equal(features, expected)
    grey = uint8_images(3, 2, channels=1)
    with torch.no_grad():
        assert torch.equal(ours.extract(signed(grey))[0], reference(grey.expand(-1, 3, -1, -1))[0])
    assert ours.protocol()["extractor"] == "clip" and ours.protocol()["extractor_sha256"] == file_sha256(archive)
    assert torch.equal(ours(signed(images)), expected)  # the module's forward: what the evaluator's wrappers call


def test_fid_in_clip_features_equals_the_frechet_distance_by_hand(archive):
    extractor = load_extractor("clip", archive, checked=False)
    metrics = SampleQualityMetrics(extractor, kid_subset_size=10)
    real, fake = uint8_images(40, 3), (uint8_images(40, 4) // 2)  # fakes: darker images
    metrics.update(signed(real), real=True)
    metrics.update(signed(fake), real=False)
    reference = FeatureExtractorCLIP("clip-vit-b-32", ["clip"], feature_extractor_weights_path=str(archive)).eval()
    with torch.no_grad():
        a, b = (reference(x)[0].double().numpy() for x in (real, fake))
    by_hand = frechet_distance(torch.from_numpy(a.mean(0)), torch.from_numpy(np.cov(a, rowvar=False)),
                               torch.from_numpy(b.mean(0)), torch.from_numpy(np.cov(b, rowvar=False)))  # fmt: skip
    assert metrics.compute()["fid"] == pytest.approx(by_hand, rel=1e-9)
    assert by_hand > 1e-3


def test_the_published_hash_is_checked_in_one_line(archive):
    with pytest.raises(DataError) as caught:
        load_extractor("clip", archive)
    message = str(caught.value)
    assert "\n" not in message and "is not OpenAI's clip-vit-b-32 archive" in message
    assert "published 40d365715913c9da" in message and "--fid-weights-unchecked" in message


def test_evaluate_scores_a_checkpoint_in_clip_features(setup, archive, capsys):  # noqa: F811
    run = setup["run"]
    flags = ["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--dataset", "folder", "--data-dir",
             str(setup["data"]), "--extractor", "clip", "--extractor-weights", str(archive),
             "--fid-weights-unchecked", "-n", "10", "--reference", "train"]  # fmt: skip
    assert evaluate_main(flags) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["fid"] > 0 and row["protocol"]["extractor"] == "clip"
    assert row["protocol"]["extractor_sha256"] == file_sha256(archive)
