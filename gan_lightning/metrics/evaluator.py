"""Scoring GANs against a dataset's reference images with everything the project measures (`Evaluator`): FID,
KID, precision/recall, density/coverage and mode statistics through `Scorer`, with the classifier also label accuracy
(conditional GANs) and code purity (InfoGAN); the reference statistics are cached across runs."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.core.files import atomic_write, load_weights_file, save_torch
from gan_lightning.data import DATASETS
from gan_lightning.metrics.callback import real_batches, real_labels
from gan_lightning.metrics.classifier import default_cache_dir
from gan_lightning.metrics.extractors import (
    FeatureExtractor,
    build_extractor,
    load_extractor,
)
from gan_lightning.metrics.protocols import Protocol
from gan_lightning.metrics.quality import REFERENCE_FEATURES
from gan_lightning.metrics.scorer import Scorer
from gan_lightning.training.gan import GAN
from gan_lightning.training.latents import Truncation

Tensor = torch.Tensor
REFERENCE_SPLITS = ("train", "val")  # the DataModule's train_set / val_set (CIFAR-10: train / test)


@torch.no_grad()
def predict(classifier: torch.nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """The classifier's predicted class for each image in [-1, 1]."""
    return torch.cat([classifier(chunk).argmax(1) for chunk in images.split(batch_size)])


def label_accuracy(gan: GAN, classifier: torch.nn.Module, per_class: int, seed: int = 0,
                   truncation: Truncation | float | None = None) -> float:  # fmt: skip
    """Conditional GAN: the fraction of samples asked for label y that the classifier calls y."""
    labels = torch.arange(gan.hparams.num_classes).repeat_interleave(per_class)
    rng = torch.Generator(gan.device).manual_seed(seed)
    latents = gan.latents.draw(len(labels), rng, gan.device, labels=labels)
    images = gan.sample(latents=latents, rng=rng, truncation=truncation)
    return (predict(classifier, images.cpu()) == labels).float().mean().item()


def code_purity(gan: GAN, classifier: torch.nn.Module, per_code: int, seed: int = 0,
                truncation: Truncation | float | None = None) -> tuple[float, list[int]]:  # fmt: skip
    """InfoGAN: how well categorical code values map to classes (mean share of each value's majority class).

    Returns the purity and the majority class of each code value; 1.0 with 10 distinct classes means the code
    learned the digits, unsupervised.
    """
    cat = torch.arange(gan.hparams.n_cat).repeat_interleave(per_code)
    rng = torch.Generator(gan.device).manual_seed(seed)
    latents = gan.latents.draw(len(cat), rng, gan.device, cat=cat)
    images = gan.sample(latents=latents, rng=rng, truncation=truncation)
    pred = predict(classifier, images.cpu()).view(gan.hparams.n_cat, per_code)
    counts = torch.stack([torch.bincount(row, minlength=10) for row in pred])  # (n_cat, 10)
    return (counts.max(1).values.sum() / pred.numel()).item(), counts.argmax(1).tolist()


def reference_set(dataset: str, data_dir: str, image_size: int, split: str = "val",
                  options: dict[str, Any] | None = None) -> Dataset:  # fmt: skip
    """A dataset's `split` ("train" or "val") at `image_size`, built with the run's dataset `options`."""
    if split not in REFERENCE_SPLITS:
        raise ConfigError(f"--reference must be one of {', '.join(REFERENCE_SPLITS)}, got {split!r}")
    spec = DATASETS.get(dataset)
    given = {k: v for k, v in (options or {}).items() if k != "data_dir"}  # the run's; `data_dir` is decided here
    dm = spec(data_dir, **{**given, "batch_size": 1, "image_size": image_size, "download": False})
    dm.setup("fit")
    source = getattr(dm, f"{split}_set", None)
    if source is None or len(source) == 0:
        raise DataError(f"--dataset {dataset} has no {split} images under {data_dir}; pick another --reference")
    return source


def reference_cache(extractor: FeatureExtractor, source: Tensor | Dataset, limit: int, name: str,
                    cache_dir: str | Path | None = None, max_features: int = REFERENCE_FEATURES) -> Path:  # fmt: skip
    """Where the reference statistics of these images under this extractor are cached: keyed by a SHA-256 of the
    images themselves (as the extractor receives them), the extractor's protocol (its weights' SHA-256 included),
    the reference's name and count, and the KID/PRDC subset rule; any change gives another file. The labels are
    hashed too: the per-class statistics (intra-class FID) depend on them. Images decoded from files on access
    are keyed by what they decode from (`fingerprint`: paths, sizes, modification times, decoding), so a cached
    reference is found without decoding the split again."""
    data = hashlib.sha256()
    fingerprint = getattr(source, "fingerprint", None)
    if callable(fingerprint):
        data.update(fingerprint(limit).encode())
    else:
        for batch in real_batches(source, limit, 500):
            data.update(batch.cpu().numpy().tobytes())
    labels = real_labels(source, limit)
    if labels is not None:
        data.update(labels.numpy().tobytes())
    # format 2: the per-class sums of labelled references are in the file
    key = {"data": data.hexdigest(), "reference": name, "num_reference": limit, **extractor.protocol(),
           "kid_prdc_reference": min(limit, max_features), "format": 2}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"reference-{extractor.name or 'features'}-{digest}.pt"


REAL_STATE_KEYS = ("fid_sum", "fid_cov_sum", "fid_num", "features")


def read_reference_cache(path: Path, limit: int) -> dict[str, Tensor] | None:
    """The reference statistics cached at `path` for `limit` images, or None after a one-line notice when the file
    is damaged (cut short, overwritten, inconsistent): a cache is derived data, so it is computed again."""
    try:
        state = load_weights_file(path, "reference statistics", "")
        fid_sum, cov, num, features = (state[key] for key in REAL_STATE_KEYS)
        dim = fid_sum.shape[0]
        consistent = (fid_sum.shape == (dim,) and cov.shape == (dim, dim) and int(num) == limit
                      and features.ndim == 2 and features.shape[1] == dim and 2 <= features.shape[0] <= limit
                      and all(bool(t.isfinite().all()) for t in (fid_sum, cov, features)))  # fmt: skip
        if "class_sum" in state:  # labelled references: the per-class sums of intra-class FID
            sums, covs, counts = (state[k] for k in ("class_sum", "class_cov_sum", "class_num"))
            classes = counts.shape[0]
            consistent = (consistent and sums.shape == (classes, dim) and covs.shape == (classes, dim, dim)
                          and int(counts.sum()) == limit)  # fmt: skip
        if "label_counts" in state:
            consistent = consistent and state["label_counts"].ndim == 1 and int(state["label_counts"].sum()) == limit
        if consistent:
            return state
        problem = "its statistics do not fit together"
    except (DataError, KeyError, TypeError, AttributeError, IndexError, ValueError, RuntimeError) as err:
        problem = (str(err).split(";")[0].replace(str(path), "it") if isinstance(err, DataError)
                   else f"{type(err).__name__}: {err}"[:120])  # fmt: skip
    print(f"the cached reference statistics {path} are damaged ({problem}); computing them again",
          file=sys.stderr)  # fmt: skip
    return None


class Evaluator:
    """Scores GANs against one dataset's reference images (`split`, at most `num_reference` of them); the real
    features are extracted once for all, and their statistics cached across runs (`reference_cache`).

    MNIST-like datasets use the MNIST classifier at `classifier_path` (it also reads labels and InfoGAN codes);
    with `fid_weights` the FID Inception gives the features (and the classifier, when given, the mode statistics),
    with `extractor` and `extractor_weights` the extractor of that name does, its input resized by
    `extractor_resize` where it offers a choice.
    """

    def __init__(
        self,
        classifier_path: str | Path | None,
        dataset: str,
        data_dir: str,
        image_size: int,
        *,
        fid_weights: str | Path | None = None,
        fid_weights_unchecked: bool = False,
        extractor: str | None = None,
        extractor_weights: str | Path | None = None,
        extractor_resize: str | None = None,
        split: str = "val",
        num_reference: int | None = None,
        options: dict[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        protocol: Protocol | None = None,
    ) -> None:
        spec = DATASETS.get(dataset)
        if fid_weights is None and extractor is None and extractor_weights is None and extractor_resize is None:
            if spec.extractor is None:
                raise ConfigError(f"--dataset {dataset} has no classifier to score it: pass evaluate.py --dataset "
                                  "mnist (and --data-dir) when its images are MNIST digits, else --fid-weights PATH "
                                  "(the FID Inception's weights file; see docs/evaluation.md) or --extractor NAME "
                                  "--extractor-weights PATH")  # fmt: skip
            features = load_extractor(spec.extractor, classifier_path)
        else:
            channels = spec.channels or (options or {}).get("channels") or 3
            features = build_extractor(channels, classifier=classifier_path if spec.extractor else None,
                                       fid_weights=fid_weights, dataset=dataset,
                                       fid_weights_unchecked=fid_weights_unchecked, extractor=extractor,
                                       extractor_weights=extractor_weights,
                                       extractor_resize=extractor_resize)  # fmt: skip
        classes = getattr(features, "classes", features)
        self.classifier = getattr(classes, "classifier", None)  # reads labels and codes; None on RGB data
        self.protocol_name = protocol.name if protocol is not None else None
        # the scoring path training-time metrics use too
        self.scorer = Scorer(features, **(protocol.scoring() if protocol is not None else {}))
        source = reference_set(dataset, data_dir, image_size, split, options)
        limit = len(source) if num_reference is None else min(num_reference, len(source))
        if limit < 2:  # a covariance needs two
            raise DataError(f"--dataset {dataset} has {limit} {split} image(s) under {data_dir}: too few to score "
                            f"against; pick another --reference or give more images")  # fmt: skip
        name = f"{dataset}/{split}"
        self.cache = reference_cache(features, source, limit, name, cache_dir, self.scorer.metrics.max_features)
        state = read_reference_cache(self.cache, limit) if self.cache.is_file() else None
        self.cached = state is not None
        labels = real_labels(source, limit)
        if state is not None:
            self.scorer.load_real_state(state, labels)
            self.scorer.reference = name
        else:
            self.scorer.add_real(real_batches(source, limit, 500), reference=name, total=limit, labels=labels)
            state = self.scorer.real_state()
            atomic_write(self.cache, lambda path: save_torch(state, path), "the reference statistics cache",
                         shared=True)  # fmt: skip

    def __call__(
        self, gan: GAN, num_samples: int = 5000, seed: int = 0, truncation: Truncation | float | None = None
    ) -> dict[str, Any]:
        """Every metric of `num_samples` samples from `gan` (fixed noise from `seed`, truncated as `truncation`, a
        `Truncation` or psi, says), and under `protocol` how they were measured."""
        results: dict[str, Any] = self.scorer.score(gan, num_samples, seed, truncation, per_class=True)
        if gan.hparams.conditional and self.classifier is not None:
            per_class = num_samples // gan.hparams.num_classes
            results["label_accuracy"] = label_accuracy(gan, self.classifier, per_class, seed, truncation)
        if gan.hparams.infogan and self.classifier is not None:
            results["code_purity"], results["code_classes"] = code_purity(
                gan, self.classifier, num_samples // 10, seed, truncation
            )
        results["protocol"] = self.scorer.protocol(num_samples, seed, truncation, gan.latents.num_classes)
        if self.protocol_name is not None:
            results["protocol"] = {"protocol_name": self.protocol_name, **results["protocol"]}
        return results


def evaluate(gan: GAN, classifier_path: str, data_dir: str, num_samples: int = 5000, seed: int = 0,
             dataset: str = "mnist", truncation: Truncation | float | None = None) -> dict[str, Any]:  # fmt: skip
    """Sample-quality metrics of `gan` against `dataset`'s validation images, with the project's classifier."""
    return Evaluator(classifier_path, dataset, data_dir, gan.hparams.image_size)(gan, num_samples, seed, truncation)
