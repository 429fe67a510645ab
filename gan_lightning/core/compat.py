"""Loading checkpoints written by earlier releases.

Module paths: checkpoints record injected components by import path (`gan_lightning.objectives.Hinge`); the modules
that moved into layers (`core/`, `training/`, `commands/`, `bench/`) are found under their new names
(`current_path`).

State dicts: format 1 (up to commit 716e44e) predates the composable core.
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


# modules that moved when the package was laid out in layers: old dotted path -> new
MOVED_MODULES = {
    "gan_lightning.options": "gan_lightning.core.options",
    "gan_lightning.registry": "gan_lightning.core.registry",
    "gan_lightning.components": "gan_lightning.core.injected",
    "gan_lightning.errors": "gan_lightning.core.errors",
    "gan_lightning.module": "gan_lightning.training.gan",
    "gan_lightning.objectives": "gan_lightning.training.objectives",
    "gan_lightning.latents": "gan_lightning.training.latents",
    "gan_lightning.ema": "gan_lightning.training.ema",
    "gan_lightning.optim": "gan_lightning.training.optim",
    "gan_lightning.accumulate": "gan_lightning.training.accumulate",
    "gan_lightning.schedules": "gan_lightning.training.schedules",
    "gan_lightning.guards": "gan_lightning.training.guards",
    "gan_lightning.strategy": "gan_lightning.training.strategy",
    "gan_lightning.classifier": "gan_lightning.metrics.classifier",
}


def current_path(path: str) -> str:
    """A recorded import path with a moved module's old name replaced by its current one."""
    for old, new in MOVED_MODULES.items():
        if path == old or path.startswith(old + "."):
            return new + path[len(old) :]
    return path


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
