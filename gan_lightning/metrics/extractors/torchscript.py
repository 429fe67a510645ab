"""Your own feature network, saved with `torch.jit.save`, registered as `torchscript`: a domain classifier, a
self-supervised encoder exported by its authors, any architecture, scored without its Python class.

The archive's contract: `forward` maps float images (B, C, H, W) in [-1, 1] to features (B, F), C being 3 or 1
(a network trained on other inputs, ImageNet-normalised say, does that normalisation inside its own forward); an
optional attribute `input_size` (an int or (H, W)) on the scripted module makes images resized to it, else they go in
at the generator's size. For example:

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_size = (64, 64)  # kept by torch.jit.script: images are resized to it
            self.body = nn.Sequential(nn.Conv2d(3, 32, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)  # (B, 3, 64, 64) -> (B, 32)

    torch.jit.save(torch.jit.script(Encoder()), "encoder.pt")
    scorer = Scorer(load_extractor("torchscript", "encoder.pt"))

What loading is and is not: a TorchScript archive holds the network's TorchScript code (a typed subset of Python
that torch compiles and runs in its own interpreter, calling torch operators) and its tensors, read by TorchScript's
own unpickler, which rebuilds tensors and TorchScript types only. So `torch.jit.load` is not the arbitrary-code
unpickling of `torch.load(weights_only=False)` on a pickled model: no Python object, import or function of the
author's is loaded. It is still the author's program: its TorchScript runs at every forward (and at load in a
`__setstate__`), and PyTorch's SECURITY.md says to treat TorchScript models as executable code from their provider.
Score with archives you trust, as you would run their code.

Recent torch releases deprecate TorchScript in favour of `torch.export` (a FutureWarning on torch.jit.script, save
and load); archives still load, and this file silences that warning on load only, since whoever scores with an
archive cannot act on it.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.metrics.extractors.base import EXTRACTORS, FeatureExtractor, PathLike, file_sha256

Tensor = torch.Tensor

TORCHSCRIPT_HINT = ("save the network with torch.jit.save(torch.jit.script(model), PATH); its forward maps images "
                    "(B, C, H, W) in [-1, 1] to features (B, F)")  # fmt: skip
SIZE_HINT = "declare the size it takes as an attribute input_size (int or (H, W)) of the scripted module"
# Without a declared size the probe that finds F runs at this size: large enough for the five stride-2 stages of a
# ResNet-like encoder, small enough to cost nothing on a CPU.
PROBE_SIZE = 64
PROBE_BATCH = 2  # a batch of 2, so that a network dropping or squeezing the batch dimension shows


def reason(err: BaseException, limit: int = 160) -> str:
    """The line of an error that says what went wrong: TorchScript puts its traceback first and the cause last."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:limit]


def described(output: Any) -> str:
    """What a network returned, in words: a tensor's dtype and shape, else the type."""
    if isinstance(output, Tensor):
        return f"a {str(output.dtype).removeprefix('torch.')} tensor of shape {tuple(output.shape)}"
    return f"a {type(output).__name__}"


def declared_size(net: nn.Module, path: Path) -> tuple[int, int] | None:
    """The (H, W) the archive declares in its `input_size` attribute, or None when it declares none."""
    declared = getattr(net, "input_size", None)
    if declared is None:
        return None
    size = (declared, declared) if isinstance(declared, int) else declared
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise DataError(f"{path}: input_size must be a positive int or (H, W), got {declared!r}")
    return (size[0], size[1])


class TorchScriptFeatures(FeatureExtractor):
    """A TorchScript network's output as features (B, F); `num_features` and the channels it takes (3 or 1) found
    by one probe forward at load. Grey images are repeated to RGB for a 3-channel network."""

    def __init__(self, net: nn.Module, path: PathLike) -> None:
        super().__init__()
        self.net = net
        self.path = Path(path)  # for messages only: the protocol names the file by its SHA-256
        self.input_size = declared_size(net, self.path)
        self.channels, self.num_features = self.probe()
        grey = ", grey repeated to RGB" if self.channels == 3 else ""
        if self.input_size is None:
            self.resize = f"float images in [-1, 1]{grey}, at their own size (the network declares no input_size)"
        else:
            height, width = self.input_size
            self.resize = (f"float images in [-1, 1]{grey}, bilinear resize to {height}x{width} with antialiasing "
                           "when not that size (the network's input_size)")  # fmt: skip
        self.freeze()

    @torch.no_grad()
    def probe(self) -> tuple[int, int]:
        """The channels the network takes (3 tried first) and its feature count, from one forward each."""
        height, width = self.input_size or (PROBE_SIZE, PROBE_SIZE)
        failures = []
        for channels in (3, 1):
            # a ramp over [-1, 1] rather than zeros: a network standardising its input would divide by 0 on a constant
            x = torch.linspace(-1, 1, PROBE_BATCH * channels * height * width)
            x = x.reshape(PROBE_BATCH, channels, height, width)  # (2, C, H, W)
            try:
                output = self.net.eval()(x)
            except Exception as err:  # any failure of a foreign network on well-formed input means "not this shape"
                failures.append(f"{tuple(x.shape)}: {reason(err, 100)}")
                continue
            return channels, self.checked(output, x).shape[1]
        size_hint = f"; {SIZE_HINT}" if self.input_size is None else ""
        raise DataError(f"the TorchScript network {self.path} fails on images in [-1, 1] "
                        f"({'; '.join(failures)}){size_hint}")  # fmt: skip

    def checked(self, output: Any, x: Tensor) -> Tensor:
        """`output` as float features (B, F) of the images `x` (B, C, H, W), else a one-line DataError."""
        if not (isinstance(output, Tensor) and output.ndim == 2 and len(output) == len(x) and output.shape[1] > 0
                and output.is_floating_point()):  # fmt: skip
            raise DataError(
                f"the TorchScript network {self.path} returned {described(output)} for images "
                f"{tuple(x.shape)}, not float features (B, F); flatten or pool its output to (B, F)"
            )
        if getattr(self, "num_features", None) not in (None, output.shape[1]):  # F must not depend on the image size
            raise DataError(f"the TorchScript network {self.path} gave {output.shape[1]} features for images "
                            f"{tuple(x.shape)} but {self.num_features} when probed; {SIZE_HINT}")  # fmt: skip
        return output.float()

    def prepared(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] as the network takes them: its channels, its declared size."""
        if x.ndim != 4 or x.shape[1] not in (1, self.channels):
            raise ConfigError(f"the TorchScript network {self.path} takes images (B, {self.channels}"
                              f"{' or 1' if self.channels == 3 else ''}, H, W), got {tuple(x.shape)}")  # fmt: skip
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)  # (B, 3, H, W): grey repeated to RGB
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            # antialiasing: downsampling without it aliases high frequencies into the features
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, F) of images (B, 1 or C, H, W) in [-1, 1]."""
        x = self.prepared(x)  # (B, C, H', W')
        try:
            output = self.net(x)
        except torch.cuda.OutOfMemoryError:
            raise  # the machine's limit, not the network's fault: keep torch's own message
        except RuntimeError as err:  # TorchScript's multi-line traceback, cut to its cause
            hint = f"; {SIZE_HINT}" if self.input_size is None else ""
            raise DataError(f"the TorchScript network {self.path} fails on images {tuple(x.shape)}: "
                            f"{reason(err)}{hint}") from None  # fmt: skip
        return self.checked(output, x)


def what_it_holds(path: Path, err: BaseException) -> str:
    """Why `torch.jit.load` refused a file, in words: a `torch.save` file (a state dict or a pickled model), or what
    torch said."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        names = []
    if any(n.endswith("/data.pkl") for n in names) and not any(n.endswith("/constants.pkl") for n in names):
        return "holds a torch.save file (a state dict or a pickled model), not a TorchScript archive"
    cause = reason(err).split(". ")[0]  # torch adds generic sentences about corrupted checkpoints after the cause
    return f"is not a TorchScript archive ({cause})"


def load_archive(path: PathLike, what: str, hint: str) -> tuple[nn.Module, str]:
    """The network of a local TorchScript archive on the CPU and the file's SHA-256; one-line DataError (naming
    `what` the file should hold, then `hint`) when it is missing, a directory or not such an archive."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a {what} archive; {hint}")
    if not path.is_file():
        raise DataError(f"no {what} at {path}; {hint}")
    sha256 = file_sha256(path)  # before loading, so the hash is of the bytes that were loaded
    try:
        with warnings.catch_warnings():  # the deprecation notice (module docstring) is not the scorer's to act on
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")  # no Python object unpickled (module docstring)
    except Exception as err:  # torch reports every unreadable file as RuntimeError or ValueError, with long text
        raise DataError(f"{path} {what_it_holds(path, err)}; {hint}") from None
    return net, sha256


@EXTRACTORS.register("torchscript")
def load_torchscript(path: PathLike) -> TorchScriptFeatures:
    """The TorchScript network of a local `torch.jit.save` archive as a frozen extractor; one-line DataError when
    the file is missing, not such an archive, or its network does not give features (B, F)."""
    net, sha256 = load_archive(path, "TorchScript network", TORCHSCRIPT_HINT)
    extractor = TorchScriptFeatures(net, Path(path))
    extractor.weights_sha256 = sha256  # also when built without `load_extractor`, which sets the same
    return extractor
