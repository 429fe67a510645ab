"""FID Inception benchmark (`scripts/benchmark_fid.py`): images per second of the project's FID feature extractor
against torch-fidelity's `FeatureExtractorInceptionV3` as torch-fidelity builds it, on the same images and weights
file, side by side, and how far their features are apart.

The project's extractor is torch-fidelity's network with its weights in channels-last memory format; nothing else
differs. Rounds alternate between the two so a busy machine slows both alike. The last line is one JSON object.

    python scripts/benchmark_fid.py --fid-weights weights-inception-2015-12-05-6726825d.pth --threads 2
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from gan_lightning.commands.base import Parser, run_command
from gan_lightning.core.errors import ConfigError
from gan_lightning.metrics.extractors import load_fid_inception
from gan_lightning.metrics.extractors.base import to_uint8


def build_parser() -> Parser:
    """The benchmark's flags."""
    p = Parser(prog="benchmark_fid.py", description="FID Inception images/s: the project's extractor against "
               "torch-fidelity's as it ships, on one weights file")  # fmt: skip
    p.add_argument("--fid-weights", required=True, help="the FID Inception weights file (torch-fidelity's or "
                   "pytorch-fid's)")  # fmt: skip
    p.add_argument("--fid-weights-unchecked", action="store_true", help="accept any file with the FID Inception's "
                   "layout (random weights: the speed is the same)")  # fmt: skip
    p.add_argument("--image-size", type=int, default=32, help="side of the input images, resized to 299 inside "
                   "(default 32, CIFAR-10)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="timed batches per extractor (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return p


def write_random_fid_weights(path: str | Path, seed: int = 0) -> Path:
    """Save a seeded random FID Inception state_dict at `path` in the published file's format (a plain `torch.save`d
    state_dict with torch-fidelity's key names), for tests and speed measurements where the real file is absent."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class RandomInit(FeatureExtractorInceptionV3):
        """torch-fidelity's network keeping its random initialisation (its constructor insists on loading a file)."""

        def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: ANN001, ANN201
            return None

    path = Path(path)
    empty = path.with_name(f"{path.name}.empty")  # the file the constructor insists on; removed once built
    torch.save({}, empty)
    try:
        with torch.random.fork_rng():  # the caller's global stream is left where it was
            torch.manual_seed(seed)
            net = RandomInit("random", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        empty.unlink(missing_ok=True)
    # Calibrate BatchNorm on random images so activations neither vanish nor explode through 90 random layers:
    # cumulative batch statistics of one pass become the running statistics.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    net.train()
    with torch.no_grad():
        net(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)))
    torch.save(net.state_dict(), path)
    return path


def seconds(extract: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Wall seconds of one forward pass, synchronised on an accelerator."""
    start = time.perf_counter()
    extract()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(cfg) -> int:  # noqa: ANN001
    """Time both extractors and print one JSON line."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    for flag in ("image_size", "batch_size", "rounds", "threads"):
        value = getattr(cfg, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # torch-fidelity's network only: torchvision's Inception, which --fid-weights still loads for old runs, is refused
    ours = load_fid_inception(cfg.fid_weights, checked=not cfg.fid_weights_unchecked, torchvision_ok=False)
    ours = ours.to(cfg.device)
    weights = str(cfg.fid_weights)
    plain = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    plain = plain.eval().to(cfg.device)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=g).mul(2).sub(1).to(cfg.device)
    as_uint8 = to_uint8(images)  # what the project's extractor feeds torch-fidelity's network
    runs = {"plain": lambda: plain(as_uint8)[0], "ours": lambda: ours.extract(images)[0]}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        features = {name: extract() for name, extract in runs.items()}  # warm-up, and the features compared
        for _ in range(cfg.rounds):
            for name, extract in runs.items():
                times[name].append(seconds(extract, images.device))
    rate = {name: cfg.batch_size / min(t) for name, t in times.items()}
    diff = float((features["ours"] - features["plain"]).abs().max())
    result = {
        "device": str(images.device), "threads": torch.get_num_threads(), "batch_size": cfg.batch_size,
        "plain_images_per_s": round(rate["plain"], 2), "ours_images_per_s": round(rate["ours"], 2),
        "speedup": round(rate["ours"] / rate["plain"], 3),
        "max_abs_feature_diff": diff, "feature_scale": float(features["plain"].abs().max()),
    }  # fmt: skip
    print(json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/benchmark_fid.py`."""
    return run_command(build_parser, run, argv)
