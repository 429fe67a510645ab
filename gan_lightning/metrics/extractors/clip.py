"""CLIP image features (Radford et al. 2021), the feature space Kynkäänniemi et al. (ICLR 2023) propose for FID
because it is not trained on ImageNet's classes; clean-fid's `clip_vit_b_32` and torch-fidelity's `clip-vit-b-32`.

The network is torch-fidelity's own CLIP image tower, built from OpenAI's published TorchScript archive
(`ViT-B-32.pt`, `ViT-L-14.pt`): a local file, never downloaded, whose SHA-256 is checked against the one OpenAI
publishes in the file's URL (torch-fidelity's `MODEL_METADATA`); `--fid-weights-unchecked` accepts another archive
of the same layout (random weights in tests). Images go in as torch-fidelity feeds them: uint8 RGB (grey repeated),
TF1-style bilinear resize to the tower's resolution, CLIP's mean and std.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_clip import MODEL_METADATA, FeatureExtractorCLIP, VisionTransformer
from torchvision.transforms.functional import normalize

from gan_lightning.core.errors import DataError, first_line
from gan_lightning.metrics.extractors.base import EXTRACTORS, FeatureExtractor, PathLike, file_sha256, to_uint8
from gan_lightning.metrics.extractors.resizers import RESIZES

Tensor = torch.Tensor
# our name -> torch-fidelity's, whose metadata holds the published file's SHA-256
MODELS = {"clip": "clip-vit-b-32", "clip_vit_l_14": "clip-vit-l-14"}
# CLIP's mean and std on the 0..255 scale, as torch-fidelity normalises
CLIP_MEAN = (255 * 0.48145466, 255 * 0.4578275, 255 * 0.40821073)
CLIP_STD = (255 * 0.26862954, 255 * 0.26130258, 255 * 0.27577711)


class CLIPFeatures(FeatureExtractor):
    """CLIP's image embedding (B, D): D = 512 for ViT-B/32, 768 for ViT-L/14."""

    resize = ("uint8 RGB (grey repeated), torch-fidelity's TF1 bilinear resize to the CLIP tower's resolution, CLIP's "
              "mean/std")  # fmt: skip

    def __init__(self, net: FeatureExtractorCLIP, resize: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.num_features = int(net.model.visual.proj.shape[1])
        # tf_bilinear is torch-fidelity's own resize: its path, recorded as always
        self.resize_name = None if resize in (None, "tf_bilinear") else resize
        if self.resize_name is not None:
            self.resize = (f"{resize}: uint8 RGB (grey repeated), {RESIZES.get(resize).description}, to the CLIP "
                           "tower's resolution, float into CLIP's mean/std")  # fmt: skip
        self.freeze()

    def from_pixels(self, pixels: Tensor) -> Tensor:
        """Embeddings (B, D) of float pixels (B, 3, R, R) on 0..255: torch-fidelity's forward after its resize."""
        x = normalize(pixels.to(self.net.feature_extractor_internal_dtype), CLIP_MEAN, CLIP_STD)
        return self.net.model.visual(x).float()  # (B, D)

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings (B, D) of images (B, 1 or 3, H, W) in [-1, 1]; `extract` adds no class probabilities."""
        pixels = to_uint8(x)  # (B, 3, H, W): the uint8 images torch-fidelity reads
        if self.resize_name is not None:
            return self.from_pixels(RESIZES.get(self.resize_name)(pixels, self.net.resolution).float())
        return self.net(pixels)[0]  # (B, D)


def load_clip(name: str, path: PathLike, checked: bool = True, resize: str | None = None) -> CLIPFeatures:
    """The CLIP tower `name` (a key of `MODELS`) from OpenAI's archive at `path`, its SHA-256 checked unless
    `checked=False`, its input resized by `resize` (default torch-fidelity's TF1 bilinear); a one-line `DataError`
    for a missing, foreign or unreadable file."""
    path, model = Path(path), MODELS[name]
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass OpenAI's {model} archive ({MODEL_METADATA[model]['filename']}.pt; "
                        "nothing is downloaded)")  # fmt: skip
    published = MODEL_METADATA[model]["hash"]
    if checked and file_sha256(path) != published:
        raise DataError(f"{path} is not OpenAI's {model} archive (SHA-256 {file_sha256(path)[:16]}..., published "
                        f"{published[:16]}...); pass that file, or --fid-weights-unchecked to use these weights "
                        "anyway (scores then are not comparable)")  # fmt: skip
    try:
        with warnings.catch_warnings():  # torch.jit.load's notes about the archive's format
            warnings.simplefilter("ignore")
            net = FeatureExtractorCLIP(model, ["clip"], feature_extractor_weights_path=str(path))
        if not isinstance(net.model.visual, VisionTransformer):
            raise ValueError("a ResNet CLIP, not a ViT")
    except Exception as err:  # not a TorchScript archive, or not CLIP's keys and shapes
        raise DataError(f"cannot load a CLIP image tower from {path} ({type(err).__name__}: {first_line(err)}); "
                        f"pass OpenAI's {model} archive") from None  # fmt: skip
    return CLIPFeatures(net, resize)


@EXTRACTORS.register("clip")
def _clip(path: PathLike, checked: bool = True, resize: str | None = None) -> FeatureExtractor:
    return load_clip("clip", path, checked, resize)


@EXTRACTORS.register("clip_vit_l_14")
def _clip_vit_l_14(path: PathLike, checked: bool = True, resize: str | None = None) -> FeatureExtractor:
    return load_clip("clip_vit_l_14", path, checked, resize)


class _Archive(nn.Module):
    """The entries of OpenAI's archive that torch-fidelity reads: the image tower and the text projection."""

    def __init__(self, resolution: int, patch: int, width: int, layers: int, dim: int) -> None:
        super().__init__()
        self.visual = VisionTransformer(resolution, patch, width, layers, width // 64, dim)
        self.text_projection = nn.Parameter(torch.randn(width, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.visual(x)


def write_random_clip_archive(path: PathLike, seed: int = 0, resolution: int = 32, width: int = 64) -> Path:
    """A seeded random CLIP ViT in OpenAI's archive format (TorchScript, the same keys) at `path`, small by default,
    for tests and measurements where the published file is absent."""
    with torch.random.fork_rng():  # the caller's global stream is left where it was
        torch.manual_seed(seed)
        archive = _Archive(resolution, 16, width, 1, 32).eval()
    with warnings.catch_warnings():  # recent torch deprecates TorchScript; OpenAI's archives are TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(archive, torch.zeros(1, 3, resolution, resolution)), str(path))
    return Path(path)
