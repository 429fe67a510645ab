"""Frozen feature extractors chosen by name: the MNIST classifier (per channel for Stacked MNIST) or Inception
from a local weights file; nothing is ever downloaded."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from gan_lightning.classifier import TRAIN_HINT, MNISTClassifier, load_classifier
from gan_lightning.errors import ConfigError, DataError, first_line, load_weights_file
from gan_lightning.metrics.statistics import (
    CLASS_STATISTICS,
    STACKED_STATISTICS,
    class_statistics,
    stacked_mode_statistics,
)
from gan_lightning.registry import Registry

Tensor = torch.Tensor
PathLike = str | Path

log = logging.getLogger("gan_lightning.metrics")

INCEPTION_SIZE = 299
FID_WEIGHTS_HINT = (
    "pass --fid-weights PATH to a local torchvision inception_v3 state_dict (e.g. inception_v3_google-0cc3c7bd.pth); "
    "nothing is downloaded"
)


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


class InceptionFeatures(FeatureExtractor):
    """torchvision Inception v3's 2048 pool features of images resized to 299x299 (grey images are repeated to RGB).

    FIDs from torchvision's ImageNet weights are consistent across a project's runs but not comparable with
    published FIDs, which use the TF-ported "pt_inception" weights of pytorch-fid / torch-fidelity.
    """

    num_features = 2048

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


EXTRACTORS: Registry[Callable[[PathLike], FeatureExtractor]] = Registry("feature extractor")


@EXTRACTORS.register("mnist_classifier")
def _mnist_classifier(path: PathLike) -> FeatureExtractor:
    return MNISTClassifierFeatures(load_classifier(path))


@EXTRACTORS.register("stacked_mnist_classifier")
def _stacked_mnist_classifier(path: PathLike) -> FeatureExtractor:
    return StackedMNISTFeatures(load_classifier(path))


@EXTRACTORS.register("inception")
def _inception(path: PathLike) -> FeatureExtractor:
    return load_inception(path)


def load_extractor(name: str, path: PathLike) -> FeatureExtractor:
    """The extractor registered as `name`, built from the weights file `path`."""
    return EXTRACTORS.get(name)(path)


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
) -> FeatureExtractor | None:
    """The feature extractor for a dataset's metrics, or None (with a one-time notice) when there is none.

    Datasets that declare a classifier extractor (`DatasetSpec.extractor`: MNIST, Stacked MNIST) use the MNIST
    classifier at `classifier` (per channel for Stacked MNIST);
    with `fid_weights` Inception gives the features and the classifier, when given, still gives the modes.
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
        inception = load_extractor("inception", fid_weights)
        return WithClassProbabilities(inception, classes) if classes is not None else inception
    if classes is not None:
        return classes
    if channels == 1:
        _notice(f"sample-quality metrics are off: pass --classifier PATH ({TRAIN_HINT}) or --fid-weights PATH")
    else:
        _notice(f"sample-quality metrics are off for {channels}-channel images: {FID_WEIGHTS_HINT}")
    return None
