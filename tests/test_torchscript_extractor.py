"""The `torchscript` feature extractor (`metrics/extractors/torchscript.py`): a user's own network saved with
torch.jit.save gives the features its own forward gives on the same (resized) images, FID through `Scorer` is the
Fréchet distance of those features' Gaussians, scores name the archive by its SHA-256, and unusable files are one-line
DataErrors; `--extractor torchscript --extractor-weights PATH` scores with it in evaluate.py and during training."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from weights_files import mnist_classifier_file

from gan_lightning import GAN
from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.commands.train import main as train_main
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.metrics import EXTRACTORS, Scorer, build_extractor, file_sha256, load_extractor
from gan_lightning.metrics.gaussians import ClassGaussians, frechet_distance
from gan_lightning.training.latents import LatentSpace

from conftest import cpu_trainer


class Encoder(nn.Module):
    """A small conv encoder to 6 features; `input_size` (H, W) or None declares the size it takes."""

    def __init__(self, channels: int = 3, input_size: tuple[int, int] | None = (16, 16)) -> None:
        super().__init__()
        self.input_size = input_size  # a scripted attribute: the extractor resizes images to it when not None
        self.body = nn.Sequential(nn.Conv2d(channels, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.Tanh(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, C, H, W) -> (B, 6)


class FeatureMap(nn.Module):
    """Returns its conv feature map (B, 4, H, W): not features (B, F)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Score(nn.Module):
    """Returns one number per image (B,): not features (B, F)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))


class Flattened(nn.Module):
    """Flattens a conv map without pooling: its feature count depends on the image size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)  # (B, 2 * H/2 * W/2)


def scripted(make: type[nn.Module], path: Path, seed: int = 0, **kwargs: object) -> torch.jit.ScriptModule:
    """A `make(**kwargs)` with weights from `seed`, scripted, in eval mode, saved with torch.jit.save to `path`."""
    torch.manual_seed(seed)
    module = make(**kwargs)
    with warnings.catch_warnings():  # recent torch deprecates TorchScript (a FutureWarning); archives still load
        warnings.simplefilter("ignore", FutureWarning)
        network = torch.jit.script(module.eval())
        torch.jit.save(network, str(path))
    return network


def images(n: int, channels: int = 3, size: int = 28, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """Random images (n, channels, size, size) in [-scale, scale]."""
    return (torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * scale


def resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What the extractor's protocol says it does to images for a network declaring `size`."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


class ImageSet:
    """Stands in for a GAN in `Scorer.score`: its samples are fixed images, handed out in order."""

    def __init__(self, samples: torch.Tensor) -> None:
        self.samples, self.served = samples, 0
        self.device = torch.device("cpu")
        self.latents = LatentSpace(4)  # unconditional: no intra-class FID

    def sample(self, latents: torch.Tensor, rng: torch.Generator, truncation: object = None) -> torch.Tensor:
        batch = self.samples[self.served : self.served + len(latents)]
        self.served += len(latents)
        return batch


def test_registered_and_frozen(tmp_path):
    path = tmp_path / "encoder.pt"
    scripted(Encoder, path)
    extractor = load_extractor("torchscript", path)
    assert "torchscript" in EXTRACTORS.names()
    assert extractor.num_features == 6 and extractor.channels == 3 and extractor.input_size == (16, 16)
    nn.Sequential(extractor).train()  # what Lightning does to everything attached to the module
    assert not any(m.training for m in extractor.modules()) and not any(p.requires_grad for p in extractor.parameters())


def test_features_are_the_networks_own_on_resized_images(tmp_path):
    path = tmp_path / "encoder.pt"
    network = scripted(Encoder, path)
    extractor = load_extractor("torchscript", path)
    rgb, grey = images(5), images(5, channels=1, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(extractor(rgb), network(resized(rgb, (16, 16))))  # (5, 6)
        torch.testing.assert_close(extractor(grey), network(resized(grey.expand(-1, 3, -1, -1), (16, 16))))
        features, probs = extractor.extract(rgb)
    assert features.shape == (5, 6) and features.dtype == torch.float32 and probs is None
    assert "bilinear resize to 16x16 with antialiasing" in extractor.protocol()["resize"]


def test_without_a_declared_size_images_go_in_as_they_are(tmp_path):
    path = tmp_path / "encoder.pt"
    network = scripted(Encoder, path, input_size=None)
    extractor = load_extractor("torchscript", path)
    assert extractor.input_size is None and "at their own size" in extractor.protocol()["resize"]
    with torch.no_grad():
        for size in (8, 28, 32):
            x = images(3, size=size)
            torch.testing.assert_close(extractor(x), network(x))


def test_grey_network_takes_grey_images_only(tmp_path):
    path = tmp_path / "grey.pt"
    network = scripted(Encoder, path, channels=1)
    extractor = load_extractor("torchscript", path)
    assert extractor.channels == 1 and "RGB" not in extractor.protocol()["resize"]
    x = images(4, channels=1)
    with torch.no_grad():
        torch.testing.assert_close(extractor(x), network(resized(x, (16, 16))))
    with pytest.raises(ConfigError, match=r"takes images \(B, 1, H, W\)"):
        extractor(images(4, channels=3))


def test_scores_name_the_archive_by_its_sha256(tmp_path):
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    scripted(Encoder, first)
    scripted(Encoder, second, seed=1)  # the same network with other weights
    protocols = [load_extractor("torchscript", path).protocol() for path in (first, second)]
    assert [p["extractor"] for p in protocols] == ["torchscript", "torchscript"]
    assert [p["extractor_sha256"] for p in protocols] == [file_sha256(first), file_sha256(second)]
    assert protocols[0]["extractor_sha256"] != protocols[1]["extractor_sha256"]
    # built without load_extractor, the extractor still says which file it is
    assert EXTRACTORS.get("torchscript")(first).protocol()["extractor_sha256"] == file_sha256(first)


def test_fid_through_scorer_is_the_frechet_distance_of_the_features(tmp_path):
    path = tmp_path / "encoder.pt"
    network = scripted(Encoder, path)
    real, fake = images(48, seed=2), images(48, seed=3, scale=0.5)  # two different image distributions
    scorer = Scorer(load_extractor("torchscript", path), batch_size=16, kid_subset_size=16, kid_subsets=5)
    scorer.add_real(real.split(16), reference="real images")
    results = scorer.score(ImageSet(fake), num_samples=len(fake), seed=0)
    gaussians = []
    with torch.no_grad():
        for x in (real, fake):
            features = network(resized(x, (16, 16)))  # (48, 6), the network's own
            sums = ClassGaussians(1, features.shape[1])
            sums.add(features, torch.zeros(len(features), dtype=torch.long))
            gaussians.append(sums.gaussian(0))  # mean (6,), unbiased covariance (6, 6)
    expected = frechet_distance(*gaussians[0], *gaussians[1])
    assert results["fid"] > 0 and expected > 0
    assert results["fid"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    protocol = scorer.protocol(len(fake), seed=0)
    assert protocol["extractor"] == "torchscript" and protocol["extractor_sha256"] == file_sha256(path)


def write_nothing(path: Path) -> None:
    """Leaves `path` missing."""


def write_state_dict(path: Path) -> None:
    """The encoder's state dict, as torch.save writes weights."""
    torch.save(Encoder().state_dict(), path)


def write_pickled_module(path: Path) -> None:
    """The whole encoder pickled by torch.save: a Python object, not a TorchScript archive."""
    torch.save(Encoder(), path)


def write_junk(path: Path) -> None:
    """Bytes torch never wrote."""
    path.write_bytes(b"not a network")


@pytest.mark.parametrize(
    ("write", "says"),
    [
        (write_nothing, "no TorchScript network at"),
        (write_state_dict, "holds a torch.save file"),
        (write_pickled_module, "holds a torch.save file"),
        (write_junk, "is not a TorchScript archive"),
        (lambda path: scripted(FeatureMap, path), "not float features (B, F)"),
        (lambda path: scripted(Score, path), "not float features (B, F)"),
    ],
    ids=["missing", "state-dict", "pickled-module", "junk", "feature-map", "one-number"],
)
def test_unusable_files_are_one_line(tmp_path, write, says):
    path = tmp_path / "network.pt"
    write(path)
    with pytest.raises(DataError) as caught:
        load_extractor("torchscript", path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and says in message


def test_features_that_depend_on_the_image_size_are_one_line(tmp_path):
    path = tmp_path / "flattened.pt"
    scripted(Flattened, path)
    extractor = load_extractor("torchscript", path)  # probed at one size (64), declaring no input_size
    with pytest.raises(DataError) as caught:
        extractor(images(2, size=28))
    message = str(caught.value)
    assert "\n" not in message and "input_size" in message and str(path) in message


# ------------------------------------------------------------------------------------ from the command line
def test_build_extractor_takes_an_extractor_by_name(tmp_path):
    path = tmp_path / "encoder.pt"
    scripted(Encoder, path)
    extractor = build_extractor(3, extractor="torchscript", extractor_weights=path)
    assert extractor.protocol()["extractor"] == "torchscript"
    for half in ({"extractor": "torchscript"}, {"extractor_weights": path}):
        with pytest.raises(ConfigError, match="go together"):
            build_extractor(3, **half)
    with pytest.raises(ConfigError, match="both choose the features"):
        build_extractor(3, extractor="torchscript", extractor_weights=path, fid_weights=path)


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    """A folder of 8 RGB 16x16 PNGs, a run directory holding a one-iteration GAN's last.ckpt, and an encoder."""
    base = tmp_path_factory.mktemp("rgb")
    data = base / "images"
    data.mkdir()
    pixels = torch.randint(0, 256, (8, 16, 16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image.numpy()).save(data / f"{i:03d}.png")
    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8, channels=3, image_size=16)
    fakes = torch.rand(32, 3, 16, 16) * 2 - 1
    run = base / "run"
    trainer = cpu_trainer(run, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, DataLoader(TensorDataset(fakes, torch.zeros(32, dtype=torch.long)), batch_size=16))
    (run / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    encoder = base / "encoder.pt"
    scripted(Encoder, encoder)
    return {"data": data, "run": run, "encoder": encoder}


def test_evaluate_scores_with_the_named_extractor(rgb_run, capsys):
    run, encoder = rgb_run["run"], rgb_run["encoder"]
    flags = ["--dataset", "folder", "--data-dir", str(rgb_run["data"]), "--extractor", "torchscript",
             "--extractor-weights", str(encoder), "-n", "10", "--reference", "train"]  # fmt: skip
    assert evaluate_main([str(run), *flags]) == 0
    [row] = json.loads((run / "evaluation.json").read_text())
    assert row["protocol"]["extractor"] == "torchscript"
    assert row["protocol"]["extractor_sha256"] == file_sha256(encoder) and row["fid"] > 0
    capsys.readouterr()
    assert evaluate_main(["--ckpt", str(run / "checkpoints" / "last.ckpt"), *flags]) == 0
    [printed] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert printed["protocol"] == row["protocol"] and printed["fid"] == round(row["fid"], 4)


def test_evaluate_refuses_a_half_or_unknown_extractor_in_one_line(rgb_run, capsys):
    flags = ["--ckpt", str(rgb_run["run"] / "checkpoints" / "last.ckpt"), "--dataset", "folder", "--data-dir",
             str(rgb_run["data"]), "-n", "10"]  # fmt: skip
    capsys.readouterr()
    assert evaluate_main([*flags, "--extractor", "torchscript"]) == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert "--extractor NAME and --extractor-weights PATH go together" in err
    with pytest.raises(SystemExit) as caught:  # argparse's own refusal, listing the registered names
        evaluate_main([*flags, "--extractor", "vgg", "--extractor-weights", str(rgb_run["encoder"])])
    assert caught.value.code == 2 and "torchscript" in capsys.readouterr().err


def test_train_scores_with_the_named_extractor(tmp_path, fake_mnist_dir):
    classifier = tmp_path / "classifier.pt"
    mnist_classifier_file(classifier)
    encoder = tmp_path / "grey.pt"
    scripted(Encoder, encoder, channels=1)
    argv = ["--data-dir", str(fake_mnist_dir), "--max-steps", "2", "--batch-size", "16", "--latent-dim", "8",
            "--accelerator", "cpu", "--log-dir", str(tmp_path), "--name", "ts", "--eval-every", "2",
            "--eval-samples", "32", "--classifier", str(classifier), "--extractor", "torchscript",
            "--extractor-weights", str(encoder)]  # fmt: skip
    assert train_main(argv) == 0
    [record] = [json.loads(line) for line in open(tmp_path / "ts" / "version_0" / "metrics.jsonl")]
    assert record["protocol"]["extractor"] == "torchscript"
    assert record["protocol"]["extractor_sha256"] == file_sha256(encoder)
    assert record["protocol"]["classes_extractor"] == "mnist_classifier" and "modes" in record  # the classifier's
