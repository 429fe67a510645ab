"""The global RNG states: capturing and reapplying them, and carrying them through checkpoints for a resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


class GlobalRNG:
    """Saves the global RNG states in checkpoints and reapplies them when training resumes.

    The project's own randomness (noise, data order, penalties) comes from seeded private streams; this covers
    randomness in users' networks (dropout) and anything else that draws from the global generators.
    """

    KEY = "gan_rng"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def save(self, checkpoint: dict[str, Any]) -> None:
        """Store the current global states in `checkpoint`."""
        checkpoint[self.KEY] = capture_global_rng()

    def load(self, checkpoint: dict[str, Any]) -> None:
        """Remember a checkpoint's states; Lightning restores none by itself, and applying them now would be early."""
        self._pending = checkpoint.get(self.KEY)

    def restore(self) -> None:
        """Apply the remembered states once (call at train start)."""
        if self._pending is not None:
            restore_global_rng(self._pending)
            self._pending = None


def capture_global_rng() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python global RNG states, as tensors and ints (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "gauss": (has_gauss, cached),
        },
        "python": random.getstate(),
    }


def restore_global_rng(state: dict[str, Any]) -> None:
    """Reapply states from `capture_global_rng` (CUDA ones only onto the same number of devices)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state((np_state["name"], keys, np_state["pos"], *np_state["gauss"]))
    random.setstate(state["python"])
