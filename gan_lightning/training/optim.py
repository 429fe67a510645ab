"""The optimizers: Adam for G, then Adam for D with its heads (cs231n defaults: lr 1e-3, betas (0.5, 0.999))."""

from __future__ import annotations

import torch
from torch import nn

from gan_lightning.core.options import Option

# fmt: off
options = (
    Option("lr", 1e-3, "Adam learning rate for G and D", positive=True),
    Option("beta1", 0.5, "Adam beta1", minimum=0, below=1),
    Option("beta2", 0.999, "Adam beta2", minimum=0, below=1),
    Option("d_weight_decay", 0.0, "L2 weight decay of D's Adam, its heads included (added to D's gradients, as "
           "torch.optim.Adam's weight_decay)", minimum=0),
)
# fmt: on


def build_optimizers(
    generator: nn.Module,
    discriminator: nn.Module,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    device: torch.device,
    d_weight_decay: float = 0.0,
) -> list[torch.optim.Optimizer]:
    """[Adam over G, Adam over D], fused where the device has the kernel."""
    # Fused Adam: one kernel over all parameters, far fewer Python-level launches than the default per-tensor loop.
    fused = True if device.type in ("cuda", "cpu") else None
    return [torch.optim.Adam(net.parameters(), lr=lr, betas=(beta1, beta2), weight_decay=decay, fused=fused)
            for net, decay in ((generator, 0.0), (discriminator, d_weight_decay))]  # fmt: skip
