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


def generate_images(
    G: nn.Module, inputs: torch.Tensor, rng: torch.Generator | None = None, truncation_psi: float | None = None
) -> torch.Tensor:
    """G's images (B, C, H, W) for generator `inputs` (B, input_dim), as the training phases and sampling call it.

    A generator that draws randomness of its own (StyleGAN2's noise inputs and style mixing) declares
    `takes_rng = True` and gets the caller's `rng` (None when sampling: its deterministic mode); one that truncates
    in its own latent space (`truncates_in_w = True`) gets `truncation_psi`, which callers otherwise apply to z.
    """
    kwargs: dict[str, object] = {}
    if getattr(G, "takes_rng", False):
        kwargs["rng"] = rng
    if truncation_psi is not None and truncation_psi != 1:
        if not getattr(G, "truncates_in_w", False):
            raise ValueError(f"{type(G).__name__} does not truncate in its own latent space; truncate z instead")
        kwargs["truncation_psi"] = truncation_psi
    return G(inputs, **kwargs) if kwargs else G(inputs)
