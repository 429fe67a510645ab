"""Sample-quality metrics during training: FID, KID, covered modes, class balance and an Inception-Score analogue.

Features come from a frozen extractor chosen by name: `"mnist_classifier"` (a small MNIST CNN, see
`gan_lightning.classifier`; it also gives class probabilities) or `"inception"` (torchvision's Inception v3 from a
local weights file; nothing is ever downloaded). `SampleQuality` is the Callback that evaluates a fixed noise batch
every N generator updates and logs `val/fid`, `val/kid`, ... on the iteration axis.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from gan_lightning.classifier import TRAIN_HINT, MNISTClassifier, load_classifier
from gan_lightning.data.base import to_signed
from gan_lightning.errors import ConfigError, DataError, first_line, load_weights_file
from gan_lightning.manifold import PRDC
from gan_lightning.options import Option
from gan_lightning.registry import Registry

Tensor = torch.Tensor
PathLike = str | Path

log = logging.getLogger(__name__)

# A sample counts towards a mode only when the classifier is this sure of its class: blurry in-between digits
# must not make a collapsed generator look diverse.
CONFIDENCE = 0.9
# ...and a class is a covered mode when it receives at least this fraction of all samples confidently.
MIN_MODE_FRACTION = 0.02
INCEPTION_SIZE = 299
CLASS_STATISTICS = ("modes", "class_kl", "inception_score")
STACKED_STATISTICS = ("modes", "mode_kl")
FID_WEIGHTS_HINT = (
    "pass --fid-weights PATH to a local torchvision inception_v3 state_dict (e.g. inception_v3_google-0cc3c7bd.pth); "
    "nothing is downloaded"
)


# How training evaluates sample quality (the train command's evaluation flags).
# fmt: off
options = (
    Option("eval_every", None, "compute val/fid, val/kid (and for MNIST val/modes, val/class_kl, "
           "val/inception_score) every N iterations and at the end", type=int, positive=True, resume="free",
           default_text="never"),
    Option("eval_samples", 1000, "generated images per evaluation", minimum=2, resume="free"),
    Option("classifier", None, "MNIST feature extractor from scripts/train_classifier.py (for MNIST runs)", type=str,
           resume="free", default_text="trained once per MNIST copy and cached"),
    Option("fid_weights", None, "local torchvision inception_v3 weights for FID on RGB data", type=str,
           resume="free", default_text="none"),
)
# fmt: on


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


# ---------------------------------------------------------------------------------------------------- metrics
class _Precomputed(nn.Module):
    """The `feature` network torchmetrics calls in `update`: our features arrive already extracted."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def class_statistics(
    probs: Tensor, confidence: float = CONFIDENCE, min_mode_fraction: float = MIN_MODE_FRACTION
) -> dict[str, float]:
    """`modes`, `class_kl` and `inception_score` of class probabilities (N, K).

    - modes: classes that receive at least `min_mode_fraction` of all N samples with max probability
      >= `confidence` (unrecognisable samples cover no mode);
    - class_kl: KL(histogram of predicted classes || uniform), 0 for balanced classes, log K for one class;
    - inception_score: exp(E_x KL(p(y|x) || p(y))), from 1 (every sample gets the same prediction) to K.
    """
    probs = probs.double()
    n, k = probs.shape
    top, pred = probs.max(dim=1)
    confident = torch.bincount(pred[top >= confidence], minlength=k)  # (K,)
    hist = torch.bincount(pred, minlength=k).double() / n  # (K,)
    marginal = probs.mean(dim=0, keepdim=True)  # (1, K)
    kl = torch.special.xlogy(probs, probs).sum(1) - (probs * marginal.clamp_min(1e-30).log()).sum(1)  # (N,)
    return {
        "modes": int((confident >= min_mode_fraction * n).sum()),
        "class_kl": float(torch.special.xlogy(hist, hist * k).sum()),
        "inception_score": float(kl.mean().exp()),
    }


def stacked_mode_statistics(probs: Tensor) -> dict[str, float]:
    """`modes` and `mode_kl` of per-channel digit probabilities (N, 3, K), as the Stacked MNIST papers count them.

    Each channel's argmax digit makes a 3-digit code (one of K**3 = 1000 modes); `modes` is the number of codes
    with at least one sample, `mode_kl` the KL divergence of the code histogram from uniform. Their floor on real
    data depends on N: see the README's table.
    """
    n, c, k = probs.shape
    digits = probs.argmax(dim=2)  # (N, 3)
    codes = (digits * k ** torch.arange(c - 1, -1, -1, device=digits.device)).sum(1)  # (N,) first channel major
    hist = torch.bincount(codes, minlength=k**c).double() / n  # (K**3,)
    return {"modes": int((hist > 0).sum()), "mode_kl": float(torch.special.xlogy(hist, hist * k**c).sum())}


MANIFOLD_METRICS = ("precision", "recall", "density", "coverage")


class SampleQualityMetrics(nn.Module):
    """FID and KID (torchmetrics), precision/recall (k=3) and density/coverage (k=5) between real and generated
    images, plus the extractor's mode statistics when it gives class probabilities. Real features are kept across
    `reset()`: they are extracted once per run.

    The extractor runs once per batch and both torchmetrics metrics receive its features through a pass-through
    `feature` network, so FID, KID and the class statistics share one forward pass (Inception on a CPU is slow).
    KID averages `kid_subsets` subsets of `kid_subset_size` (half torchmetrics' 100 subsets, for CPU speed; `kid_std`
    shows their spread), drawn from a fixed seed in a forked RNG: repeatable, and the training RNG is left alone.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        *,
        kid_subset_size: int = 1000,
        kid_subsets: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if kid_subset_size < 2 or kid_subsets < 1:
            raise ConfigError(f"need kid_subset_size >= 2 and kid_subsets >= 1, got {kid_subset_size}, {kid_subsets}")
        self.extractor = extractor
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        feature = _Precomputed(extractor.num_features)
        # sync_on_compute=False: only global rank zero evaluates, and a cross-rank gather would wait forever.
        common = {"feature": feature, "reset_real_features": False, "sync_on_compute": False}
        self.fid = FrechetInceptionDistance(**common)
        with warnings.catch_warnings():  # "KID keeps all features in memory": a few MB at our sample counts
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self.kid = KernelInceptionDistance(subsets=kid_subsets, subset_size=kid_subset_size, **common)
        # one feature store and one k-NN pass for precision/recall (k=3) and density/coverage (k=5)
        self.manifold = PRDC(k_pr=3, k_dc=5, reset_real_features=False, sync_on_compute=False)
        self._fake_probs: list[Tensor] = []

    @property
    def num_real(self) -> int:
        """Real images whose features are cached."""
        return int(self.fid.real_features_num_samples)

    @property
    def num_fake(self) -> int:
        """Generated images seen since the last `reset()`."""
        return int(self.fid.fake_features_num_samples)

    @torch.no_grad()
    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch of float images (B, C, H, W) in [-1, 1], real or generated."""
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1], got {images.dtype} (uint8 data: use to_signed)")
        features, probs = self.extractor.extract(images.to(self.fid.device, torch.float32))
        for metric in (self.fid, self.kid, self.manifold):
            metric.update(features, real=real)
        if probs is not None and not real:
            self._fake_probs.append(probs)

    def compute(self) -> dict[str, float]:
        """`fid`, `kid`, `kid_std`, `precision`, `recall`, `density`, `coverage`, and with class probabilities the
        extractor's statistics (`modes`, `class_kl`, `inception_score` for MNIST; `modes`, `mode_kl` stacked)."""
        if self.num_real < 2 or self.num_fake < 2:
            raise ValueError(f"need at least 2 real and 2 generated images, have {self.num_real} and {self.num_fake}")
        if not all(torch.isfinite(t).all() for t in (self.fid.real_features_cov_sum, self.fid.fake_features_cov_sum)):
            # A diverged generator's NaNs would crash LAPACK inside FID (a segfault, not an exception).
            statistics = self.extractor.statistic_names if self._fake_probs else ()
            keys = ["fid", "kid", "kid_std", *MANIFOLD_METRICS, *statistics]
            return dict.fromkeys(keys, float("nan"))
        results = {"fid": float(self.fid.compute())}
        # KID's subsets cannot be larger than either set.
        self.kid.subset_size = min(self.kid_subset_size, self.num_real, self.num_fake)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            kid, kid_std = self.kid.compute()
        results.update(kid=float(kid), kid_std=float(kid_std))
        if min(self.num_real, self.num_fake) > self.manifold.k:  # k-NN balls need more points than k
            results.update(self.manifold.compute())
        if self._fake_probs:
            results.update(self.extractor.statistics(torch.cat(self._fake_probs)))
        return results

    def reset(self) -> None:
        """Forget the generated images; the cached real features stay."""
        for metric in (self.fid, self.kid, self.manifold):
            metric.reset()
        self._fake_probs = []


# --------------------------------------------------------------------------------------------------- callback
def _signed(images: Tensor) -> Tensor:
    return to_signed(images) if images.dtype == torch.uint8 else images.float()


class SampleQuality(Callback):
    """Scores `num_samples` generated images against real ones every `every_n_steps` generator updates and at the
    end of training, on global rank zero only.

    Samples come from one seeded noise batch, so successive evaluations differ only by the generator. Real images
    are `real_images` (a uint8 or [-1, 1] float tensor (N, C, H, W), or a Dataset of (image, label)), else the
    datamodule's `val_set`; their features are extracted once. Results go to every logger as `val/<name>` scalars
    at step `iteration`, to `<log_dir>/metrics.jsonl` for TensorBoard loggers, and to `.last`.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        every_n_steps: int = 1000,
        num_samples: int = 1000,
        real_images: Tensor | Dataset | None = None,
        num_real: int | None = None,
        batch_size: int = 500,
        seed: int = 4321,
        kid_subset_size: int = 1000,
        kid_subsets: int = 50,
        prefix: str = "val/",
    ) -> None:
        if every_n_steps < 1 or batch_size < 1:
            raise ConfigError(f"every_n_steps and batch_size must be positive, got {every_n_steps}, {batch_size}")
        if num_samples < 2 or (num_real is not None and num_real < 2):
            raise ConfigError(f"FID needs at least 2 images per set, got num_samples={num_samples}, {num_real=}")
        self.metrics = SampleQualityMetrics(
            extractor, kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, seed=seed
        )
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.real_images = real_images
        self.num_real = num_real
        self.batch_size = batch_size
        self.seed = seed
        self.prefix = prefix
        self.last: dict[str, float] = {}
        self._last_step = -1

    def _real_batches(self, trainer: Trainer) -> Iterator[Tensor]:
        """Real images as float batches in [-1, 1], at most `num_real` of them."""
        source = self.real_images
        if source is None:
            source = getattr(trainer.datamodule, "val_set", None)
        if source is None or len(source) == 0:
            raise DataError(
                "SampleQuality needs real images: pass real_images=..., or fit with a datamodule that has a "
                "non-empty val_set (MNIST: a positive val_fraction)"
            )
        limit = len(source) if self.num_real is None else min(self.num_real, len(source))
        stored = source if isinstance(source, Tensor) else getattr(source, "images", None)
        if isinstance(stored, Tensor):  # in-memory images: slice, no DataLoader
            yield from (_signed(chunk) for chunk in stored[:limit].split(self.batch_size))
            return
        loader = DataLoader(source, batch_size=self.batch_size, collate_fn=getattr(source, "collate_fn", None))
        seen = 0
        for batch in loader:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            yield _signed(images[: limit - seen])
            seen += min(len(images), limit - seen)
            if seen >= limit:
                return

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float] | None:
        """Score the generator now and log the results (rank zero only; once per iteration)."""
        step = pl_module.iteration
        if not trainer.is_global_zero or step == self._last_step:
            return None
        self._last_step = step
        metrics = self.metrics.to(pl_module.device)
        if metrics.num_real == 0:
            for images in self._real_batches(trainer):
                metrics.update(images, real=True)
        # Fixed inputs (noise and any labels / codes) from their own seed: evaluations stay comparable.
        rng = torch.Generator(pl_module.device).manual_seed(self.seed)
        latents = pl_module.latents.draw(self.num_samples, rng, pl_module.device).input
        metrics.reset()
        try:
            for chunk in latents.split(self.batch_size):
                metrics.update(pl_module.sample(latents=chunk).float(), real=False)  # (b, C, H, W) in [-1, 1]
            results = metrics.compute()
        finally:
            metrics.reset()
        self.last = results
        self._log(trainer, step, results)
        return results

    def _log(self, trainer: Trainer, step: int, results: dict[str, float]) -> None:
        scalars = {f"{self.prefix}{name}": value for name, value in results.items()}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
            # Only real TensorBoard loggers: under fast_dev_run Lightning swaps in a dummy with no directory.
            if isinstance(logger, TensorBoardLogger):
                path = Path(logger.log_dir) / "metrics.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a") as f:
                    f.write(json.dumps({"step": step, "global_step": trainer.global_step, **results}) + "\n")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if pl_module.iteration % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.evaluate(trainer, pl_module)
