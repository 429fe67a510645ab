"""FID, KID, precision/recall, density/coverage and the extractor's mode statistics of generated vs real images,
from features kept in bounded memory (`SampleQualityMetrics`); `scorer.py` feeds it."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd
from torchmetrics.utilities import dim_zero_cat

from gan_lightning.core.errors import ConfigError
from gan_lightning.metrics.extractors import FeatureExtractor
from gan_lightning.metrics.gaussians import frechet_distance
from gan_lightning.metrics.manifold import PRDC, prdc

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------------- metrics
class _Precomputed(nn.Module):
    """The `feature` network torchmetrics calls in `update`: our features arrive already extracted."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


MANIFOLD_METRICS = ("precision", "recall", "density", "coverage")
# KID and precision/recall/density/coverage compare at most this many reference images (a seeded random subset) with
# at most this many generated ones (the first: the generated stream is i.i.d.); FID sees them all through running
# sums. So scoring memory is bounded whatever the sample count; a named protocol may raise it (pr50k3_full: 200,000).
REFERENCE_FEATURES = 10_000
# Images per extractor forward pass: a CPU Inception holds about 20 MB of activations per image at 299x299, so a
# CPU batch stays small; a GPU's memory is larger and its throughput wants big batches.
EXTRACT_BATCH = {"cpu": 64}
EXTRACT_BATCH_DEFAULT = 500


def kernel_distance(real: Tensor, fake: Tensor, subsets: int, subset_size: int, seed: int) -> dict[str, float]:
    """`kid` and `kid_std`: the polynomial-kernel MMD of `subsets` random subsets of `subset_size` (at most either
    set's size) drawn from real (N, D) and fake (M, D) features, as torchmetrics' `KernelInceptionDistance.compute`
    draws and computes them (same values), from a fixed `seed` in a forked RNG so the caller's stream is untouched."""
    size = min(subset_size, len(real), len(fake))
    scores = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(subsets):
            f_real = real[torch.randperm(len(real))[:size]]
            f_fake = fake[torch.randperm(len(fake))[:size]]
            scores.append(poly_mmd(f_real, f_fake))
    values = torch.stack(scores)
    return {"kid": float(values.mean()), "kid_std": float(values.std(unbiased=False))}


class SampleQualityMetrics(nn.Module):
    """FID and KID (torchmetrics), precision/recall (k=3) and density/coverage (k=5) between real and generated
    images, plus the extractor's mode statistics when it gives class probabilities. Real features are kept across
    `reset()`: they are extracted once per run.

    The extractor runs once per batch and both torchmetrics metrics receive its features through a pass-through
    `feature` network, so FID, KID and the class statistics share one forward pass (Inception on a CPU is slow).
    KID averages `kid_subsets` subsets of `kid_subset_size` (half torchmetrics' 100 subsets, for CPU speed; `kid_std`
    shows their spread), drawn from a fixed seed in a forked RNG: repeatable, and the training RNG is left alone.
    Memory is bounded whatever the sample count: FID keeps float64 running sums, KID and PRDC share one store of at
    most `max_features` real and generated features each, and the extractor sees `batch_size_on(device)` images
    at a time.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        *,
        kid_subset_size: int = 1000,
        kid_subsets: int = 50,
        seed: int = 0,
        max_features: int = REFERENCE_FEATURES,
        extract_batch: int | None = None,
    ) -> None:
        super().__init__()
        if kid_subset_size < 2 or kid_subsets < 1:
            raise ConfigError(f"need kid_subset_size >= 2 and kid_subsets >= 1, got {kid_subset_size}, {kid_subsets}")
        if max_features < 10 or (extract_batch is not None and extract_batch < 1):
            raise ConfigError(f"need max_features >= 10 and a positive extract_batch, got {max_features}, "
                              f"{extract_batch}")  # fmt: skip
        self.extractor = extractor
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self.max_features = max_features
        self.extract_batch = extract_batch
        feature = _Precomputed(extractor.num_features)
        # sync_on_compute=False: only global rank zero evaluates, and a cross-rank gather would wait forever.
        common = {"feature": feature, "reset_real_features": False, "sync_on_compute": False}
        self.fid = FrechetInceptionDistance(**common)
        self.kid_subsets = kid_subsets
        # one feature store for KID's subsets and for one k-NN pass of precision/recall (k=3), density/coverage (k=5)
        self.zero_features_noted = False
        self.manifold = PRDC(k_pr=3, k_dc=5, reset_real_features=False, sync_on_compute=False,
                             max_samples=max(max_features, 6))  # fmt: skip
        self._fake_probs: list[Tensor] = []
        # whether every generated pixel so far was finite, on the device (no sync per batch): an extractor that
        # quantises to uint8 turns a diverged generator's NaN images into black ones, whose features are finite
        self._fake_finite: Tensor | None = None

    @property
    def num_real(self) -> int:
        """Real images whose features are cached."""
        return int(self.fid.real_features_num_samples)

    @property
    def num_fake(self) -> int:
        """Generated images seen since the last `reset()`."""
        return int(self.fid.fake_features_num_samples)

    @property
    def fake_kept(self) -> int:
        """Generated features KID and PRDC hold (at most `max_features`): the store's own count."""
        return self.manifold.stored(real=False)

    def batch_size_on(self, device: torch.device) -> int:
        """Images per extractor forward pass on `device`: `extract_batch`, else the device's default."""
        return self.extract_batch or EXTRACT_BATCH.get(device.type, EXTRACT_BATCH_DEFAULT)

    @torch.no_grad()
    def extract(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """The extractor's features (B, D) and class probabilities (or None) of float images (B, C, H, W) in
        [-1, 1], run on slices of `batch_size_on(device)`."""
        parts = [self.extractor.extract(part) for part in images.split(self.batch_size_on(images.device))]
        features = torch.cat([f for f, _ in parts])  # (B, D)
        return features, None if parts[0][1] is None else torch.cat([p for _, p in parts])

    @torch.no_grad()
    def update(self, images: Tensor, real: bool, keep: Tensor | None = None) -> Tensor:
        """Add a batch of float images (B, C, H, W) in [-1, 1], real or generated; `keep` (B,) bool: the real images
        KID and precision/recall/density/coverage also see (FID sees all; of the generated, the first
        `max_features`). The extractor runs on slices of `batch_size_on(device)`. Returns the features (B, D)."""
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1], got {images.dtype} (uint8 data: use to_signed)")
        images = images.to(self.fid.device, torch.float32)
        if not real:
            finite = torch.isfinite(images).all()
            self._fake_finite = finite if self._fake_finite is None else self._fake_finite & finite
        features, probs = self.extract(images)
        self.fid.update(features, real=real)
        if real:
            sample = features if keep is None else features[keep.to(features.device)]
        else:
            sample = features[: max(self.max_features - self.fake_kept, 0)]
        if len(sample):
            self.manifold.update(sample, real=real)
        if probs is not None and not real:
            self._fake_probs.append(probs)
        return features

    def frechet(self) -> float:
        """FID from the running float64 sums, in float64 (torchmetrics' `compute` casts its result to the features'
        float32): the value of the same formula over every feature held at once, to float64 rounding."""
        fid = self.fid
        gaussians = []
        for total, cov_sum, n in (
            (fid.real_features_sum, fid.real_features_cov_sum, fid.real_features_num_samples),
            (fid.fake_features_sum, fid.fake_features_cov_sum, fid.fake_features_num_samples),
        ):
            mean = total / n
            gaussians += [mean, (cov_sum - n * torch.outer(mean, mean)) / (n - 1)]
        return frechet_distance(*gaussians)

    def real_state(self) -> dict[str, Tensor]:
        """What the metrics keep of the real images (FID's sums, the KID/PRDC features): cacheable."""
        return {
            "fid_sum": self.fid.real_features_sum, "fid_cov_sum": self.fid.real_features_cov_sum,
            "fid_num": self.fid.real_features_num_samples, "features": dim_zero_cat(self.manifold.real_features),
        }  # fmt: skip

    def load_real_state(self, state: dict[str, Tensor]) -> None:
        """Restore `real_state()` instead of extracting the real images again."""
        device = self.fid.device
        self.fid.real_features_sum = state["fid_sum"].to(device)
        self.fid.real_features_cov_sum = state["fid_cov_sum"].to(device)
        self.fid.real_features_num_samples = state["fid_num"].to(device)
        self.manifold.real_features = [state["features"].to(device)]

    def compute(self) -> dict[str, float]:
        """`fid`, `kid`, `kid_std`, `precision`, `recall`, `density`, `coverage`, and with class probabilities the
        extractor's statistics (`modes`, `class_kl`, `inception_score` for MNIST; `modes`, `mode_kl` stacked)."""
        if self.num_real < 2 or self.num_fake < 2:
            raise ValueError(f"need at least 2 real and 2 generated images, have {self.num_real} and {self.num_fake}")
        sums = (self.fid.real_features_cov_sum, self.fid.fake_features_cov_sum)
        if not self.fake_images_finite or not all(torch.isfinite(t).all() for t in sums):
            # A diverged generator scores NaN: its NaNs would crash LAPACK inside FID (a segfault, not an exception),
            # and an extractor that quantises them to black pixels would give it finite scores.
            statistics = self.extractor.statistic_names if self._fake_probs else ()
            keys = ["fid", "kid", "kid_std", *MANIFOLD_METRICS, *statistics]
            return dict.fromkeys(keys, float("nan"))
        # features that are all zero (a weights file that loaded into the wrong network leaves it silent) make every
        # distance exactly 0: say so rather than report a perfect score
        for side, total in (("real", self.fid.real_features_sum), ("generated", self.fid.fake_features_sum)):
            if not total.abs().max() > 0 and not self.zero_features_noted:
                self.zero_features_noted = True
                warnings.warn(f"every {self.extractor.name} feature of the {side} images is 0, so FID, KID and the "
                              "distances are 0 whatever the images: the extractor's weights do not fit its network "
                              "(e.g. a torchvision Inception file passed as --fid-weights); these scores mean "
                              "nothing", stacklevel=2)  # fmt: skip
        results = {"fid": self.frechet()}
        real, fake = self.stored_features()
        results.update(kernel_distance(real, fake, self.kid_subsets, self.kid_subset_size, self.seed))
        if min(self.num_real, self.num_fake) > self.manifold.k:  # k-NN balls need more points than k
            # the same concatenated store as KID's: another copy of every feature would double the peak memory
            manifold = self.manifold
            results.update(prdc(real, fake, k_pr=manifold.k_pr, k_dc=manifold.k_dc, chunk_size=manifold.chunk_size))
        if self._fake_probs:
            results.update(self.extractor.statistics(torch.cat(self._fake_probs)))
        return results

    @property
    def fake_images_finite(self) -> bool:
        """Whether every generated image since the last `reset()` was finite (NaN-free, Inf-free)."""
        return self._fake_finite is None or bool(self._fake_finite)

    def stored_features(self) -> tuple[Tensor, Tensor]:
        """The KID/PRDC store's real (N, F) and generated (M, F) features, each side joined once and kept so."""
        for name in ("real_features", "fake_features"):
            batches = getattr(self.manifold, name)
            if isinstance(batches, list) and len(batches) != 1:  # a DDP-synced store is one tensor already
                setattr(self.manifold, name, [dim_zero_cat(batches)])
            del batches  # its batches go before the other side is joined: at most one side exists twice
        real, fake = (
            f[0] if isinstance(f, list) else f for f in (self.manifold.real_features, self.manifold.fake_features)
        )
        return real, fake

    def reset(self) -> None:
        """Forget the generated images; the cached real features stay."""
        for metric in (self.fid, self.manifold):
            metric.reset()
        self._fake_probs = []
        self._fake_finite = None
