"""Heads on the discriminator's features, and `Critic`: a discriminator together with its heads.

The objectives only ever call `Critic`: images (and labels) in, `CriticOutput` (logits, features) out. A plain
discriminator needs no heads; a conditional GAN adds the projection head, InfoGAN the Q head.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option
from gan_lightning.models.base import Discriminator

Tensor = torch.Tensor


class ProjectionHead(nn.Module):
    """The projection discriminator's class term (Miyato & Koyama 2018): <embed(y), features(x)>."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, feature_dim)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Per-sample logit offsets (B,) for features (B, F) and labels (B,)."""
        return (self.embed(labels) * features).sum(dim=1)  # (B,)


class QHead(nn.Module):
    """InfoGAN's Q network on D's features: categorical-code logits and continuous-code means."""

    def __init__(self, feature_dim: int, n_cat: int, n_cont: int, hidden: int = 128) -> None:
        super().__init__()
        self.n_cat = n_cat
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, n_cat + n_cont))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(B, F) features -> categorical logits (B, n_cat) and continuous means (B, n_cont), in fp32."""
        out = self.net(features).float()  # (B, n_cat + n_cont)
        return out[:, : self.n_cat], out[:, self.n_cat :]


options = (Option("spectral_norm", False, "spectral normalisation of every weight layer of D and its heads",
                  resume="refuse"),)  # fmt: skip


SN_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def spectral_norm_all(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of every Conv, Linear and Embedding weight in `module`, in place;
    layers already normalised (the SN-GAN discriminators are built with it) are left as they are, and so are
    weight layers of other kinds (`unnormalisable_layers`)."""
    for layer in [m for m in module.modules() if isinstance(m, SN_LAYERS)]:
        if not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer)
    return module


def unnormalisable_layers(module: nn.Module) -> list[str]:
    """The class names of `module`'s weight layers `spectral_norm_all` leaves alone: not torch's Conv, Linear or
    Embedding, e.g. StyleGAN2's equalised-learning-rate layers, which scale their weight in forward (normalising
    the stored weight would not bound the layer)."""
    return sorted({type(m).__name__ for m in module.modules() if not isinstance(m, SN_LAYERS)
                   and isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2})  # fmt: skip


def check_spectral_norm(module: nn.Module) -> None:
    """One-line ConfigError when `--spectral-norm` would leave weight layers of `module` unnormalised (a new run's
    check; a checkpoint made before it keeps loading as it was trained)."""
    own = unnormalisable_layers(module)
    if own:
        raise ConfigError(f"--spectral-norm normalises torch's Conv, Linear and Embedding layers; this "
                          f"discriminator's {', '.join(own)} are its own kind: drop --spectral-norm")  # fmt: skip


class CriticOutput(NamedTuple):
    """What D says about a batch: `logits` (B,) and, when the body/head split is available, `features` (B, F)."""

    logits: Tensor
    features: Tensor | None


class Critic(nn.Module):
    """A discriminator `net` plus optional `projection` (conditional) and `q_head` (InfoGAN) heads."""

    def __init__(self, net: nn.Module, projection: nn.Module | None = None, q_head: nn.Module | None = None) -> None:
        super().__init__()
        if (projection is not None or q_head is not None) and not isinstance(net, Discriminator):
            raise ConfigError("conditional and infogan need a gan_lightning.models.Discriminator (body + head)")
        self.net, self.projection, self.q_head = net, projection, q_head
        self._split = projection is not None or q_head is not None

    @classmethod
    def build(cls, net: nn.Module, *, num_classes: int = 0, n_cat: int = 0, n_cont: int = 0) -> Critic:
        """`net` with the heads a latent space of `num_classes` labels or `n_cat` / `n_cont` codes needs."""
        dim = getattr(net, "feature_dim", 0)
        projection = ProjectionHead(dim, num_classes) if num_classes else None
        q_head = QHead(dim, n_cat, n_cont) if n_cat or n_cont else None
        return cls(net, projection, q_head)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> CriticOutput:
        """Logits (B,) for images (B, C, H, W); labels (B,) are needed when there is a projection head."""
        if not self._split:
            return CriticOutput(self.net(x).reshape(x.shape[0]), None)
        h = self.net.features(x)  # (B, F)
        logits = self.net.head(h).reshape(x.shape[0])  # (B,)
        if self.projection is not None:
            if labels is None:
                raise ConfigError("a conditional discriminator needs the class labels of its images")
            logits = logits + self.projection(h, labels)
        return CriticOutput(logits, h)
