"""Frozen feature extractors chosen by name: the MNIST classifier (per channel for Stacked MNIST), the FID Inception
of published scores (torch-fidelity's TF-ported Inception v3) or torchvision's Inception, each from a local weights
file whose SHA-256 every score records; nothing is ever downloaded."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from gan_lightning.core.errors import ConfigError, DataError, first_line
from gan_lightning.core.files import load_weights_file
from gan_lightning.core.options import call_with
from gan_lightning.core.registry import Registry
from gan_lightning.metrics.classifier import TRAIN_HINT, MNISTClassifier, load_classifier
from gan_lightning.metrics.statistics import (
    CLASS_STATISTICS,
    STACKED_STATISTICS,
    class_statistics,
    stacked_mode_statistics,
)

Tensor = torch.Tensor
PathLike = str | Path

log = logging.getLogger("gan_lightning.metrics")

INCEPTION_SIZE = 299
# The TF-ported Inception v3 ("2015-12-05") of published FIDs. torch-fidelity and pytorch-fid publish the same
# state_dict under these two names; as torch.hub does, the name carries the first hex digits of the file's SHA-256.
FID_INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
FID_INCEPTION_SHA256 = "6726825d"
FID_LAYOUT = "FID Inception layout"  # what `weights_kind` calls a state_dict of torch-fidelity's network
FID_WEIGHTS_HINT = (
    f"pass --fid-weights PATH to the FID Inception weights ({FID_INCEPTION_FILES[0]} of torch-fidelity or "
    f"{FID_INCEPTION_FILES[1]} of pytorch-fid; see the README); nothing is downloaded"
)
# Accept FID-Inception-shaped weights whose hash is not the published one (random weights in tests, research).
UNCHECKED_HINT = "pass --fid-weights-unchecked to use them anyway (numbers then are not comparable with papers)"


# How training evaluates sample quality (the train command's evaluation flags).


# ------------------------------------------------------------------------------------------------- extractors
class FeatureExtractor(nn.Module):
    """A frozen network mapping images (B, C, H, W) in [-1, 1] to features (B, num_features).

    It never leaves eval mode: Lightning calls `.train()` on the LightningModule (and so on anything attached to
    it) at every epoch start, which would otherwise switch on dropout and BatchNorm statistic updates here and
    silently change the features between evaluations.
    """

    num_features: int
    num_classes: int | None = None  # set by extractors that also give class probabilities
    statistic_names: tuple[str, ...] = ()  # the keys `statistics` returns
    # What a score measured with this extractor must say about it (`protocol`); `load_extractor` sets the name
    # and the weights file's hash, each class says how it brings images to its input.
    name: str = ""
    weights_sha256: str | None = None
    resize: str = ""

    def protocol(self) -> dict[str, str | None]:
        """`extractor`, `extractor_sha256` (of its weights file) and `resize`: how these features were made."""
        return {"extractor": self.name, "extractor_sha256": self.weights_sha256, "resize": self.resize}

    def freeze(self) -> FeatureExtractor:
        """Eval mode, and no parameter takes gradients; subclasses call this at the end of `__init__`."""
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stay in eval mode whatever `mode` is (see the class docstring)."""
        return super().train(False)

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features (B, num_features) and class probabilities (B, ...), or None without a classifier head."""
        return self(x), None

    def statistics(self, probs: Tensor) -> dict[str, float]:
        """Mode statistics of all generated samples' class probabilities (none without a classifier head)."""
        return {}


class MNISTClassifierFeatures(FeatureExtractor):
    """An `MNISTClassifier`'s penultimate activations as features, and its softmax as class probabilities."""

    resize = "float images in [-1, 1], bilinear to 28x28 when not 28x28 (no antialiasing)"

    def __init__(self, classifier: MNISTClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features
        self.num_classes = classifier.num_classes
        self.statistic_names = CLASS_STATISTICS
        self.freeze()

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ConfigError(f"the MNIST classifier scores grey images (B, 1, H, W), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, F) of grey images (B, 1, H, W) in [-1, 1]."""
        self._check(x)
        return self.classifier.features(x)

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features (B, F) and class probabilities (B, 10) from one pass through the classifier."""
        self._check(x)
        features = self.classifier.features(x)  # (B, F)
        return features, self.classifier.head(features).softmax(dim=1)  # (B, F), (B, 10)

    def statistics(self, probs: Tensor) -> dict[str, float]:
        """`modes`, `class_kl` and `inception_score` of probabilities (N, 10) (see `class_statistics`)."""
        return class_statistics(probs)


class StackedMNISTFeatures(FeatureExtractor):
    """Stacked MNIST through an `MNISTClassifier`, one channel at a time.

    Features are the three channels' penultimate activations side by side (B, 3F); each channel's softmax gives
    its digit, and the three digits form one of 1000 modes (`stacked_mode_statistics`).
    """

    resize = "each channel as a grey image: float in [-1, 1], bilinear to 28x28 when not 28x28 (no antialiasing)"

    def __init__(self, classifier: MNISTClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = 3 * classifier.num_features
        self.num_classes = classifier.num_classes**3
        self.statistic_names = STACKED_STATISTICS
        self.freeze()

    def _per_channel(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(f"Stacked MNIST images are (B, 3, H, W), got {tuple(x.shape)}")
        b, c, h, w = x.shape
        return self.classifier.features(x.reshape(b * c, 1, h, w))  # (3B, F), channel-major within each image

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, 3F) of images (B, 3, H, W) in [-1, 1]."""
        return self._per_channel(x).reshape(len(x), -1)

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features (B, 3F) and per-channel digit probabilities (B, 3, 10)."""
        features = self._per_channel(x)  # (3B, F)
        probs = self.classifier.head(features).softmax(dim=1)  # (3B, 10)
        return features.reshape(len(x), -1), probs.reshape(len(x), 3, -1)

    def statistics(self, probs: Tensor) -> dict[str, float]:
        """`modes` (of 1000) and `mode_kl` of per-channel probabilities (N, 3, 10)."""
        return stacked_mode_statistics(probs)


class WithClassProbabilities(FeatureExtractor):
    """Features from one extractor (Inception) and class probabilities and statistics from another (a classifier)."""

    def __init__(self, features: FeatureExtractor, classes: FeatureExtractor) -> None:
        super().__init__()
        self.features, self.classes = features, classes
        self.num_features = features.num_features
        self.num_classes = classes.num_classes
        self.statistic_names = classes.statistic_names
        self.freeze()

    def forward(self, x: Tensor) -> Tensor:
        """The feature extractor's features (B, F)."""
        return self.features(x)

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features from the first extractor, class probabilities from the second."""
        return self.features(x), self.classes.extract(x)[1]

    def statistics(self, probs: Tensor) -> dict[str, float]:
        """The classifier's statistics."""
        return self.classes.statistics(probs)

    def protocol(self) -> dict[str, str | None]:
        """The feature extractor's protocol, and which classifier gave the class statistics."""
        classes = self.classes.protocol()
        return {**self.features.protocol(), "classes_extractor": classes["extractor"],
                "classes_extractor_sha256": classes["extractor_sha256"]}  # fmt: skip


class FIDInceptionFeatures(FeatureExtractor):
    """The Inception v3 of published FIDs: torch-fidelity's `FeatureExtractorInceptionV3` (the TF graph of
    2015-12-05 ported to PyTorch, as pytorch-fid, torchmetrics and clean-fid use it), its 2048 pool features for
    FID/KID/PRDC and its 1008 unbiased logits for the Inception Score.

    Images go in as torch-fidelity takes them: quantised to uint8 the way generator outputs are saved as PNGs
    (x * 127.5 + 128, clamped, truncated; a real uint8 image comes back exactly), grey repeated to RGB, then
    torch-fidelity's TF1-compatible bilinear resize to 299x299 (no antialiasing) and (x - 128) / 128 inside.
    """

    num_features = 2048
    num_classes = 1008
    statistic_names = ("inception_score", "inception_score_std")
    resize = ("uint8 quantisation (x * 127.5 + 128, clamped, truncated), grey repeated to RGB, torch-fidelity's "
              "TF1-compatible bilinear resize to 299x299 without antialiasing")  # fmt: skip
    is_splits = 10  # the Inception Score's protocol (Salimans et al. 2016): mean and std over 10 splits

    def __init__(self, weights_path: PathLike) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        # torch-fidelity downloads only without a path; it unpickles with weights_only=False, so callers check the
        # file first (`load_fid_inception`: the published hash, or a weights-only load).
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=str(weights_path))  # fmt: skip
        # channels-last convolutions take oneDNN's fast path on CPU (see scripts/benchmark_fid.py); the features move
        # by float rounding only, as between devices
        self.net.to(memory_format=torch.channels_last)
        self.freeze()

    @staticmethod
    def to_uint8(x: Tensor) -> Tensor:
        """Images (B, 1 or 3, H, W) in [-1, 1] as the uint8 RGB images (B, 3, H, W) torch-fidelity reads."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # (B, 3, H, W)
        return (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)

    def forward(self, x: Tensor) -> Tensor:
        """Pool features (B, 2048) of images (B, 1 or 3, H, W) in [-1, 1]."""
        return self.extract(x)[0]

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Pool features (B, 2048) and unbiased logits (B, 1008), from one pass."""
        features, logits = self.net(self.to_uint8(x))  # resized to (B, 3, 299, 299) inside
        return features, logits

    def statistics(self, probs: Tensor) -> dict[str, float]:
        """`inception_score` and `inception_score_std` of the logits (N, 1008), by torch-fidelity's own function
        (10 splits after its fixed-seed shuffle)."""
        from torch_fidelity.metric_isc import isc_features_to_metric

        result = isc_features_to_metric(probs.cpu(), splits=min(self.is_splits, len(probs)))
        return {"inception_score": result["inception_score_mean"], "inception_score_std": result["inception_score_std"]}


class InceptionFeatures(FeatureExtractor):
    """torchvision Inception v3's 2048 pool features of images resized to 299x299 (grey images are repeated to RGB).

    FIDs from torchvision's ImageNet weights are consistent across a project's runs but not comparable with
    published FIDs, which use the TF-ported weights of `FIDInceptionFeatures`. Kept for runs configured with
    torchvision's file before that existed, and for when only torchvision's file is at hand.
    """

    num_features = 2048
    resize = "float images in [-1, 1], grey repeated to RGB, bilinear resize to 299x299 with antialiasing"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        # Pool features only: the classifier layers are dropped, so a forward pass returns (B, 2048).
        net.aux_logits, net.AuxLogits, net.fc = False, None, nn.Identity()
        # torchvision's weights are Google's, which take [-1, 1] inputs; `transform_input` would instead expect
        # ImageNet-normalised ones. Our images are already in [-1, 1].
        net.transform_input = False
        self.net = net
        self.freeze()

    def forward(self, x: Tensor) -> Tensor:
        """Pool features (B, 2048) of images (B, 1 or 3, H, W) in [-1, 1]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # (B, 3, H, W)
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False,
                              antialias=True)  # fmt: skip
        return self.net(x)  # (B, 3, 299, 299) -> (B, 2048)


def load_inception(weights_path: PathLike) -> InceptionFeatures:
    """Inception v3 features from a local torchvision state_dict file (raw, or under a "state_dict" key)."""
    from torchvision.models import inception_v3

    path = Path(weights_path)
    state = load_weights_file(path, "Inception weights", FID_WEIGHTS_HINT)
    try:
        state = state.get("state_dict", state)
        num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 1000
        aux = any(key.startswith("AuxLogits.") for key in state)
        # init_weights=False: the random init would be overwritten anyway, and scipy's truncnorm init is slow.
        net = inception_v3(weights=None, aux_logits=aux, init_weights=False, num_classes=num_classes)
        net.load_state_dict(state)
    except Exception as err:  # key and shape mismatches all mean "not a usable weights file"
        raise DataError(
            f"cannot load Inception v3 weights from {path} ({type(err).__name__}: {first_line(err)}); "
            f"{FID_WEIGHTS_HINT}"
        ) from err
    return InceptionFeatures(net)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: PathLike) -> str:
    """The SHA-256 (hex) of a file, computed once per process while its size and modification time stay."""
    stat = os.stat(path)
    return _sha256(os.fspath(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def weights_kind(state: Any) -> str:
    """What a loaded weights file holds, in words: the FID Inception's layout, torchvision's Inception, the MNIST
    classifier, a training checkpoint, or unknown weights."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a state_dict"
    if "pytorch-lightning_version" in state or "optimizer_states" in state:
        return "a training checkpoint"
    if isinstance(state.get("meta"), dict) and "arch" in state["meta"]:
        return f"a {state['meta']['arch']!r} classifier"
    state = state.get("state_dict", state)
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if isinstance(fc, Tensor) and "Mixed_7c.branch_pool.conv.weight" in state:
        if tuple(fc.shape) == (1008, 2048):
            return FID_LAYOUT
        return f"torchvision's ImageNet Inception v3 ({fc.shape[0]} classes)"
    return f"unknown weights ({len(state) if isinstance(state, dict) else 0} entries)"


def load_fid_inception(weights_path: PathLike, checked: bool = True, torchvision_ok: bool = True) -> FeatureExtractor:
    """The FID Inception from a local file carrying the published SHA-256, else a one-line `DataError` naming what
    the file is. `checked=False` accepts any file with the FID Inception's layout (random weights in tests).

    A torchvision Inception file, what `--fid-weights` took before, still loads as `InceptionFeatures`, with a
    one-time notice that its FIDs are not comparable with published ones; `torchvision_ok=False` refuses it (a
    caller that needs torch-fidelity's network itself).
    """
    path = Path(weights_path)
    if path.is_file() and file_sha256(path).startswith(FID_INCEPTION_SHA256):
        return FIDInceptionFeatures(path)
    state = load_weights_file(path, "FID Inception weights", FID_WEIGHTS_HINT)  # weights only: no code runs
    kind = weights_kind(state)
    if kind == FID_LAYOUT and not checked:
        return FIDInceptionFeatures(path)
    expected = f"expected the FID Inception, SHA-256 {FID_INCEPTION_SHA256}... ({' or '.join(FID_INCEPTION_FILES)})"
    if kind.startswith("torchvision's") and not torchvision_ok:
        raise DataError(f"{path} is not the FID Inception's layout: it holds {kind}; {expected}")
    if kind.startswith("torchvision's"):
        _notice(f"--fid-weights {path} holds {kind}: FIDs with it are not comparable with published ones; "
                f"{FID_WEIGHTS_HINT}")  # fmt: skip
        extractor = load_inception(path)
        extractor.name = "inception_torchvision"
        return extractor
    if kind == FID_LAYOUT:
        raise DataError(f"{path} has the FID Inception's layout but other weights (SHA-256 "
                        f"{file_sha256(path)[:16]}...); {expected}; {UNCHECKED_HINT}")  # fmt: skip
    raise DataError(f"{path} holds {kind}, not Inception weights; {expected}; nothing is downloaded")


EXTRACTORS: Registry[Callable[..., FeatureExtractor]] = Registry("feature extractor")


@EXTRACTORS.register("mnist_classifier")
def _mnist_classifier(path: PathLike) -> FeatureExtractor:
    return MNISTClassifierFeatures(load_classifier(path))


@EXTRACTORS.register("stacked_mnist_classifier")
def _stacked_mnist_classifier(path: PathLike) -> FeatureExtractor:
    return StackedMNISTFeatures(load_classifier(path))


@EXTRACTORS.register("inception_fid")
def _inception_fid(path: PathLike, checked: bool = True) -> FeatureExtractor:
    return load_fid_inception(path, checked)


@EXTRACTORS.register("inception_torchvision")
def _inception_torchvision(path: PathLike) -> FeatureExtractor:
    return load_inception(path)


def load_extractor(name: str, path: PathLike, checked: bool = True) -> FeatureExtractor:
    """The extractor registered as `name`, built from the weights file `path`, its protocol filled in; `checked=False`
    lets an extractor that checks its file's hash accept other weights of the right layout."""
    extractor = call_with(EXTRACTORS.get(name), {"checked": checked}, path=path)
    extractor.name = extractor.name or name  # an extractor that loaded as another kind says so itself
    extractor.weights_sha256 = file_sha256(path)
    return extractor


@functools.cache  # once per message and process, however many runs or callbacks ask
@rank_zero_only
def _notice(message: str) -> None:
    log.warning(message)


def reference_extractor(dataset: str | None) -> str | None:
    """The classifier-based extractor a dataset declares for its metrics (None: Inception, given weights)."""
    from gan_lightning.data import DATASETS

    return DATASETS.get(dataset).extractor if dataset in DATASETS else None


def classifier_datasets() -> list[str]:
    """The datasets whose metrics a classifier scores."""
    from gan_lightning.data import DATASETS

    return [name for name in DATASETS.names() if DATASETS.get(name).extractor is not None]


def build_extractor(
    channels: int,
    *,
    classifier: PathLike | None = None,
    fid_weights: PathLike | None = None,
    dataset: str | None = None,
    fid_weights_unchecked: bool = False,
) -> FeatureExtractor | None:
    """The feature extractor for a dataset's metrics, or None (with a one-time notice) when there is none.

    Datasets that declare a classifier extractor (`DatasetSpec.extractor`: MNIST, Stacked MNIST) use the MNIST
    classifier at `classifier` (per channel for Stacked MNIST);
    with `fid_weights` the FID Inception gives the features (any FID-Inception-shaped file with
    `fid_weights_unchecked`) and the classifier, when given, still gives the modes.
    Grey images of an unnamed dataset use the classifier when given. Nothing is ever downloaded.
    """
    classes = None
    if classifier is not None:
        name = reference_extractor(dataset) or ("mnist_classifier" if channels == 1 else None)
        if name is None:
            raise ConfigError(f"--classifier scores MNIST-like data ({', '.join(classifier_datasets())}); "
                              f"--dataset {dataset} has {channels}-channel images: drop --classifier")  # fmt: skip
        classes = load_extractor(name, classifier)
    if fid_weights is not None:
        inception = load_extractor("inception_fid", fid_weights, checked=not fid_weights_unchecked)
        return WithClassProbabilities(inception, classes) if classes is not None else inception
    if classes is not None:
        return classes
    if channels == 1:
        _notice(f"sample-quality metrics are off: pass --classifier PATH ({TRAIN_HINT}) or --fid-weights PATH")
    else:
        _notice(f"sample-quality metrics are off for {channels}-channel images: {FID_WEIGHTS_HINT}")
    return None
