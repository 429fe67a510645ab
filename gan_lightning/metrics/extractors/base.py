"""What every feature extractor is (`FeatureExtractor`), the registry that names them (`EXTRACTORS`), loading one from
a weights file with its protocol (`load_extractor`), and the one-time notices the extractors give."""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import call_with
from gan_lightning.core.registry import Registry
from gan_lightning.metrics.extractors.resizers import RESIZES

Tensor = torch.Tensor
PathLike = str | Path

log = logging.getLogger("gan_lightning.metrics")


def to_uint8(x: Tensor) -> Tensor:
    """Images (B, 1 or 3, H, W) in [-1, 1] as uint8 RGB (B, 3, H, W), quantised as generated images are saved to PNG
    (x * 127.5 + 128, clamped, truncated; a real uint8 image comes back exactly), grey repeated."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # (B, 3, H, W)
    return (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)


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
        """Features (B, num_features) and the class outputs `statistics` takes (B, ...): probabilities for the
        classifiers, logits for the FID Inception; None without a classifier head."""
        return self(x), None

    def statistics(self, probs: Tensor) -> dict[str, float]:
        """Mode statistics of all generated samples' class probabilities (none without a classifier head)."""
        return {}


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


EXTRACTORS: Registry[Callable[..., FeatureExtractor]] = Registry("feature extractor")


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


def load_extractor(name: str, path: PathLike, checked: bool = True, resize: str | None = None) -> FeatureExtractor:
    """The extractor registered as `name`, built from the weights file `path`, its protocol filled in; `checked=False`
    lets an extractor that checks its file's hash accept other weights of the right layout; `resize` (a name in
    `RESIZES`) is for extractors whose factory takes one, the others refuse it in one line."""
    factory = EXTRACTORS.get(name)
    if resize is not None:
        RESIZES.get(resize)  # an unknown name fails with the choices before any file is read
        if "resize" not in inspect.signature(factory).parameters:
            raise ConfigError(f"--extractor-resize {resize}: the {name} extractor resizes its input one fixed way "
                              "(its protocol's `resize` says which); drop --extractor-resize")  # fmt: skip
    extractor = call_with(factory, {"checked": checked, "resize": resize}, path=path)
    extractor.name = extractor.name or name  # an extractor that loaded as another kind says so itself
    extractor.weights_sha256 = file_sha256(path)
    return extractor


@functools.cache  # once per message and process, however many runs or callbacks ask
@rank_zero_only
def notice_once(message: str) -> None:
    """Log `message` as a warning, on rank zero, the first time it is given in this process."""
    log.warning(message)
