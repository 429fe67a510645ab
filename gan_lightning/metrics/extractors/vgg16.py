"""NVlabs' VGG16 (`vgg16.pt`, StyleGAN2-ADA's metric network), registered as `vgg16`: the 4096 fc2 features of
StyleGAN2-ADA's `pr50k3_full` (improved precision and recall, Kynkäänniemi et al. 2019).

The file is NVlabs' TorchScript archive (https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/
vgg16.pt), a local file, never downloaded. NVlabs publishes no hash for it; two independent public projects that
download it check the same SHA-256 (`VGG16_SHA256`), which is taken as the published file here;
`--fid-weights-unchecked` accepts another archive with its call signature (random weights in tests).

Images go in as StyleGAN2-ADA's `metrics/metric_utils.py` feeds it: uint8 RGB (B, 3, H, W) at the images' own size
(generated ones quantised as `(img * 127.5 + 128).clamp(0, 255).to(torch.uint8)`, real ones as stored, grey
repeated to RGB), called as `detector(images, return_features=True)`; the network brings them to its 224x224
input itself (its `resize_images` argument, on by default, which `precision_recall.py` leaves on).

Loading runs the archive's TorchScript, as `torchscript.py` explains: score with the file you downloaded from NVlabs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.metrics.extractors.base import EXTRACTORS, FeatureExtractor, PathLike, to_uint8
from gan_lightning.metrics.extractors.torchscript import described, load_archive, reason

Tensor = torch.Tensor

VGG16_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
# the SHA-256 that genforce's perceptual model and another project's download script both verify for VGG16_URL
VGG16_SHA256 = "b437eb095feaeb0b83eb3fa11200ebca4548ee39a07fb944a417ddc516cc07c3"
NUM_FEATURES = 4096  # VGG16's fc2 width
VGG16_HINT = f"pass NVlabs' vgg16.pt ({VGG16_URL}; see docs/evaluation.md); nothing is downloaded"
# An unpublished archive's feature count comes from one forward on uint8 images this size: the real network resizes
# any size to 224x224 itself, and a small probe costs little on a CPU.
PROBE_SIZE = 32
PROBE_BATCH = 2  # a batch of 2, so that a network dropping or squeezing the batch dimension shows


class VGG16Features(FeatureExtractor):
    """The fc2 features (B, 4096) of NVlabs' scripted VGG16, fed uint8 RGB images as StyleGAN2-ADA feeds it."""

    resize = ("uint8 quantisation (x * 127.5 + 128, clamped, truncated), grey repeated to RGB, at the images' own "
              "size into NVlabs' scripted VGG16, which resizes to 224x224 itself (return_features=True, its "
              "resize_images default)")  # fmt: skip

    def __init__(self, net: nn.Module, path: PathLike, num_features: int | None = None) -> None:
        super().__init__()
        self.net = net.eval()  # as NVlabs loads it (torch.jit.load(f).eval()), before the probe too
        self.path = Path(path)  # for messages only: the protocol names the file by its SHA-256
        # the published file's count is known; another archive's is found by one forward, which also checks its
        # call signature before any image is scored
        self.num_features = num_features or self.probe()
        self.freeze()

    @torch.no_grad()
    def probe(self) -> int:
        """The archive's feature count, from one forward on a uint8 ramp (not zeros: a network standardising its
        input would divide by 0)."""
        x = torch.arange(PROBE_BATCH * 3 * PROBE_SIZE * PROBE_SIZE) % 256
        x = x.to(torch.uint8).reshape(PROBE_BATCH, 3, PROBE_SIZE, PROBE_SIZE)  # (2, 3, 32, 32)
        return self.features(x).shape[1]

    def features(self, pixels: Tensor) -> Tensor:
        """Float features (B, F) of uint8 RGB pixels (B, 3, H, W), as `detector(pixels, return_features=True)`
        gives them; a one-line DataError when the archive fails on them or returns something else."""
        try:
            output = self.net(pixels, return_features=True)
        except torch.cuda.OutOfMemoryError:
            raise  # the machine's limit, not the archive's fault: keep torch's own message
        except RuntimeError as err:  # TorchScript's multi-line traceback, cut to its cause
            raise DataError(f"{self.path} fails as NVlabs' VGG16 on uint8 images {tuple(pixels.shape)} "
                            f"(called with return_features=True): {reason(err)}; {VGG16_HINT}") from None  # fmt: skip
        if not (isinstance(output, Tensor) and output.ndim == 2 and len(output) == len(pixels) and output.shape[1] > 0
                and output.is_floating_point()):  # fmt: skip
            raise DataError(f"{self.path} returned {described(output)} for uint8 images {tuple(pixels.shape)}, not "
                            f"features (B, F) as NVlabs' VGG16 does; {VGG16_HINT}")  # fmt: skip
        return output.float()

    def forward(self, x: Tensor) -> Tensor:
        """fc2 features (B, 4096) of images (B, 1 or 3, H, W) in [-1, 1]."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ConfigError(f"NVlabs' VGG16 takes images (B, 3 or 1, H, W), got {tuple(x.shape)}")
        pixels = to_uint8(x)  # (B, 3, H, W) uint8: the generator's quantisation, grey repeated to RGB
        return self.features(pixels)  # (B, F); the network resizes to 224x224 inside


@EXTRACTORS.register("vgg16")
def load_vgg16(path: PathLike, checked: bool = True) -> VGG16Features:
    """NVlabs' scripted VGG16 from a local `vgg16.pt` as a frozen extractor; `checked=False` accepts any TorchScript
    archive with its call signature. One-line DataError for a missing, damaged or foreign file."""
    path = Path(path)
    net, sha256 = load_archive(path, "VGG16", VGG16_HINT)
    published = sha256 == VGG16_SHA256
    if checked and not published:
        raise DataError(f"{path} is a TorchScript archive but not NVlabs' vgg16.pt (SHA-256 {sha256[:16]}..., "
                        f"expected {VGG16_SHA256[:16]}...); {VGG16_HINT}, or --fid-weights-unchecked to use it "
                        "anyway (scores then are not comparable with papers)")  # fmt: skip
    extractor = VGG16Features(net, path, NUM_FEATURES if published else None)
    extractor.weights_sha256 = sha256  # also when built without `load_extractor`, which sets the same
    return extractor


class RandomVGG16(nn.Module):
    """A tiny random network with the call signature of NVlabs' `vgg16.pt` (uint8 RGB in, features out with
    `return_features=True`, a 1-d score otherwise), for tests where the published file is absent."""

    def __init__(self, num_features: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(32, num_features), nn.ReLU())  # fmt: skip

    def forward(self, img: Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> Tensor:  # fmt: skip
        """Features (B, F) of uint8 RGB images with `return_features`, else one score per image (B,)."""
        features = self.body(img.float() / 127.5 - 1)  # (B, 3, H, W) uint8 -> (B, F)
        return features if return_features else features.sum(1)


def write_random_vgg16_archive(path: PathLike, seed: int = 0, num_features: int = 16) -> Path:
    """A seeded `RandomVGG16` saved with torch.jit.save at `path` (the file format of `vgg16`)."""
    with torch.random.fork_rng(), warnings.catch_warnings():  # the caller's stream stays; torch's notice goes
        torch.manual_seed(seed)
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(RandomVGG16(num_features)), str(path))
    return Path(path)
