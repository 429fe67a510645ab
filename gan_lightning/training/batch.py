"""A real batch and a phase's loss: the two values every phase, regularizer and accumulation step passes on."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from gan_lightning.core.errors import ConfigError

Tensor = torch.Tensor


class Batch(NamedTuple):
    """Real images (B, C, H, W) in [-1, 1] and their class labels (B,) when the data has them."""

    images: Tensor
    labels: Tensor | None = None

    @classmethod
    def of(cls, batch: Any) -> Batch:
        """A loader's batch: images, or (images,) / (images, labels)."""
        return cls(*batch) if isinstance(batch, (tuple, list)) else cls(batch)

    def split(self, k: int) -> list[Batch]:
        """Exactly `k` chunks (tensor_split; chunk() may give fewer, e.g. 8 rows into 5), one per D update."""
        if len(self.images) < k:
            raise ConfigError(f"a batch of {len(self.images)} images cannot feed d_steps={k} D updates")
        labels = self.labels.tensor_split(k) if self.labels is not None else [None] * k
        return [Batch(x, y) for x, y in zip(self.images.tensor_split(k), labels, strict=True)]


class PhaseLoss(NamedTuple):
    """A phase's total loss to backpropagate, and detached statistics to log."""

    loss: Tensor
    stats: dict[str, Tensor]
