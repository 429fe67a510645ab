"""`Scorer`: the one scoring path training-time metrics and `evaluate.py` share, real features kept once, generated
images drawn from seeded latents in fixed-size chunks, and the intra-class FID of conditional generators."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gan_lightning.core.errors import ConfigError
from gan_lightning.metrics.extractors import FeatureExtractor
from gan_lightning.metrics.gaussians import ClassGaussians, frechet_distance
from gan_lightning.metrics.quality import SampleQualityMetrics
from gan_lightning.training.latents import Truncation

Tensor = torch.Tensor

# Per-class reference statistics (intra-class FID) hold num_classes (D, D) float64 sums: kept only up to this size
# (CIFAR-10 under the Inception, 10 x 2048^2 x 8 bytes = 335 MB, fits; 1000 Stacked MNIST modes do not).
CLASS_STATISTICS_BYTES = 2**30


def class_counts(labels: Tensor | None) -> Tensor | None:
    """Images per class (max label + 1,) of labels (N,), on the CPU; None without labels."""
    return torch.bincount(labels.cpu()) if labels is not None and len(labels) else None


class Scorer:
    """The one scoring path, for training-time metrics (`SampleQuality`) and `evaluate.py` alike: real features
    extracted once and kept, generated images from latents drawn with a given seed, sampled in fixed-size chunks,
    every metric computed; the same checkpoint, seed and sample count give the same numbers either way.

    With labelled real images and a conditional generator it also gives the intra-class FID (`intra_fid`, Miyato &
    Koyama 2018; BigGAN's and StudioGAN's iFID): the mean over classes c of the FID between n // num_classes images
    generated with label c and the real images of class c, same extractor, same formula."""

    def __init__(self, extractor: FeatureExtractor, *, batch_size: int = 500, **metric_options: Any) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.metrics = SampleQualityMetrics(extractor, **metric_options)
        self.batch_size = batch_size
        self.reference = "given real images"  # what the real images are, for the protocol (`add_real` says)
        self.real_classes: ClassGaussians | None = None  # per-class reference sums, when the real images have labels
        self.label_counts: Tensor | None = None  # images per class of the reference, when it has labels

    @property
    def has_real(self) -> bool:
        """Whether the real features are in."""
        return self.metrics.num_real > 0

    @torch.no_grad()
    def add_real(self, batches: Iterable[Tensor], reference: str | None = None, total: int | None = None,
                 seed: int = 0, labels: Tensor | None = None) -> None:  # fmt: skip
        """Extract and keep the features of real images, (B, C, H, W) batches in [-1, 1]; `reference` names them
        (e.g. "cifar10/train") in the protocol. With `total` (their number) above the metrics' `max_features`, KID
        and PRDC see a random subset of that size drawn with `seed`; FID sees all. `labels` (N,), the images' classes
        in batch order: also keep per-class statistics (intra-class FID)."""
        if reference is not None:
            self.reference = reference
        keep = None
        cap = self.metrics.max_features
        if total is not None and total > cap:
            keep = torch.zeros(total, dtype=torch.bool)
            keep[torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:cap]] = True
        classes, self.label_counts = None, class_counts(labels)
        if self.label_counts is not None:
            num_classes, dim = len(self.label_counts), self.metrics.extractor.num_features
            if num_classes * dim * dim * 8 <= CLASS_STATISTICS_BYTES:
                classes = ClassGaussians(num_classes, dim, self.metrics.fid.device)
        seen = 0
        for images in batches:
            mask = None if keep is None else keep[seen : seen + len(images)]
            features = self.metrics.update(images, real=True, keep=mask)
            if classes is not None:
                classes.add(features, labels[seen : seen + len(images)])
            seen += len(images)
        self.real_classes = classes

    def real_state(self) -> dict[str, Tensor]:
        """What the metrics keep of the real images, and the per-class sums when there are labels: cacheable."""
        classes = {} if self.real_classes is None else self.real_classes.state()
        counts = {} if self.label_counts is None else {"label_counts": self.label_counts}
        return {**self.metrics.real_state(), **classes, **counts}

    def load_real_state(self, state: dict[str, Tensor], labels: Tensor | None = None) -> None:
        """Restore `real_state()` instead of extracting the real images again. `labels` (N,), the real images'
        classes, give the counts a cache from before they were kept lacks (else its per-class sums hold them)."""
        self.metrics.load_real_state(state)
        self.real_classes = ClassGaussians.from_state(state, "cpu") if "class_sum" in state else None
        counts = state.get("label_counts")
        if counts is None:
            counts = class_counts(labels)
        if counts is None and self.real_classes is not None:
            counts = self.real_classes.num
        self.label_counts = None if counts is None else counts.cpu()

    def intra_fid_applies(self, num_classes: int, num_samples: int) -> bool:
        """Whether `score` gives `intra_fid` for a generator of `num_classes` classes (0: unconditional): the real
        images have labels of exactly these classes, at least 2 of each, and num_samples // num_classes >= 2."""
        classes = self.real_classes
        return (num_classes > 0 and classes is not None and classes.num_classes == num_classes
                and int(classes.num.min()) >= 2 and num_samples // num_classes >= 2)  # fmt: skip

    def protocol(self, num_samples: int, seed: int, truncation: Truncation | float | None = None,
                 num_classes: int = 0) -> dict[str, Any]:  # fmt: skip
        """How `score(gan, num_samples, seed, truncation)` measures: counts, reference, extractor, resize, seed,
        truncation (psi and threshold); for a generator of `num_classes` classes, how its labels were drawn
        (`labels_follow_reference`) and, with intra-class FID, the images per class on either side."""
        metrics = self.metrics
        truncation = Truncation.of(truncation)
        sampled = min(metrics.num_real, metrics.max_features)
        fields = {
            "num_generated": num_samples, "reference": self.reference, "num_reference": metrics.num_real,
            **metrics.extractor.protocol(), "seed": seed, "truncation": truncation.psi,
            "truncation_threshold": truncation.threshold, "kid_prdc_reference": sampled,
            "kid_prdc_generated": min(num_samples, metrics.max_features),
            "kid_subsets": metrics.kid_subsets, "kid_subset_size": min(metrics.kid_subset_size, sampled, num_samples),
        }  # fmt: skip
        if num_classes:
            fields["generated_labels"] = "reference" if self.labels_follow_reference(num_classes) else "uniform"
        if self.intra_fid_applies(num_classes, num_samples):
            fields["intra_fid_generated_per_class"] = num_samples // num_classes
            fields["intra_fid_reference_per_class"] = self.real_classes.num.tolist()
        return fields

    @torch.no_grad()
    def score(self, gan: Any, num_samples: int, seed: int, truncation: Truncation | float | None = None,
              per_class: bool = False) -> dict[str, Any]:  # fmt: skip
        """Every metric of `num_samples` images `gan.sample` draws from latents seeded with `seed`, their noise
        truncated when `truncation` (a `Truncation`, or psi) is given (so scores at several psi share their
        untruncated noise; threshold redraws continue the seeded stream);
        `intra_fid` when `intra_fid_applies`, with `per_class` also its per-class values `intra_fid_per_class`."""
        metrics = self.metrics.to(gan.device)
        # fixed inputs (noise and any labels / codes) from their own seed: scores differ only by the generator
        rng = torch.Generator(gan.device).manual_seed(seed)
        z = gan.latents.noise(num_samples, rng, gan.device)
        labels = self.generated_labels(gan.latents.num_classes, num_samples, rng)
        latents = gan.latents.draw(num_samples, rng, gan.device, z=z, labels=labels).input
        metrics.reset()
        try:
            for chunk in latents.split(self.batch_size):
                images = gan.sample(latents=chunk, rng=rng, truncation=truncation)  # (b, C, H, W) in [-1, 1]
                metrics.update(images.float(), real=False)
            results: dict[str, Any] = metrics.compute()
        finally:
            metrics.reset()
        if self.intra_fid_applies(gan.latents.num_classes, num_samples):
            values = self.intra_fid(gan, num_samples, seed, truncation)
            results["intra_fid"] = sum(values) / len(values)
            if per_class:
                results["intra_fid_per_class"] = values
        return results

    def labels_follow_reference(self, num_classes: int) -> bool:
        """Whether a generator of `num_classes` classes is scored on labels drawn as often as the reference holds
        them (StyleGAN2-ADA's metrics draw each label from the dataset): when the reference's labels are classes
        of that generator; else they are drawn uniformly. Labels all 0 are a dataset without classes (CelebA, a
        folder of photos), not a reference of one class."""
        counts = self.label_counts
        return num_classes > 0 and counts is not None and 1 < len(counts) <= num_classes

    def generated_labels(self, num_classes: int, n: int, rng: torch.Generator) -> Tensor | None:
        """The labels of `n` generated images (None: the latent space draws them uniformly), from `rng`."""
        if not self.labels_follow_reference(num_classes):
            return None
        weights = self.label_counts.to(rng.device, torch.float64)  # (C,), as often as the reference has each class
        return torch.multinomial(weights, n, replacement=True, generator=rng)

    @torch.no_grad()
    def intra_fid(
        self, gan: Any, num_samples: int, seed: int, truncation: Truncation | float | None = None
    ) -> list[float]:
        """FID of each class c: num_samples // num_classes images generated with label c (noise seeded with `seed`)
        against the real images of class c; NaN for every class when the generated images or features are not finite."""
        num_classes = gan.latents.num_classes
        labels = torch.arange(num_classes, device=gan.device).repeat_interleave(num_samples // num_classes)
        rng = torch.Generator(gan.device).manual_seed(seed)
        latents = gan.latents.draw(len(labels), rng, gan.device, labels=labels).input
        extractor = self.metrics.extractor
        fake = ClassGaussians(num_classes, extractor.num_features, gan.device)
        finite = torch.ones((), dtype=torch.bool, device=gan.device)
        for chunk, chunk_labels in zip(latents.split(self.batch_size), labels.split(self.batch_size), strict=True):
            images = gan.sample(latents=chunk, rng=rng, truncation=truncation).float()  # (b, C, H, W) in [-1, 1]
            finite &= torch.isfinite(images).all()  # a uint8-quantising extractor would see NaNs as black
            fake.add(self.metrics.extract(images)[0], chunk_labels)
        if not (finite & torch.isfinite(fake.cov_sum).all()):  # a diverged generator: LAPACK would crash on NaNs
            return [float("nan")] * num_classes
        real = self.real_classes.to(gan.device)
        return [frechet_distance(*real.gaussian(c), *fake.gaussian(c)) for c in range(num_classes)]
