"""Loading checkpoints written before the composable core (format 1, up to commit 716e44e).

Format 1 kept the heads and the EMA generator on the LightningModule itself; format 2 keeps the heads with the
discriminator (`Critic`) and the EMA generator in its component. Parameter order, and so the optimizer states,
is unchanged; only state-dict keys move.
"""

from __future__ import annotations

from typing import Any

FORMAT = 2
_RENAMES = (  # format-1 prefix -> format-2 prefix, first match wins
    ("discriminator.", "discriminator.net."),
    ("class_embed.", "discriminator.projection.embed."),
    ("q_head.", "discriminator.q_head.net."),
    ("generator_ema.", "ema.module."),
)


def upgrade_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A format-1 LightningModule state dict with its keys renamed for format 2."""
    upgraded = {}
    for key, value in state_dict.items():
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        upgraded[key] = value
    return upgraded


def upgrade_checkpoint(checkpoint: dict[str, Any]) -> None:
    """Upgrade a Lightning checkpoint dict of format 1 in place (no-op for format 2)."""
    if checkpoint.get("gan_lightning_format", 1) >= FORMAT or "state_dict" not in checkpoint:
        return
    checkpoint["state_dict"] = upgrade_state_dict(checkpoint["state_dict"])
    checkpoint["gan_lightning_format"] = FORMAT
