"""Training-health warnings read off the logged losses: D winning completely, D flat at chance while G falls."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from gan_lightning.loggers import log_text


def diagnose(
    history: list[dict[str, float]], chance_d_loss: float | None, window: int = 10, saturates: bool = True
) -> str | None:
    """A warning about the last `window` logged points of training, or None when they look healthy.

    Two signs of a failing GAN: D wins completely (D(x) ~ 1, D(G(z)) ~ 0: G's gradients vanish; only for a loss
    that `saturates`, whose logits are log-odds, so that p_real and p_fake are D's probabilities), and the cs231n
    warning sign, D's loss flat at its chance value while G's loss keeps falling (G is fooling a D that has
    stopped learning, usually by collapsing onto a few modes).
    """
    if len(history) < window:
        return None
    recent = history[-window:]
    if saturates and all(h["p_real"] > 0.99 and h["p_fake"] < 0.01 for h in recent):
        return (
            f"D wins completely: D(x) > 0.99 and D(G(z)) < 0.01 over the last {window} logged steps, so G's "
            "gradients vanish; try --loss lsgan, a lower --lr, or fewer --d-steps"
        )
    if chance_d_loss is not None:
        tolerance = 0.05 * max(chance_d_loss, 0.1)
        flat = all(abs(h["d_loss"] - chance_d_loss) < tolerance for h in recent)
        g = torch.tensor([h["g_loss"] for h in recent], dtype=torch.float64)
        t = torch.arange(window, dtype=torch.float64)
        slope = ((t - t.mean()) * (g - g.mean())).sum() / (t - t.mean()).square().sum()
        falling = slope * (window - 1) < -0.05 * g.abs().mean().clamp_min(0.1)  # fell >5% over the window
        if flat and falling:
            return (
                f"D's loss stays at its chance value {chance_d_loss:.3f} while G's loss keeps falling: D has "
                "stopped learning and G is likely collapsing; inspect the sample grids for repeated images"
            )
    return None


class TrainingHealth(Callback):
    """Watches the logged losses and D probabilities and warns once per kind of failure (see `diagnose`).

    Reads `trainer.callback_metrics` only when Lightning has just logged, so it adds no per-step host sync.
    The warning goes to the Python log and, as text under the tag `health`, to TensorBoard.
    """

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.history: list[dict[str, float]] = []
        self.warned: set[str] = set()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        every = max(1, trainer.log_every_n_steps)
        if not trainer.is_global_zero or pl_module.iteration % every:
            return
        keys = ("d_loss", "g_loss", "p_real", "p_fake")
        metrics = trainer.callback_metrics
        if not all(f"train/{k}" in metrics for k in keys):
            return
        self.history.append({k: float(metrics[f"train/{k}"]) for k in keys})
        del self.history[: -self.window]
        objective = pl_module.objective
        message = diagnose(self.history, objective.chance_d_loss, self.window, objective.saturates)
        kind = message.split(":")[0] if message else None
        if message is None or kind in self.warned:
            return
        self.warned.add(kind)
        text = f"iteration {pl_module.iteration}: {message}"
        rank_zero_warn(text)
        log_text(trainer, "health", text, pl_module.iteration)
