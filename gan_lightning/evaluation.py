"""Offline evaluation of a checkpoint: FID/KID/mode coverage, conditional label accuracy, InfoGAN code purity."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch

from gan_lightning.classifier import load_classifier
from gan_lightning.command import Parser, run_command
from gan_lightning.data import MNISTDataModule, default_data_dir
from gan_lightning.data.base import to_signed
from gan_lightning.errors import ConfigError
from gan_lightning.metrics import MNISTClassifierFeatures, SampleQualityMetrics
from gan_lightning.module import GAN
from gan_lightning.sampling import load_gan

Tensor = torch.Tensor


@torch.no_grad()
def predict(classifier: torch.nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """The classifier's predicted class for each image in [-1, 1]."""
    return torch.cat([classifier(chunk).argmax(1) for chunk in images.split(batch_size)])


def label_accuracy(gan: GAN, classifier: torch.nn.Module, per_class: int, seed: int = 0) -> float:
    """Conditional GAN: the fraction of samples asked for label y that the classifier calls y."""
    labels = torch.arange(gan.hparams.num_classes).repeat_interleave(per_class)
    rng = torch.Generator(gan.device).manual_seed(seed)
    images = gan.sample(latents=gan.latents.draw(len(labels), rng, gan.device, labels=labels))
    return (predict(classifier, images.cpu()) == labels).float().mean().item()


def code_purity(gan: GAN, classifier: torch.nn.Module, per_code: int, seed: int = 0) -> tuple[float, list[int]]:
    """InfoGAN: how well categorical code values map to classes (mean share of each value's majority class).

    Returns the purity and the majority class of each code value; 1.0 with 10 distinct classes means the code
    learned the digits, unsupervised.
    """
    cat = torch.arange(gan.hparams.n_cat).repeat_interleave(per_code)
    rng = torch.Generator(gan.device).manual_seed(seed)
    images = gan.sample(latents=gan.latents.draw(len(cat), rng, gan.device, cat=cat))
    pred = predict(classifier, images.cpu()).view(gan.hparams.n_cat, per_code)
    counts = torch.stack([torch.bincount(row, minlength=10) for row in pred])  # (n_cat, 10)
    return (counts.max(1).values.sum() / pred.numel()).item(), counts.argmax(1).tolist()


def evaluate(gan: GAN, classifier_path: str, data_dir: str, num_samples: int = 5000, seed: int = 0) -> dict:
    """Sample-quality metrics of `gan` against MNIST's validation images, with the project's classifier."""
    classifier = load_classifier(classifier_path)
    dm = MNISTDataModule(data_dir, download=False, image_size=gan.hparams.image_size)
    dm.setup()
    metrics = SampleQualityMetrics(MNISTClassifierFeatures(classifier))
    for chunk in dm.val_set.images.split(1000):
        metrics.update(to_signed(chunk), real=True)
    rng = torch.Generator(gan.device).manual_seed(seed)
    for chunk in gan.latents.draw(num_samples, rng, gan.device).input.split(1000):
        metrics.update(gan.sample(latents=chunk).cpu(), real=False)
    results = metrics.compute()
    if gan.hparams.conditional:
        results["label_accuracy"] = label_accuracy(gan, classifier, num_samples // gan.hparams.num_classes, seed)
    if gan.hparams.infogan:
        results["code_purity"], results["code_classes"] = code_purity(gan, classifier, num_samples // 10, seed)
    return results


def build_parser() -> Parser:
    """The evaluate command's argument parser."""
    p = Parser(prog="evaluate.py", description="Score an MNIST checkpoint offline.")
    p.add_argument("--ckpt", required=True, help="a gan_lightning checkpoint")
    p.add_argument("--classifier", required=True, help="from scripts/train_classifier.py")
    p.add_argument("--data-dir", default=None, help="MNIST root (default $GAN_DATA_DIR or ./data)")
    p.add_argument("-n", "--num", type=int, default=5000, help="generated images (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="seed for the noise (default 0)")
    return p


def run(cfg: argparse.Namespace) -> None:
    """Evaluate as configured and print one JSON line of metrics."""
    if cfg.num < 10:
        raise ConfigError(f"--num must be at least 10, got {cfg.num}")
    results = evaluate(load_gan(cfg.ckpt), cfg.classifier, cfg.data_dir or default_data_dir(), cfg.num, cfg.seed)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/evaluate.py`: 0 on success, 2 on bad input or data."""
    return run_command(build_parser(), run, argv)
