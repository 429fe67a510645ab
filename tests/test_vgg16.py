"""NVlabs' VGG16 (`--extractor vgg16`, StyleGAN2-ADA's pr50k3_full): the features are the scripted network's own
`return_features=True` output on the uint8 RGB pixels StyleGAN2-ADA feeds it, a foreign or damaged file is one line,
and evaluate.py's pr50k3_full scores in it with up to 200,000 reference features. A tiny random network with
NVlabs' call signature stands in for vgg16.pt, which cannot be had offline."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch
from test_fid_protocol import N_TRAIN, setup  # noqa: F401  (an RGB folder, a trained checkpoint)
from torch import nn

from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.core.errors import DataError
from gan_lightning.metrics import file_sha256, load_extractor
from gan_lightning.metrics.extractors.vgg16 import VGG16_SHA256
from gan_lightning.metrics.protocols import PROTOCOLS
from gan_lightning.metrics.scorer import Scorer

NUM_FEATURES = 12


class ScriptedVGG16Like(nn.Module):
    """NVlabs' call signature: uint8 RGB (B, 3, H, W) in, features (B, F) out with `return_features=True`."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                                  nn.Linear(72, NUM_FEATURES))  # fmt: skip

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8 and img.shape[1] == 3  # what NVlabs' network is given
        features = self.body(img.float())  # (B, F)
        return features if return_features else features.sum(1)


class NoReturnFeatures(nn.Module):
    """A TorchScript network of another contract: no `return_features` argument."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3))


def scripted(network: type[nn.Module], path) -> torch.jit.ScriptModule:
    """A seeded `network()` scripted and saved at `path` (the caller's random stream untouched)."""
    with torch.random.fork_rng(), warnings.catch_warnings():  # recent torch deprecates TorchScript (FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.manual_seed(0)
        net = torch.jit.script(network())
        torch.jit.save(net, str(path))
    return net


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg16") / "vgg16.pt"
    return {"path": path, "net": scripted(ScriptedVGG16Like, path).eval()}


# pixels in [-1, 1] and the uint8 StyleGAN2-ADA makes of them: (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)
SIGNED = [-1.5, -1.0, -0.99, 0.0, 0.003, 0.5, 0.999, 1.0, 1.2]
UINT8 = [0, 0, 1, 128, 128, 191, 255, 255, 255]  # e.g. -0.99 -> 1.775 -> 1; 0.5 -> 191.75 -> 191; 1.2 -> clamped


def test_features_are_the_networks_own_output_on_the_uint8_pixels_nvlabs_feeds_it(vgg):
    extractor = load_extractor("vgg16", vgg["path"], checked=False)
    assert extractor.num_features == NUM_FEATURES and extractor.protocol()["extractor"] == "vgg16"
    assert extractor.protocol()["extractor_sha256"] == file_sha256(vgg["path"])
    g = torch.Generator().manual_seed(0)
    order = torch.stack([torch.randperm(len(SIGNED) ** 2, generator=g) for _ in range(6)])  # (6, 81)
    x = torch.tensor(SIGNED).repeat(len(SIGNED))[order].view(2, 3, 9, 9)
    pixels = torch.tensor(UINT8, dtype=torch.uint8).repeat(len(SIGNED))[order].view(2, 3, 9, 9)
    features = extractor(x)
    assert features.dtype == torch.float32 and features.shape == (2, NUM_FEATURES)
    assert torch.equal(features, vgg["net"](pixels, return_features=True))  # at the images' own size, no resize
    assert torch.equal(extractor.extract(x)[0], features) and extractor.extract(x)[1] is None


def test_grey_images_are_repeated_to_rgb(vgg):
    extractor = load_extractor("vgg16", vgg["path"], checked=False)
    grey = torch.tensor(SIGNED).repeat(4)[:36].view(1, 1, 6, 6)
    pixels = torch.tensor(UINT8, dtype=torch.uint8).repeat(4)[:36].view(1, 1, 6, 6).repeat(1, 3, 1, 1)
    assert torch.equal(extractor(grey), vgg["net"](pixels, return_features=True))
    assert torch.equal(extractor(grey), extractor(grey.expand(-1, 3, -1, -1)))


def test_only_the_published_file_loads_checked(vgg):
    with pytest.raises(DataError) as caught:
        load_extractor("vgg16", vgg["path"])  # random weights: not NVlabs' file
    message = str(caught.value)
    assert "\n" not in message and f"expected {VGG16_SHA256[:16]}" in message and "--fid-weights-unchecked" in message


def test_a_missing_damaged_or_foreign_file_is_one_line(vgg, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(vgg["path"].read_bytes()[:4000])
    torch.save(ScriptedVGG16Like().state_dict(), tmp_path / "state.pt")
    scripted(NoReturnFeatures, tmp_path / "other.pt")
    for name, words in [("missing.pt", "no VGG16 at"), ("cut.pt", "is not a TorchScript archive"),
                        ("state.pt", "holds a torch.save file"), ("other.pt", "return_features=True")]:  # fmt: skip
        with pytest.raises(DataError) as caught:
            load_extractor("vgg16", tmp_path / name, checked=False)
        message = str(caught.value)
        assert "\n" not in message and str(tmp_path / name) in message and words in message, message
        assert "vgg16.pt" in message  # where to get the real file


def test_the_protocols_caps_keep_200000_references_and_50000_generated(vgg):
    scorer = Scorer(load_extractor("vgg16", vgg["path"], checked=False), **PROTOCOLS.get("pr50k3_full").scoring())
    scorer.add_real([torch.rand(12, 3, 8, 8) * 2 - 1], total=12)
    protocol = scorer.protocol(50_000, seed=0)
    assert scorer.metrics.max_features == 200_000 and protocol["extractor"] == "vgg16"
    assert protocol["kid_prdc_reference"] == 12 and protocol["kid_prdc_generated"] == 50_000


def test_evaluate_pr50k3_full_scores_in_vgg16_features(setup, vgg, capsys, monkeypatch):  # noqa: F811
    # the protocol as registered but for 20 generated images: 50,000 would be a GPU job, not a unit test (the
    # 50,000 is checked by test_protocols.py's table and the caps test above)
    registered = PROTOCOLS.get("pr50k3_full")
    monkeypatch.setattr(PROTOCOLS, "get", lambda name: dataclasses.replace(registered, num=20))
    run = setup["run"]
    argv = ["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--dataset", "folder", "--data-dir",
            str(setup["data"]), "--protocol", "pr50k3_full", "--extractor-weights", str(vgg["path"]),
            "--fid-weights-unchecked"]  # fmt: skip
    capsys.readouterr()
    assert evaluate_main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("protocol pr50k3_full: precision and recall with k = 3 of 50,000 generated images")
    assert ("num 20, split train, extractor vgg16, num_reference 200000, max_features 200000, kid_subsets 50, "
            "kid_subset_size 1000, resize None") in out[0]  # fmt: skip
    row = json.loads(out[-1])
    protocol = row["protocol"]
    assert protocol["protocol_name"] == "pr50k3_full" and protocol["extractor"] == "vgg16"
    assert protocol["extractor_sha256"] == file_sha256(vgg["path"]) and protocol["resize"].startswith("uint8 ")
    assert protocol["num_reference"] == N_TRAIN and protocol["kid_prdc_reference"] == N_TRAIN  # all 7, under 200,000
    assert protocol["num_generated"] == protocol["kid_prdc_generated"] == 20
    assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1


def test_pr50k3_full_without_the_vgg16_file_is_one_line(tmp_path, capsys):
    assert evaluate_main(["--ckpt", str(tmp_path / "none.ckpt"), "--protocol", "pr50k3_full"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scores in vgg16's features: pass --extractor-weights PATH" in err[0], err
