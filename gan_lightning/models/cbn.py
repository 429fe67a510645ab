"""Class-conditional BatchNorm (de Vries et al. 2017; BigGAN, Brock et al. 2019): a conditional generator gets its
labels in every BatchNorm, as a per-class gain and bias, instead of as a one-hot concatenated to its input.

The generator's interface does not change: it still takes the latent space's full input (B, dim + num_classes),
whose last `num_classes` columns are the one-hot labels (`LatentSpace.draw`); a cBN generator splits them off, gives
the noise to its first layer and the one-hot to every `ConditionalBatchNorm`.
"""

from __future__ import annotations

import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option

Tensor = torch.Tensor

# fmt: off
G_CONDITIONING = Option(
    "g_conditioning", "input", "how a conditional G gets its labels: input (one-hot concatenated to the noise) or cbn "
    "(class-conditional BatchNorm, BigGAN-style: a per-class gain and bias in G's BatchNorms); cbn for dcgan, "
    "dcgan_mnist and sngan_* (resnet and mlp have no BatchNorm in G)",
    choices=("input", "cbn"), resume="refuse")
# fmt: on


def cbn_classes(g_conditioning: str, num_classes: int) -> int:
    """The classes a builder's generator conditions its BatchNorms on: 0 for input conditioning, else `num_classes`
    (one-line ConfigError when there are no class labels to condition on)."""
    if g_conditioning != "cbn":
        return 0
    if num_classes < 1:
        raise ConfigError("--g-conditioning cbn conditions G's BatchNorms on class labels; add --conditional "
                          "(InfoGAN codes and unconditional runs have none)")  # fmt: skip
    return num_classes


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine, then a per-class gain (1 + gamma_y) and bias beta_y.

    gamma and beta are (num_classes, C) tables read through the one-hot (a linear map of it, not an index), so soft
    or averaged one-hots (sample.py --arithmetic) still give a blend of classes. Both start at zero: at
    initialisation the layer is a plain BatchNorm with weight 1 and bias 0, whatever the label.
    """

    def __init__(self, num_features: int, num_classes: int, norm: type[nn.Module] = nn.BatchNorm2d,
                 eps: float = 1e-5, momentum: float | None = 0.1) -> None:  # fmt: skip
        super().__init__()
        self.norm = norm(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain = nn.Parameter(torch.zeros(num_classes, num_features))  # gamma_y - 1
        self.bias = nn.Parameter(torch.zeros(num_classes, num_features))  # beta_y

    def forward(self, x: Tensor, onehot: Tensor) -> Tensor:
        """Normalise x (B, C) or (B, C, H, W), then scale and shift it per sample by its class (onehot (B, K))."""
        shape = (x.shape[0], -1) + (1,) * (x.ndim - 2)  # (B, C) or (B, C, 1, 1)
        gain = (1 + onehot @ self.gain).view(shape)
        bias = (onehot @ self.bias).view(shape)
        return self.norm(x) * gain + bias


def condition_batchnorms(layers: nn.Sequential, num_classes: int) -> nn.Sequential:
    """`layers` with every BatchNorm1d/2d replaced, in place and at the same index, by a `ConditionalBatchNorm` of
    the same width, eps and momentum."""
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layers[i] = ConditionalBatchNorm(layer.num_features, num_classes, type(layer), layer.eps, layer.momentum)
    return layers


def batch_norm(num_features: int, num_classes: int = 0) -> nn.Module:
    """A BatchNorm2d, or with `num_classes` > 0 a `ConditionalBatchNorm` of the same width (a generator block's
    named norm, where `condition_batchnorms` has no Sequential to rewrite)."""
    return ConditionalBatchNorm(num_features, num_classes) if num_classes else nn.BatchNorm2d(num_features)


def call_layer(layer: nn.Module, x: Tensor, onehot: Tensor | None) -> Tensor:
    """`layer(x)`, handing `onehot` along when the layer is a `ConditionalBatchNorm`."""
    return layer(x, onehot) if isinstance(layer, ConditionalBatchNorm) else layer(x)


def run_layers(layers: nn.Sequential, x: Tensor, onehot: Tensor | None) -> Tensor:
    """`layers(x)`, handing `onehot` to each `ConditionalBatchNorm` (a plain Sequential cannot pass it)."""
    if onehot is None:
        return layers(x)
    for layer in layers:
        x = call_layer(layer, x, onehot)
    return x


def split_input(inputs: Tensor, num_classes: int) -> tuple[Tensor, Tensor | None]:
    """(noise, one-hot labels) of a generator input (B, dim + num_classes), flattened first; (inputs, None) for 0."""
    flat = inputs.reshape(inputs.shape[0], -1)  # (B, dim + K): accepts (B, dim + K, 1, 1) as DCGAN's G does
    if not num_classes:
        return inputs, None
    return flat[:, :-num_classes], flat[:, -num_classes:]  # (B, dim), (B, K): LatentSpace puts the labels last
