"""Frozen feature extractors chosen by name, and which one scores a dataset (`build_extractor`).

The base class and registry are in `base.py`; each family is one file that registers itself (`mnist.py`: the MNIST
classifier, per channel for Stacked MNIST; `inception.py`: the FID Inception of published scores and
torchvision's; `clip.py`, `dinov2.py`: CLIP and DINOv2 ViTs; `vgg16.py`: NVlabs' VGG16 of StyleGAN2-ADA's
precision and recall; `torchscript.py`: your own network), and this package imports every file in it;
`resizers.py` names the resizes that bring images to an extractor's input. Each extractor loads from a local
weights file whose SHA-256 every score records; nothing is ever downloaded.
"""

from __future__ import annotations

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.registry import import_submodules
from gan_lightning.metrics.classifier import TRAIN_HINT
from gan_lightning.metrics.extractors.base import (
    EXTRACTORS,
    FeatureExtractor,
    PathLike,
    WithClassProbabilities,
    file_sha256,
    load_extractor,
    notice_once,
)
from gan_lightning.metrics.extractors.inception import (
    FID_INCEPTION_FILES,
    FID_INCEPTION_SHA256,
    FID_WEIGHTS_HINT,
    INCEPTION_SIZE,
    FIDInceptionFeatures,
    InceptionFeatures,
    load_fid_inception,
    load_inception,
)
from gan_lightning.metrics.extractors.mnist import MNISTClassifierFeatures, StackedMNISTFeatures

__all__ = [
    "EXTRACTORS",
    "default_extractor_weights",
    "FID_INCEPTION_FILES",
    "FID_INCEPTION_SHA256",
    "FID_WEIGHTS_HINT",
    "INCEPTION_SIZE",
    "FIDInceptionFeatures",
    "FeatureExtractor",
    "InceptionFeatures",
    "MNISTClassifierFeatures",
    "StackedMNISTFeatures",
    "WithClassProbabilities",
    "build_extractor",
    "classifier_datasets",
    "file_sha256",
    "load_extractor",
    "load_fid_inception",
    "load_inception",
    "notice_once",
    "reference_extractor",
]


def reference_extractor(dataset: str | None) -> str | None:
    """The classifier-based extractor a dataset declares for its metrics (None: Inception, given weights)."""
    from gan_lightning.data import DATASETS

    return DATASETS.get(dataset).extractor if dataset in DATASETS else None


def default_extractor_weights(dataset: str, data_dir: str | PathLike) -> str:
    """The weights file of `dataset`'s own extractor when none was given: the one its extractor makes from the data
    (`weights_for`: the MNIST classifiers train once on the MNIST under `data_dir`, cached); one-line ConfigError
    for an extractor that cannot make its own."""
    name = reference_extractor(dataset)
    make = getattr(EXTRACTORS.get(name), "weights_for", None) if name else None
    if make is None:
        raise ConfigError(f"--dataset {dataset} is scored by its extractor {name}, which needs its weights file: pass "
                          "--classifier PATH")  # fmt: skip
    return str(make(data_dir))


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
    extractor: str | None = None,
    extractor_weights: PathLike | None = None,
    extractor_resize: str | None = None,
) -> FeatureExtractor | None:
    """The feature extractor for a dataset's metrics, or None (with a one-time notice) when there is none.

    Datasets that declare a classifier extractor (`DatasetSpec.extractor`: MNIST, Stacked MNIST) use the MNIST
    classifier at `classifier` (per channel for Stacked MNIST);
    with `fid_weights` the FID Inception gives the features (any FID-Inception-shaped file with
    `fid_weights_unchecked`) and the classifier, when given, still gives the modes; `extractor` (a name in
    `EXTRACTORS`) with its `extractor_weights` file gives the features the same way (`--fid-weights PATH` is
    `--extractor inception_fid --extractor-weights PATH`); `extractor_resize` names its input resize, where it
    offers a choice.
    Grey images of an unnamed dataset use the classifier when given. Nothing is ever downloaded.
    """
    if (extractor is None) != (extractor_weights is None):
        raise ConfigError("--extractor NAME and --extractor-weights PATH go together: give both or neither")
    if extractor is not None and fid_weights is not None:
        raise ConfigError("--extractor and --fid-weights both choose the features: drop one (--fid-weights PATH is "
                          "--extractor inception_fid --extractor-weights PATH)")  # fmt: skip
    if extractor_resize is not None and extractor is None and fid_weights is None:
        raise ConfigError(f"--extractor-resize {extractor_resize} chooses how the feature network's input is "
                          "resized: give --fid-weights PATH or --extractor NAME --extractor-weights PATH too, or drop "
                          "it")  # fmt: skip
    classes = None
    if classifier is not None:
        name = reference_extractor(dataset) or ("mnist_classifier" if channels == 1 else None)
        if name is None:
            raise ConfigError(f"--classifier scores MNIST-like data ({', '.join(classifier_datasets())}); "
                              f"--dataset {dataset} has {channels}-channel images: drop --classifier")  # fmt: skip
        classes = load_extractor(name, classifier)
    features = None
    if extractor is not None:
        features = load_extractor(
            extractor, extractor_weights, checked=not fid_weights_unchecked, resize=extractor_resize
        )
    elif fid_weights is not None:
        features = load_extractor(
            "inception_fid", fid_weights, checked=not fid_weights_unchecked, resize=extractor_resize
        )
    if features is not None:
        return WithClassProbabilities(features, classes) if classes is not None else features
    if classes is not None:
        return classes
    if channels == 1:
        notice_once(f"sample-quality metrics are off: pass --classifier PATH ({TRAIN_HINT}) or --fid-weights PATH")
    else:
        notice_once(f"sample-quality metrics are off for {channels}-channel images: {FID_WEIGHTS_HINT}")
    return None


import_submodules(__name__)  # every extractor file in this package registers itself
