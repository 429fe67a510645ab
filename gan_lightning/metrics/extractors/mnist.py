"""The MNIST classifier's features and class probabilities, for MNIST and (one channel at a time) Stacked MNIST,
registered as `mnist_classifier` and `stacked_mnist_classifier`."""

from __future__ import annotations

import torch

from gan_lightning.core.errors import ConfigError
from gan_lightning.metrics.classifier import MNISTClassifier, cached_classifier, load_classifier
from gan_lightning.metrics.extractors.base import EXTRACTORS, FeatureExtractor, PathLike
from gan_lightning.metrics.statistics import (
    CLASS_STATISTICS,
    STACKED_STATISTICS,
    class_statistics,
    stacked_mode_statistics,
)

Tensor = torch.Tensor


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


@EXTRACTORS.register("mnist_classifier")
def _mnist_classifier(path: PathLike) -> FeatureExtractor:
    return MNISTClassifierFeatures(load_classifier(path))


@EXTRACTORS.register("stacked_mnist_classifier")
def _stacked_mnist_classifier(path: PathLike) -> FeatureExtractor:
    return StackedMNISTFeatures(load_classifier(path))


# Both read one MNIST classifier, which a run without --classifier trains from the MNIST under its data folder
# (once, cached): an extractor's `weights_for(data_dir)` is how it makes its own weights file when none is given.
_mnist_classifier.weights_for = _stacked_mnist_classifier.weights_for = cached_classifier  # type: ignore[attr-defined]
