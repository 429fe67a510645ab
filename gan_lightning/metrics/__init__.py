"""Sample-quality metrics, one package: feature extractors by name (`extractors/`), mode statistics
(`statistics.py`), FID/KID/PRDC (`quality.py`) and the one scoring path `Scorer` (`scorer.py`), k-NN
precision/recall and density/coverage (`manifold.py`), and the training callback `SampleQuality` with the
evaluation options (`callback.py`)."""

from gan_lightning.metrics.callback import SampleQuality, options
from gan_lightning.metrics.extractors import (
    EXTRACTORS,
    FID_INCEPTION_FILES,
    FID_INCEPTION_SHA256,
    FID_WEIGHTS_HINT,
    INCEPTION_SIZE,
    FeatureExtractor,
    FIDInceptionFeatures,
    InceptionFeatures,
    MNISTClassifierFeatures,
    StackedMNISTFeatures,
    WithClassProbabilities,
    build_extractor,
    classifier_datasets,
    default_extractor_weights,
    file_sha256,
    load_extractor,
    load_fid_inception,
    load_inception,
    reference_extractor,
)
from gan_lightning.metrics.manifold import PRDC, DensityCoverage, PrecisionRecall
from gan_lightning.metrics.quality import MANIFOLD_METRICS, SampleQualityMetrics
from gan_lightning.metrics.scorer import Scorer
from gan_lightning.metrics.statistics import (
    CLASS_STATISTICS,
    CONFIDENCE,
    MIN_MODE_FRACTION,
    STACKED_STATISTICS,
    class_statistics,
    stacked_mode_statistics,
)

__all__ = [
    "CLASS_STATISTICS",
    "CONFIDENCE",
    "EXTRACTORS",
    "FID_INCEPTION_FILES",
    "FID_INCEPTION_SHA256",
    "FID_WEIGHTS_HINT",
    "INCEPTION_SIZE",
    "MANIFOLD_METRICS",
    "MIN_MODE_FRACTION",
    "PRDC",
    "STACKED_STATISTICS",
    "DensityCoverage",
    "FIDInceptionFeatures",
    "FeatureExtractor",
    "InceptionFeatures",
    "MNISTClassifierFeatures",
    "PrecisionRecall",
    "SampleQuality",
    "SampleQualityMetrics",
    "Scorer",
    "StackedMNISTFeatures",
    "WithClassProbabilities",
    "build_extractor",
    "default_extractor_weights",
    "class_statistics",
    "classifier_datasets",
    "file_sha256",
    "load_extractor",
    "load_fid_inception",
    "load_inception",
    "options",
    "reference_extractor",
    "stacked_mode_statistics",
]
