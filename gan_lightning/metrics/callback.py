"""`SampleQuality`: the Callback that scores the generator every N iterations during training, and the train
command's evaluation options."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset

from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.core.files import append_text, write_text
from gan_lightning.core.options import Option
from gan_lightning.data.base import to_signed
from gan_lightning.loggers import log_text, run_dir
from gan_lightning.metrics.extractors import EXTRACTORS, FeatureExtractor
from gan_lightning.metrics.extractors.resizers import RESIZES
from gan_lightning.metrics.scorer import Scorer

Tensor = torch.Tensor
PathLike = str | Path


def _existing_file(flag: str, hint: str = "pass the weights file's path") -> Callable[[str], None]:
    """A check that `flag`'s path names a file: refused when given, whether or not evaluation is scheduled."""

    def check(path: str) -> None:
        if not Path(path).is_file():
            what = "a directory" if Path(path).is_dir() else "no such file"
            raise ConfigError(f"{flag} {path}: {what}; {hint.replace('PATH', path)}")

    return check


# fmt: off
options = (
    Option("eval_every", None, "compute val/fid, val/kid (and for MNIST val/modes, val/class_kl, "
           "val/inception_score) every N iterations and at the end", type=int, positive=True, resume="free",
           default_text="never"),
    Option("eval_samples", 1000, "generated images per evaluation", minimum=2, resume="free"),
    Option("classifier", None, "MNIST feature extractor from scripts/train_classifier.py (for MNIST runs)", type=str,
           resume="free", default_text="trained once per MNIST copy and cached",
           check=_existing_file("--classifier", "train one with: python scripts/train_classifier.py --data-dir DIR "
                                "--out PATH, or drop --classifier for the cached one")),
    Option("fid_weights", None, "local weights file of the FID Inception (sha256 6726825d..., as published by "
           "torch_fidelity and pytorch_fid; see docs/evaluation.md): FID, KID and IS comparable with papers", type=str,
           resume="free", default_text="none", check=_existing_file("--fid-weights")),
    Option("fid_weights_unchecked", False, "accept weights of the FID Inception (or of an --extractor that checks its "
           "file, e.g. clip) whose sha256 is not the published one (tests, research; scores then are not comparable "
           "with papers)", resume="free"),
    Option("extractor", None, "the feature extractor of FID, KID and precision/recall, by name, from the weights "
           "file --extractor-weights (e.g. torchscript: your own network saved with torch.jit.save); the "
           "dataset's classifier, when given, still gives the mode statistics", type=str,
           choices=lambda: EXTRACTORS.names(), resume="free",
           default_text="the dataset's classifier, or the FID Inception with --fid-weights"),
    Option("extractor_weights", None, "local weights file of --extractor", type=str, resume="free", metavar="PATH",
           default_text="none", check=_existing_file("--extractor-weights")),
    Option("extractor_resize", None, "how images are resized to the feature network's input (the FID Inception, "
           "clip, dinov2): tf_bilinear (torch-fidelity's), pil_bicubic (dgm-eval's) or clean (clean-fid's); "
           "recorded in every score's protocol", type=str, choices=lambda: RESIZES.names(), resume="free",
           metavar="NAME", default_text="the extractor's own (Inception, CLIP: tf_bilinear; dinov2: pil_bicubic)"),
)
# fmt: on


# --------------------------------------------------------------------------------------------------- callback
def _signed(images: Tensor) -> Tensor:
    return to_signed(images) if images.dtype == torch.uint8 else images.float()


class SampleQuality(Callback):
    """Scores `num_samples` generated images against real ones every `every_n_steps` generator updates and at the
    end of training, on global rank zero only.

    Samples come from one seeded noise batch, so successive evaluations differ only by the generator. Real images
    are `real_images` (a uint8 or [-1, 1] float tensor (N, C, H, W), or a Dataset of (image, label)), else the
    datamodule's `val_set`; their features are extracted once. Results go to every logger as `val/<name>` scalars
    at step `iteration`, to `<log_dir>/metrics.jsonl` for TensorBoard loggers (each line with its `protocol`: counts,
    `reference` (what the real images are), extractor and weights hash, resize, seed; also TensorBoard text
    `val/protocol`), and to `.last`.
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
        reference: str | None = None,
    ) -> None:
        if every_n_steps < 1 or batch_size < 1:
            raise ConfigError(f"every_n_steps and batch_size must be positive, got {every_n_steps}, {batch_size}")
        if num_samples < 2 or (num_real is not None and num_real < 2):
            raise ConfigError(f"FID needs at least 2 images per set, got num_samples={num_samples}, {num_real=}")
        # `seed` draws the latents; KID's subsets keep the scorer's own seed, as in evaluate.py
        self.scorer = Scorer(extractor, batch_size=batch_size, kid_subset_size=kid_subset_size,
                             kid_subsets=kid_subsets)  # fmt: skip
        self.metrics = self.scorer.metrics
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.real_images = real_images
        self.num_real = num_real
        self.batch_size = batch_size
        self.seed = seed
        self.prefix = prefix
        self.reference = reference
        self.last: dict[str, float] = {}
        self.last_step = -1  # the iteration scored last: each is scored once

    def _real_source(self, trainer: Trainer) -> tuple[Tensor | Dataset, int, str]:
        """The real images, how many of them to use, and what they are (for the protocol)."""
        source, reference = self.real_images, self.reference or "real_images"
        if source is None:
            source = getattr(trainer.datamodule, "val_set", None)
            reference = self.reference or f"{type(trainer.datamodule).__name__}.val_set"
        if source is None or len(source) == 0:
            raise DataError(
                "SampleQuality needs real images: pass real_images=..., or fit with a datamodule that has a "
                "non-empty val_set (MNIST: a positive val_fraction)"
            )
        return source, len(source) if self.num_real is None else min(self.num_real, len(source)), reference

    def _real_batches(self, trainer: Trainer) -> Iterator[Tensor]:
        """Real images as float batches in [-1, 1], at most `num_real` of them."""
        source, limit, _ = self._real_source(trainer)
        yield from real_batches(source, limit, self.batch_size)

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float] | None:
        """Score the generator now and log the results (rank zero only; once per iteration)."""
        step = pl_module.iteration
        if not trainer.is_global_zero or step == self.last_step:
            return None
        self.last_step = step
        self.metrics.to(pl_module.device)
        if not self.scorer.has_real:
            source, limit, reference = self._real_source(trainer)
            with torch.random.fork_rng(devices=[]):  # a DataLoader over the images draws its seed from it
                self.scorer.add_real(self._real_batches(trainer), reference=reference, total=limit,
                                     labels=real_labels(source, limit))  # fmt: skip
        results = self.scorer.score(pl_module, self.num_samples, self.seed)
        self.last = results
        protocol = self.scorer.protocol(self.num_samples, self.seed, num_classes=pl_module.latents.num_classes)
        self._log(trainer, step, results, protocol)
        return results

    def _log(self, trainer: Trainer, step: int, results: dict[str, float], protocol: dict[str, Any]) -> None:
        scalars = {f"{self.prefix}{name}": value for name, value in results.items()}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        table = "\n".join(["| field | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in protocol.items())])
        log_text(trainer, f"{self.prefix}protocol", table, step)
        folder = run_dir(trainer)
        if folder is not None:  # none under fast_dev_run: nothing is written
            record = {"step": step, "global_step": trainer.global_step, **results, "protocol": protocol}
            append_text(folder / "metrics.jsonl", json.dumps(record) + "\n", "the metrics log")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a resume from an older checkpoint (after a hard kill) scores those iterations again: their earlier
        # records go, as TensorBoard's purge drops the dead process's points
        folder = run_dir(trainer)
        if trainer.ckpt_path and trainer.is_global_zero and folder is not None:
            drop_records_after(folder / "metrics.jsonl", pl_module.iteration)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if pl_module.iteration % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.evaluate(trainer, pl_module)


def drop_records_after(path: Path, iteration: int) -> None:
    """Rewrite the metrics log `path` without the records of iterations after `iteration` (when it holds any)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= iteration]
    if len(kept) != len(lines):
        write_text(path, "".join(kept), "the metrics log")


def real_labels(source: Tensor | Dataset, limit: int) -> Tensor | None:
    """The class labels (limit,) of the first `limit` images of a Dataset that keeps them as a `labels` tensor (ours
    do); None for a bare image tensor or a Dataset without one."""
    labels = None if isinstance(source, Tensor) else getattr(source, "labels", None)
    return labels[:limit].long().cpu() if isinstance(labels, Tensor) else None


def real_batches(source: Tensor | Dataset, limit: int, batch_size: int) -> Iterator[Tensor]:
    """The first `limit` images of a uint8 or float tensor (N, C, H, W) or a Dataset of (image, label), as float
    batches in [-1, 1]."""
    stored = source if isinstance(source, Tensor) else getattr(source, "images", None)
    if isinstance(stored, Tensor):  # in-memory images: slice, no DataLoader
        yield from (_signed(chunk) for chunk in stored[:limit].split(batch_size))
        return
    loader = DataLoader(source, batch_size=batch_size, collate_fn=getattr(source, "collate_fn", None))
    seen = 0
    for batch in loader:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield _signed(images[: limit - seen])
        seen += min(len(images), limit - seen)
        if seen >= limit:
            return
