"""What the GAN module's training step is made of, as functions of their inputs: its batch, its logged metrics, the
networks to compile, gradient norms, sampling in chunks, the seed of an iteration and resuming with changed stateful
components."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models.base import generate_images
from gan_lightning.training.batch import Batch, PhaseLoss

if TYPE_CHECKING:
    from gan_lightning.training.accumulate import Phase
    from gan_lightning.training.latents import Latents, LatentSpace
    from gan_lightning.training.objectives import Objective

Tensor = torch.Tensor


def grad_norm(module: nn.Module) -> Tensor:
    """The global L2 norm of `module`'s current gradients (0 when it has none), without a host sync."""
    return nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None])


def step_metrics(stats: dict[str, Tensor], G: nn.Module, D: nn.Module, amp_skipped: Tensor | None) -> dict[str, Tensor]:
    """Every statistic the components returned, under `train/`, plus D's mean probabilities and gradient norms.

    D's logits become `p_real` / `p_fake` (mean sigmoid); any other non-scalar statistic is logged as its mean.
    """
    metrics = {"train/p_real": torch.sigmoid(stats["real_logits"]).mean(),
               "train/p_fake": torch.sigmoid(stats["fake_logits"]).mean()}  # fmt: skip
    metrics |= {f"train/{k}": v.float().mean() for k, v in stats.items() if k not in ("real_logits", "fake_logits")}
    # the last step's gradients are still in .grad: D's from its last update, G's from this one
    metrics |= {"train/grad_norm_d": grad_norm(D), "train/grad_norm_g": grad_norm(G)}
    if amp_skipped is not None:
        metrics["train/amp_skipped_steps"] = amp_skipped.float()
    return metrics


def networks_to_compile(G: nn.Module, D: nn.Module, objective: Any) -> list[nn.Module]:
    """G and D, or only G when the objective's penalties backpropagate through D's input gradients: torch.compile
    has no double backward ("does not currently support double backward"), which WGAN-GP, R1 and R2 need."""
    return [G] if getattr(objective, "differentiates_d_twice", False) else [G, D]


def compile_networks(G: nn.Module, D: nn.Module, objective: Any) -> None:
    """torch.compile `networks_to_compile` in place: parameter names, so checkpoints, stay those of eager runs."""
    nets = networks_to_compile(G, D, objective)
    for net in nets:
        net.compile()
    if D not in nets:
        rank_zero_info("compile: the generator only; the discriminator stays eager, because torch.compile has no "
                       "double backward and the gradient penalties (WGAN-GP, R1, R2) need one")  # fmt: skip


def training_batch(batch: Any, conditional: bool, channels_last: bool) -> Batch:
    """A loader's batch as a `Batch`, checked for labels when training is conditional, NHWC when asked."""
    real = Batch.of(batch)
    if conditional and real.labels is None:
        raise ConfigError("conditional training needs (images, labels) batches")
    if channels_last and real.images.ndim == 4:
        real = real._replace(images=real.images.contiguous(memory_format=torch.channels_last))
    return real


def generate(
    net: nn.Module, inputs: Tensor, batch_size: int, device: torch.device, truncation_psi: float | None = None
) -> Tensor:
    """`net(inputs)` (B, ...) -> images (B, C, H, W) in eval mode, in chunks; the net's mode is restored after.
    `truncation_psi` goes to a generator that truncates in its own latent space (`generate_images`)."""
    was_training = net.training
    net.eval()
    try:
        return torch.cat(
            [generate_images(net, chunk.to(device), None, truncation_psi) for chunk in inputs.split(batch_size)]
        )
    finally:
        net.train(was_training)


def adversarial_iteration(
    real: Batch,
    iteration: int,
    *,
    G: nn.Module,
    D: nn.Module,
    latents: LatentSpace,
    objective: Objective,
    d_steps: int,
    rng: torch.Generator,
    update_d: Callable[[Phase, Batch, Latents], PhaseLoss],
    update_g: Callable[[Phase, Batch, Latents], PhaseLoss],
    d_phase: Callable[[], AbstractContextManager[Any]] = nullcontext,
    g_phase: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> tuple[PhaseLoss, PhaseLoss]:
    """One iteration of the GAN paper's algorithm: `d_steps` D updates, each on a fresh real chunk and new fakes
    (detached inside the objective's D phase), then one G update on the last chunk; returns the last (D, G) losses.

    `GAN.training_step` runs it with Lightning's updates and `toggled_optimizer` as the phases; the plain-loop
    benchmark with plain ones, so both run exactly the same phases. `update_*` backpropagate a phase's loss
    (`Phase`, bound to G, D, the noise stream and the step) on (real chunk, latents) and step the optimizer.
    """
    with d_phase():  # G frozen
        for step, chunk in enumerate(real.split(d_steps), start=iteration * d_steps):
            # conditional fakes take the real labels: both sides of D (and any penalty) see the same classes
            drawn = latents.draw(len(chunk.images), rng, rng.device, labels=chunk.labels)
            d = update_d(partial(objective.d_loss, G, D, rng=rng, step=step), chunk, drawn)
            objective.end_d_update(step)  # components with per-update state (ADA's p) move it once
    with g_phase():  # D frozen
        # a relativistic G loss compares the fakes with this chunk's reals, so a conditional one takes their labels
        # (R3GAN's G phase); otherwise fresh labels
        labels = chunk.labels if objective.g_needs_real else None
        drawn = latents.draw(len(chunk.images), rng, rng.device, labels=labels)
        g = update_g(partial(objective.g_loss, G, D, rng=rng, step=iteration), chunk, drawn)
        objective.end_g_update(iteration)
    return d, g


def adopt_component_state(saved: dict[str, Tensor], module: nn.Module, prefix: str = "objective.") -> None:
    """Resuming with a stateful component (ADA, LeCam, ...) switched on or off: the objective's components are
    training settings (resume rule "warn"), so a new one's buffers start fresh and a removed one's state is dropped,
    with a warning, instead of a strict load refusing the checkpoint. Anything else (networks, learned parameters,
    a component that is still there) must still match."""
    current = module.state_dict()
    buffers = {name for name, _ in module.named_buffers()}
    submodules = {name for name, _ in module.named_modules()}
    fresh = sorted(k for k in current.keys() - saved.keys() if k.startswith(prefix) and k in buffers)
    gone = sorted(k for k in saved.keys() - current.keys()
                  if k.startswith(prefix) and k.rsplit(".", 1)[0] not in submodules)  # fmt: skip
    for key in fresh:
        saved[key] = current[key]
    for key in gone:
        del saved[key]
    if fresh or gone:
        rank_zero_warn(f"the checkpoint's stateful components differ from this run's: starting fresh "
                       f"{', '.join(fresh) or 'nothing'}; dropping {', '.join(gone) or 'nothing'}")  # fmt: skip


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """The seed of one iteration's randomness on one rank.

    A pure function of (seed, rank, iteration): a resumed run draws exactly what the uninterrupted run would have,
    with no generator state to checkpoint, and DDP ranks draw differently.
    """
    value = (seed * 1_000_003 + rank) * 1_000_000_007 + iteration
    # torch's generators take -2^63 .. 2^64 - 1: values outside wrap, those inside keep the streams they always had
    return value if -(2**63) <= value < 2**64 else value % 2**64
