"""Loading checkpoints written by earlier releases.

Module paths: checkpoints record injected components by import path (`gan_lightning.objectives.Hinge`); the modules
that moved into layers (`core/`, `training/`, `commands/`, `bench/`) are found under their new names
(`current_path`).

State dicts: format 1 (up to commit 716e44e) predates the composable core; format 2 (up to the layered layout)
kept the objective's regularizers in a list, their state keyed by position; format 3 keys it by name.
Format 1 kept the heads and the EMA generator on the LightningModule itself; format 2 keeps the heads with the
discriminator (`Critic`) and the EMA generator in its component. Parameter order, and so the optimizer states,
is unchanged; only state-dict keys move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FORMAT = 3
REGULARIZER_PREFIX = "objective.regularizers."
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


def upgrade_checkpoint(checkpoint: dict[str, Any], regularizer_keys: Sequence[str] = ()) -> None:
    """Upgrade a Lightning checkpoint dict of an earlier format in place (no-op for the current one).

    `regularizer_keys` are the names of the loading objective's regularizers in order: format 2 kept them in a
    list, state keyed by position (`objective.regularizers.0.`), which matches the same regularizers in the same
    (registry) order; format 3 keys them by name (`objective.regularizers.lecam.`).
    """
    found = checkpoint.get("gan_lightning_format", 1)
    if found >= FORMAT or "state_dict" not in checkpoint:
        return
    state = checkpoint["state_dict"]
    if found < 2:
        state = upgrade_state_dict(state)
    checkpoint["state_dict"] = name_regularizer_state(state, regularizer_keys)
    checkpoint["gan_lightning_format"] = FORMAT


def name_regularizer_state(state_dict: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """Format-2 regularizer state keyed by position, renamed to `keys` (the regularizers' names, in order)."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(REGULARIZER_PREFIX):
            index, _, rest = key[len(REGULARIZER_PREFIX) :].partition(".")
            if index.isdigit() and int(index) < len(keys):
                key = f"{REGULARIZER_PREFIX}{keys[int(index)]}.{rest}"
        renamed[key] = value
    return renamed
