"""The contract every discriminator in the registry follows."""

from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    """A body that maps images to features, and a linear head that maps features to one logit.

    Splitting the two lets the GAN module attach extra heads to the shared body (InfoGAN's Q head, the
    projection term of a conditional discriminator) without knowing the architecture.
    Subclasses set `self.body` (images -> (B, feature_dim)), `self.head` (features -> (B, 1)) and
    `self.feature_dim`.
    """

    body: nn.Module
    head: nn.Module
    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, shape (B, feature_dim)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logits (no sigmoid), shape (B,)."""
        return self.head(self.features(x)).squeeze(1)
