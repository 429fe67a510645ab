"""Scoring memory and speed (`scripts/benchmark_memory.py`): peak resident memory of the scoring path at several
generated-sample counts, each count in a fresh process (so one's peak does not hide the next's), and the
extractor's images/s inside scoring (extraction into the running statistics) against its bare forward pass on the
same batches, run side by side, and the seconds of the metrics' computation once the features are in.

The generator is a stand-in that costs nothing (seeded noise reshaped to images), so the time and memory are the
scoring's: extraction, FID's running sums, the KID/PRDC store and the k-NN pass. `--extractor projection` is a
fixed random projection to 2048 features (the FID Inception's width) for the counts a CPU Inception cannot reach
in minutes; `--extractor inception` is the FID Inception with random weights in the published file's format.

    python scripts/benchmark_memory.py --counts 10000 50000 100000 --extractor projection
    python scripts/benchmark_memory.py --counts 1000 --extractor inception --num-reference 500
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gan_lightning.commands.base import Parser, run_command
from gan_lightning.core.errors import ConfigError
from gan_lightning.metrics import FeatureExtractor
from gan_lightning.metrics.protocols import PROTOCOLS
from gan_lightning.metrics.scorer import Scorer
from gan_lightning.training.latents import LatentSpace


def build_parser() -> Parser:
    """The benchmark's flags."""
    p = Parser(prog="benchmark_memory.py", description="peak memory and extractor images/s of scoring at several "
               "sample counts, each in a fresh process")  # fmt: skip
    p.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000, 100_000], help="generated images")
    p.add_argument(
        "--extractor",
        choices=("projection", "inception"),
        default="projection",
        help="projection: 2048 random-projection features; inception: the FID Inception, random weights",
    )
    p.add_argument("--protocol", choices=PROTOCOLS.names(), default="fid50k_full", help="KID/PRDC sizes from it")
    p.add_argument("--num-reference", type=int, default=10_000, help="generated reference images (default 10000)")
    p.add_argument("--image-size", type=int, default=32, help="side of the RGB images (default 32)")
    p.add_argument("--features", type=int, default=2048, help="projection: its feature width (default 2048, the "
                   "FID Inception's)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the count a child process measures
    return p


class Projection(FeatureExtractor):
    """A fixed random projection of the pixels to `features` features (the FID Inception's 2048 by default)."""

    name = "projection"

    def __init__(self, pixels: int, features: int = 2048) -> None:
        super().__init__()
        self.num_features = features
        self.weight = torch.randn(pixels, features, generator=torch.Generator().manual_seed(0)) / pixels**0.5

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x.flatten(1) @ self.weight, None  # (B, features)


class NoiseImages:
    """A stand-in generator with `gan.sample`'s interface: 128-d seeded noise (a GAN's latent size; `Scorer` draws
    all latents of a score at once) through a fixed random linear map to (B, 3, S, S) images in [-1, 1]."""

    device = torch.device("cpu")

    def __init__(self, size: int, latent_dim: int = 128) -> None:
        self.size = size
        self.latents = LatentSpace(latent_dim, "normal")
        self.weight = torch.randn(latent_dim, 3 * size * size, generator=torch.Generator().manual_seed(2))

    def sample(self, latents: torch.Tensor, **_: Any) -> torch.Tensor:
        images = (latents @ self.weight / self.weight.shape[0] ** 0.5).tanh()  # (B, 3 * S * S)
        return images.view(-1, 3, self.size, self.size)


def extractor_for(name: str, size: int, features: int = 2048) -> FeatureExtractor:
    """The benchmark's extractor."""
    if name == "projection":
        return Projection(3 * size * size, features)
    from gan_lightning.bench.fid import write_random_fid_weights
    from gan_lightning.metrics.extractors import load_fid_inception

    path = write_random_fid_weights(Path(tempfile.mkdtemp()) / "random_fid_inception.pth")
    return load_fid_inception(path, checked=False)


def measure(cfg: Any, count: int) -> dict[str, Any]:
    """One count, in this process: scoring's time, the bare extractor's on the same batches, and the peak RSS."""
    extractor = extractor_for(cfg.extractor, cfg.image_size, cfg.features)
    scorer = Scorer(extractor, **PROTOCOLS.get(cfg.protocol).scoring())
    generator = NoiseImages(cfg.image_size)
    references = generator.latents.draw(cfg.num_reference, torch.Generator().manual_seed(1)).input.split(500)
    scorer.add_real((generator.sample(z) for z in references), reference="noise", total=cfg.num_reference)
    # the scoring path of `Scorer.score`, timed in its two parts: extraction into the running statistics per image,
    # then the metrics once (FID's matrix square root, KID's subsets, the k-NN pass: fixed costs, not per image)
    metrics, step = scorer.metrics, scorer.metrics.batch_size_on(torch.device("cpu"))
    latents = generator.latents.draw(count, torch.Generator().manual_seed(0)).input
    metrics.reset()
    start = time.perf_counter()
    for chunk in latents.split(scorer.batch_size):
        metrics.update(generator.sample(chunk), real=False)
    extraction = time.perf_counter() - start
    start = time.perf_counter()
    results = metrics.compute()
    computing = time.perf_counter() - start
    # the bare forward pass over the same images in the same slices: the speed limit of the extractor
    start = time.perf_counter()
    with torch.no_grad():
        for chunk in latents.split(scorer.batch_size):
            for part in generator.sample(chunk).split(step):
                extractor.extract(part)
    bare = time.perf_counter() - start
    return {"count": count, "extractor": cfg.extractor, "protocol": cfg.protocol, "num_reference": cfg.num_reference,
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "scoring_images_per_s": round(count / extraction, 1), "bare_images_per_s": round(count / bare, 1),
            "ratio": round(bare / extraction, 3), "compute_s": round(computing, 1), "fid": results["fid"],
            "kid_prdc_generated": metrics.fake_kept}  # fmt: skip


def run(cfg: Any) -> None:
    """Each count in a child process; one JSON line each, then a summary line."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.one is not None:
        print(json.dumps(measure(cfg, cfg.one)))
        return
    if min(cfg.counts) < 10 or cfg.num_reference < 10:
        raise ConfigError("--counts and --num-reference must be at least 10")
    # the child gets this run's settings from `cfg`, whoever called `main` (the command line or `main(argv)`)
    settings = ["--extractor", cfg.extractor, "--protocol", cfg.protocol, "--num-reference", str(cfg.num_reference),
                "--image-size", str(cfg.image_size), "--features", str(cfg.features),
                *(["--threads", str(cfg.threads)] if cfg.threads else [])]  # fmt: skip
    rows = []
    for count in cfg.counts:
        out = subprocess.run([sys.executable, "-m", "gan_lightning.bench.memory", *settings, "--one", str(count)],
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            raise ConfigError(f"the count {count} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"peak_rss_gb": {r["count"]: r["peak_rss_gb"] for r in rows},
                      "min_ratio": min(r["ratio"] for r in rows)}))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/benchmark_memory.py`."""
    return run_command(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
