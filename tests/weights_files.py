"""Weights files of every extractor's format, written with random weights in a second or two, for the registry-wide
extractor tests (the published files cannot be downloaded here)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from gan_lightning.bench.fid import write_random_fid_weights
from gan_lightning.metrics.extractors.clip import write_random_clip_archive
from gan_lightning.metrics.extractors.dinov2 import write_random_dinov2_file
from gan_lightning.metrics.extractors.vgg16 import write_random_vgg16_archive


def mnist_classifier_file(path: Path) -> None:
    """A random MNIST classifier in `train_classifier`'s file format (what evaluate.py and --classifier read)."""
    from gan_lightning.metrics.classifier import ARCH, MNISTClassifier

    with torch.random.fork_rng():  # the same weights every time, and the caller's random stream untouched
        torch.manual_seed(0)
        model = MNISTClassifier()
    meta = {"arch": ARCH, "num_features": model.num_features, "num_classes": model.num_classes}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)


class TinyEncoder(nn.Module):
    """A random conv encoder of RGB images to 8 features, declaring the 16x16 input it takes; its BatchNorm and
    dropout make the features differ in training mode, so an extractor that is not frozen in eval mode shows."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = (16, 16)  # kept by torch.jit.script: the extractor resizes images to it
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, 3, 16, 16) -> (B, 8)


def torchscript_file(path: Path) -> None:
    """A random `TinyEncoder` saved with torch.jit.save: any architecture's file format, the torchscript extractor's."""
    with torch.random.fork_rng(), warnings.catch_warnings():  # recent torch deprecates TorchScript (a FutureWarning)
        torch.manual_seed(0)
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(TinyEncoder()), str(path))


def torchvision_inception_file(path: Path) -> None:
    """A random torchvision Inception v3 state_dict with its auxiliary head, as torchvision publishes it (the file
    format of `inception_torchvision`, and of what --fid-weights took before the FID Inception)."""
    from torchvision.models import inception_v3

    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)


# weights files this test can write in a second or two, cheapest first; one of ours loading none of them fails, a
# plugin's extractor is skipped, saying so
WEIGHTS_WRITERS = {"a random MNIST classifier": mnist_classifier_file, "a tiny TorchScript network": torchscript_file,
                   "a tiny random CLIP archive": write_random_clip_archive,
                   "a tiny random DINOv2 ViT in Meta's format": write_random_dinov2_file,
                   "a tiny random network with NVlabs' VGG16 call signature": write_random_vgg16_archive,
                   "a random FID Inception in the published format": write_random_fid_weights,
                   "a random torchvision Inception v3": torchvision_inception_file}  # fmt: skip
