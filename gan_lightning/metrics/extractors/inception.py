"""The Inception v3 features of FID/KID/PRDC: the FID Inception of published scores (torch-fidelity's TF-ported
network, checked against its published SHA-256) and torchvision's, registered as `inception_fid` and
`inception_torchvision`; each loads from a local weights file, nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.core.errors import ConfigError, DataError, first_line
from gan_lightning.core.files import load_weights_file
from gan_lightning.metrics.extractors.base import (
    EXTRACTORS,
    FeatureExtractor,
    PathLike,
    file_sha256,
    notice_once,
    to_uint8,
)
from gan_lightning.metrics.extractors.resizers import RESIZES

Tensor = torch.Tensor

INCEPTION_SIZE = 299
# The TF-ported Inception v3 ("2015-12-05") of published FIDs. torch-fidelity and pytorch-fid publish the same
# state_dict under these two names; as torch.hub does, the name carries the first hex digits of the file's SHA-256.
FID_INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
FID_INCEPTION_SHA256 = "6726825d"
FID_LAYOUT = "FID Inception layout"  # what `weights_kind` calls a state_dict of torch-fidelity's network
FID_WEIGHTS_HINT = (
    f"pass --fid-weights PATH to the FID Inception weights ({FID_INCEPTION_FILES[0]} of torch-fidelity or "
    f"{FID_INCEPTION_FILES[1]} of pytorch-fid; see docs/evaluation.md); nothing is downloaded"
)
# Accept FID-Inception-shaped weights whose hash is not the published one (random weights in tests, research).
UNCHECKED_HINT = "pass --fid-weights-unchecked to use them anyway (numbers then are not comparable with papers)"


class FIDInceptionFeatures(FeatureExtractor):
    """The Inception v3 of published FIDs: torch-fidelity's `FeatureExtractorInceptionV3` (the TF graph of
    2015-12-05 ported to PyTorch, as pytorch-fid, torchmetrics and clean-fid use it), its 2048 pool features for
    FID/KID/PRDC and its 1008 unbiased logits for the Inception Score.

    Images go in as torch-fidelity takes them: quantised to uint8 the way generator outputs are saved as PNGs
    (x * 127.5 + 128, clamped, truncated; a real uint8 image comes back exactly), grey repeated to RGB, then
    torch-fidelity's TF1-compatible bilinear resize to 299x299 (no antialiasing) and (x - 128) / 128 inside.
    Another `resize` (a name in `RESIZES`; `clean` is clean-fid's) brings the uint8 images to 299x299 instead, and
    its float pixels, unquantised, go through torch-fidelity's layers.
    """

    num_features = 2048
    num_classes = 1008
    statistic_names = ("inception_score", "inception_score_std")
    resize = ("uint8 quantisation (x * 127.5 + 128, clamped, truncated), grey repeated to RGB, torch-fidelity's "
              "TF1-compatible bilinear resize to 299x299 without antialiasing")  # fmt: skip
    is_splits = 10  # the Inception Score's protocol (Salimans et al. 2016): mean and std over 10 splits

    # the network's stages in torch-fidelity's forward order, pixels (B, 3, 299, 299) to pool features (B, 2048, 1, 1)
    STAGES = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
              "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
              "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool")  # fmt: skip

    def __init__(self, weights_path: PathLike, resize: str | None = None) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        # torch-fidelity downloads only without a path; it unpickles with weights_only=False, so callers check the
        # file first (`load_fid_inception`: the published hash, or a weights-only load).
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=str(weights_path))  # fmt: skip
        # channels-last convolutions take oneDNN's fast path on CPU (see scripts/benchmark_fid.py); the features move
        # by float rounding only, as between devices
        self.net.to(memory_format=torch.channels_last)
        # tf_bilinear is torch-fidelity's own resize: the published path, recorded as always
        self.resize_name = None if resize in (None, "tf_bilinear") else resize
        if self.resize_name is not None:
            self.resize = (f"{resize}: uint8 quantisation (x * 127.5 + 128, clamped, truncated), grey repeated to RGB, "
                           f"{RESIZES.get(resize).description}, to 299x299, float into the network")  # fmt: skip
        self.freeze()

    def from_pixels(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Pool features (B, 2048) and unbiased logits (B, 1008) of float pixels (B, 3, 299, 299) on 0..255: the
        layers of torch-fidelity's forward after its resize."""
        x = (pixels.to(self.net.feature_extractor_internal_dtype) - 128) / 128
        for stage in self.STAGES:
            x = getattr(self.net, stage)(x)
        features = torch.flatten(x, 1)  # (B, 2048)
        return features.float(), features.mm(self.net.fc.weight.T).float()  # (B, 2048), (B, 1008)

    def forward(self, x: Tensor) -> Tensor:
        """Pool features (B, 2048) of images (B, 1 or 3, H, W) in [-1, 1]."""
        return self.extract(x)[0]

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Pool features (B, 2048) and unbiased logits (B, 1008), from one pass."""
        if self.resize_name is not None:
            return self.from_pixels(RESIZES.get(self.resize_name)(to_uint8(x), INCEPTION_SIZE).float())
        features, logits = self.net(to_uint8(x))  # the uint8 RGB torch-fidelity reads; resized to 299 px inside
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


def load_fid_inception(
    weights_path: PathLike, checked: bool = True, torchvision_ok: bool = True, resize: str | None = None
) -> FeatureExtractor:
    """The FID Inception from a local file carrying the published SHA-256, else a one-line `DataError` naming what
    the file is. `checked=False` accepts any file with the FID Inception's layout (random weights in tests).

    A torchvision Inception file, what `--fid-weights` took before, still loads as `InceptionFeatures`, with a
    one-time notice that its FIDs are not comparable with published ones; `torchvision_ok=False` refuses it (a
    caller that needs torch-fidelity's network itself). `resize` names the resize to 299x299 (default
    torch-fidelity's TF1 bilinear).
    """
    path = Path(weights_path)
    if path.is_file() and file_sha256(path).startswith(FID_INCEPTION_SHA256):
        return FIDInceptionFeatures(path, resize)
    state = load_weights_file(path, "FID Inception weights", FID_WEIGHTS_HINT)  # weights only: no code runs
    kind = weights_kind(state)
    if kind == FID_LAYOUT and not checked:
        return FIDInceptionFeatures(path, resize)
    expected = f"expected the FID Inception, SHA-256 {FID_INCEPTION_SHA256}... ({' or '.join(FID_INCEPTION_FILES)})"
    if kind.startswith("torchvision's") and not torchvision_ok:
        raise DataError(f"{path} is not the FID Inception's layout: it holds {kind}; {expected}")
    if kind.startswith("torchvision's") and resize is not None:
        raise ConfigError(f"{path} holds {kind}, which takes no other resize than its own, not {resize} (asked by "
                          f"--extractor-resize or --protocol); pass the FID Inception ({FID_INCEPTION_FILES[0]}), or "
                          "drop --extractor-resize")  # fmt: skip
    if kind.startswith("torchvision's"):
        notice_once(f"--fid-weights {path} holds {kind}: FIDs with it are not comparable with published ones; "
                    f"{FID_WEIGHTS_HINT}")  # fmt: skip
        extractor = load_inception(path)
        extractor.name = "inception_torchvision"
        return extractor
    if kind == FID_LAYOUT:
        raise DataError(f"{path} has the FID Inception's layout but other weights (SHA-256 "
                        f"{file_sha256(path)[:16]}...); {expected}; {UNCHECKED_HINT}")  # fmt: skip
    raise DataError(f"{path} holds {kind}, not Inception weights; {expected}; nothing is downloaded")


@EXTRACTORS.register("inception_fid")
def _inception_fid(path: PathLike, checked: bool = True, resize: str | None = None) -> FeatureExtractor:
    return load_fid_inception(path, checked, resize=resize)


@EXTRACTORS.register("inception_torchvision")
def _inception_torchvision(path: PathLike) -> FeatureExtractor:
    return load_inception(path)
