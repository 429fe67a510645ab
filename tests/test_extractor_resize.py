"""`--extractor-resize` for the FID Inception and CLIP: their layers after the resize are torch-fidelity's forward
exactly (fed its own TF1 bilinear resize, the same features), another resize (clean-fid's `clean`) reaches the
network and is recorded, and `tf_bilinear` is the published path recorded as it always was."""

from __future__ import annotations

import pytest
import torch

from gan_lightning.bench.fid import write_random_fid_weights
from gan_lightning.metrics import build_extractor, load_extractor
from gan_lightning.metrics.extractors.clip import write_random_clip_archive
from gan_lightning.metrics.extractors.resizers import RESIZES

pytest.importorskip("torch_fidelity")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resize")
    write_random_fid_weights(folder / "inception.pth", 0)
    write_random_clip_archive(folder / "clip.pt", seed=0)
    return {"inception_fid": folder / "inception.pth", "clip": folder / "clip.pt"}


def uint8_images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 24, 24), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def features(extractor, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return extractor.extract(images.float() / 127.5 - 1)[0]


def input_size(extractor) -> int:
    return 299 if extractor.name == "inception_fid" else extractor.net.resolution


@pytest.mark.parametrize("name", ["inception_fid", "clip"])
def test_the_layers_after_the_resize_are_torch_fidelitys_forward(files, name):
    ours = load_extractor(name, files[name], checked=False)
    images = uint8_images(3, 0)
    with torch.no_grad():
        expected = ours.net(images)[0]  # torch-fidelity's own forward, its resize inside
        got = ours.from_pixels(RESIZES.get("tf_bilinear")(images, input_size(ours)))
    assert torch.equal(got if name == "clip" else got[0], expected)


@pytest.mark.parametrize("name", ["inception_fid", "clip"])
def test_another_resize_reaches_the_network_and_is_recorded(files, name):
    default = load_extractor(name, files[name], checked=False)
    named = load_extractor(name, files[name], checked=False, resize="tf_bilinear")
    clean = load_extractor(name, files[name], checked=False, resize="clean")
    images = uint8_images(4, 1)
    assert named.protocol()["resize"] == default.protocol()["resize"]  # the published path, recorded as always
    assert torch.equal(features(named, images), features(default, images))
    assert clean.protocol()["resize"].startswith("clean: ")
    with torch.no_grad():
        expected = clean.from_pixels(RESIZES.get("clean")(images, input_size(clean)))
    expected = expected if name == "clip" else expected[0]
    torch.testing.assert_close(features(clean, images), expected)
    assert not torch.allclose(features(clean, images), features(default, images))


def test_fid_weights_take_the_resize_too(files):
    extractor = build_extractor(3, fid_weights=files["inception_fid"], fid_weights_unchecked=True,
                                extractor_resize="pil_bicubic")  # fmt: skip
    assert extractor.protocol()["resize"].startswith("pil_bicubic: ")
