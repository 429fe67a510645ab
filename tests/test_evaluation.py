"""Offline evaluation helpers: conditional label accuracy and InfoGAN code purity, on controlled stubs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_lightning import GAN
from gan_lightning.metrics.evaluator import code_purity, label_accuracy


class ReadPixel(nn.Module):
    """A stand-in classifier: the class is encoded in pixel (0, 0) as value/10 - 1."""

    def forward(self, x):
        cls = ((x[:, 0, 0, 0] + 1) * 10).round().long().clamp(0, 9)
        return nn.functional.one_hot(cls, 10).float()


def encode(classes: torch.Tensor) -> torch.Tensor:
    images = -torch.ones(len(classes), 1, 28, 28)
    images[:, 0, 0, 0] = classes.float() / 10 - 1
    return images


def test_label_accuracy_counts_matches(monkeypatch):
    gan = GAN("mlp", latent_dim=4, conditional=True)

    def fake_sample(latents, **_):  # obeys labels 0-6, ignores them for 7-9 (answers 0)
        labels = latents.labels
        return encode(torch.where(labels < 7, labels, 0))

    monkeypatch.setattr(gan, "sample", fake_sample)
    assert label_accuracy(gan, ReadPixel(), per_class=5) == pytest.approx(0.7)


def test_code_purity_finds_majority_classes(monkeypatch):
    gan = GAN("mlp", latent_dim=4, infogan=True, n_cont=1)
    mapping = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])  # code value -> digit

    def fake_sample(latents, **_):
        cat = latents.cat
        classes = mapping[cat].clone()
        classes[::4] = 0  # every 4th sample is off-class: purity 0.75
        return encode(classes)

    monkeypatch.setattr(gan, "sample", fake_sample)
    purity, majority = code_purity(gan, ReadPixel(), per_code=8)
    assert purity == pytest.approx(0.75) and majority == mapping.tolist()
