"""The GAN LightningModule: k D updates, then one G update, composed of the networks (`models/`, heads included),
the latent space (`latents.py`), the objective (`objectives.py`), the EMA generator (`ema.py`) and `guards.py`."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from gan_lightning.augment import AdaptiveAugment, DiffAugment, build_augment
from gan_lightning.core.compat import FORMAT as CHECKPOINT_FORMAT
from gan_lightning.core.compat import upgrade_checkpoint
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.injected import build_component, describe_component, is_spec
from gan_lightning.core.options import Option, Options, call_with, declared
from gan_lightning.models import build_models, heads, model_options
from gan_lightning.models.heads import Critic, spectral_norm_all
from gan_lightning.regularizers import REGULARIZERS
from gan_lightning.training import accumulate, optim, schedules
from gan_lightning.training.ema import EMA
from gan_lightning.training.guards import AmpSkipCounter, FiniteGuard, GlobalRNG, NonFiniteLossError, grad_norm
from gan_lightning.training.latents import Latents, LatentSpace, Truncation
from gan_lightning.training.objectives import OBJECTIVES, Batch, Objective, PhaseLoss, build_objective
from gan_lightning.training.optim import build_optimizers
from gan_lightning.training.schedules import Schedules, total_iterations

Tensor = torch.Tensor
__all__ = ["GAN", "NonFiniteLossError", "iteration_seed"]


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


def move_tensors(batch: Any, device: torch.device) -> Any | None:
    """A tuple or list of tensors moved tensor by tensor (None for any other batch)."""
    if type(batch) in (tuple, list) and all(isinstance(t, Tensor) for t in batch):
        # Lightning's generic walk costs more Python per batch than this whole module's bookkeeping; as Lightning,
        # no non-blocking copies to the CPU or MPS
        non_blocking = device.type not in ("cpu", "mps")
        return type(batch)([t.to(device, non_blocking=non_blocking) for t in batch])
    return None


def generate(net: nn.Module, inputs: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """`net(inputs)` (B, ...) -> images (B, C, H, W) in eval mode, in chunks; the net's mode is restored after."""
    was_training = net.training
    net.eval()
    try:
        return torch.cat([net(chunk.to(device)) for chunk in inputs.split(batch_size)])
    finally:
        net.train(was_training)


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
    return (seed * 1_000_003 + rank) * 1_000_000_007 + iteration


# The module's own options: how it seeds, guards and speeds up training.
# fmt: off
options = (
    Option("seed", 0, "seed for weights, data order and noise"),
    Option("finite_check_every", 10, "check the losses for inf/NaN every N iterations", positive=True,
           resume="free"),
    Option("channels_last", False, "NHWC memory format for convolutional models", resume="free"),
    Option("compile", False, "torch.compile the generator and the discriminator (D stays eager under WGAN-GP, R1 "
           "or R2: torch.compile has no double backward)", resume="free"),
)
# fmt: on


class GAN(LightningModule):
    """A GAN trained with manual optimization: `d_steps` discriminator updates, then one generator update.

    Built by name (`GAN("dcgan_mnist", loss="hinge")`) from the options its components declare
    (`GAN.declared_options()`; defaults filled, values validated, all saved as hyperparameters), or from injected
    `generator` / `discriminator` modules (D returns logits) and `objective`, recorded by class and options so
    `load_from_checkpoint(path)` rebuilds them too. Each batch is split into `d_steps` chunks so every D update
    sees fresh real images. Lightning's `global_step` counts optimizer steps, `d_steps + 1` per iteration;
    `iteration` counts generator updates, and `optimizer_steps(n)` converts an iteration budget for the Trainer.
    Updates may accumulate micro-batches (`accumulate.py`); scheduled values are set per iteration (`schedules.py`).
    """

    def __init__(self, model: str = "mlp", *, generator: nn.Module | dict | None = None,
                 discriminator: nn.Module | dict | None = None, objective: Objective | dict | None = None,
                 **options: Any) -> None:  # fmt: skip
        super().__init__()
        if (generator is None) != (discriminator is None):
            raise ConfigError("pass both `generator` and `discriminator` modules, or neither (to use `model`)")
        generator, discriminator, objective = (
            build_component(c, name) if is_spec(c) else c
            for c, name in ((generator, "generator"), (discriminator, "discriminator"), (objective, "objective"))
        )
        hp = self.declared_options().resolve({"model": model, **options}, what="GAN option")
        injected = {"generator": generator, "discriminator": discriminator, "objective": objective}
        # Injected components are saved by class and options (their weights are in the state dict).
        self.save_hyperparameters({**hp, **{k: describe_component(v) for k, v in injected.items() if v is not None}})
        self.latents = LatentSpace.from_options(hp)
        self.objective = objective if objective is not None else build_objective(hp, build_augment(hp))
        self.d_steps = hp["d_steps"] or self.objective.default_d_steps
        if generator is None:
            shape = {"latent_dim": self.latents.input_dim, "num_classes": self.latents.num_classes}
            generator, discriminator = build_models(model, **{**hp, **shape})
        self.generator = generator
        self.discriminator = Critic.build(discriminator, num_classes=self.latents.num_classes,
                                          n_cat=self.latents.n_cat, n_cont=self.latents.n_cont)  # fmt: skip
        if hp["spectral_norm"]:
            spectral_norm_all(self.discriminator)
        self.ema = EMA.from_options(generator, hp)
        self.schedules = Schedules.from_options(hp, self.objective, self.ema)
        self.finite = FiniteGuard(hp["finite_check_every"])
        self.amp = AmpSkipCounter()
        self.automatic_optimization = False
        self.global_rng = GlobalRNG()
        self._rng: torch.Generator | None = None
        self._compiled = False

    @staticmethod
    def declared_options() -> Options:
        """Every option of the GAN's components, each declared once by its component (this file's: `options`)."""
        objectives = (declared(OBJECTIVES.get(name)) for name in OBJECTIVES.names())
        regularizers = (declared(REGULARIZERS.get(name)) for name in REGULARIZERS.names())
        return Options(model_options(), declared(LatentSpace, heads), *objectives, *regularizers,
                       declared(optim, accumulate, schedules, DiffAugment, AdaptiveAugment, EMA,
                                sys.modules[__name__]))  # fmt: skip

    # ---------------------------------------------------------------------------------------------- counting
    @property
    def steps_per_iteration(self) -> int:
        """Optimizer steps Lightning counts per iteration: `d_steps` for D plus one for G."""
        return self.d_steps + 1

    def optimizer_steps(self, iterations: int) -> int:
        """The `Trainer(max_steps=...)` that stops after `iterations` generator updates."""
        return iterations * self.steps_per_iteration

    @property
    def iteration(self) -> int:
        """Completed iterations, i.e. generator updates (not Lightning's optimizer-step `global_step`)."""
        return self.global_step // self.steps_per_iteration

    # ------------------------------------------------------------------------------------------ randomness
    @property
    def rng(self) -> torch.Generator:
        """The private noise stream on the module's device: nothing else draws from it."""
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device).manual_seed(self.hparams.seed)
        return self._rng

    def iteration_rng(self, iteration: int) -> torch.Generator:
        """The noise stream reseeded for `iteration` on this rank (`iteration_seed`)."""
        return self.rng.manual_seed(iteration_seed(self.hparams.seed, self.global_rank, iteration))

    # -------------------------------------------------------------------------------------------- sampling
    def forward(self, inputs: Tensor) -> Tensor:
        """Map generator inputs (B, latents.input_dim) to images (B, C, H, W) in [-1, 1]."""
        return self.generator(inputs)

    @torch.no_grad()
    def sample(self, n: int | None = None, *, latents: Latents | Tensor | None = None, ema: bool | None = None,
               batch_size: int = 1024, truncation: Truncation | float | None = None,
               truncation_threshold: float | None = None,
               rng: torch.Generator | None = None, **parts: Tensor | None) -> Tensor:  # fmt: skip
        """Images in [-1, 1] in eval mode, from the EMA generator when there is one.

        Pass `latents` (a `Latents` or full generator inputs), or `n` and any parts (`z`, `labels`, `cat`, `cont`).
        `truncation` (psi in (0, 1], or a `Truncation` carrying psi and threshold) and `truncation_threshold`
        truncate the noise, not the labels or codes (`LatentSpace.truncate`); latents drawn here and threshold
        redraws come from `rng`, default the module's.
        """
        rng = self.rng if rng is None else rng
        if latents is None:
            n = next((len(t) for t in parts.values() if t is not None), n)
            if n is None or n < 1:
                raise ValueError("sample() needs a positive n, or z / labels / codes / latents")
            latents = self.latents.draw(n, rng, self.device, **parts)
        truncation = Truncation.of(truncation, truncation_threshold)
        latents = self.latents.truncate(latents, rng, truncation.psi, truncation.threshold)
        inputs = latents.input if isinstance(latents, Latents) else latents
        return generate(self.sampling_generator(ema), inputs, batch_size, self.device)

    def sampling_generator(self, ema: bool | None = None) -> nn.Module:
        """The generator to sample from: the EMA one (statistics up to date) by default when it exists."""
        if ema and self.ema is None:
            raise ValueError("this model has no EMA generator (train with ema_decay / --ema-decay)")
        if self.ema is None or ema is False:
            return self.generator
        rng = torch.Generator(self.device).manual_seed(self.hparams.seed + 7)  # fixed: same weights, same statistics
        # untruncated latents: the statistics belong to the weights, and truncation is only a choice at sampling time
        return self.ema.ready(lambda n: self.latents.draw(n, rng, self.device).input)

    # -------------------------------------------------------------------------------------------- training
    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One iteration: `d_steps` D updates on fresh real chunks, then one G update on the last chunk."""
        real = training_batch(batch, bool(self.latents.num_classes), self.hparams.channels_last)
        opt_g, opt_d = self.optimizers()
        iteration = self.iteration  # completed so far; the D-step index of update i is iteration * d_steps + i
        G, D, rng = self.generator, self.discriminator, self.iteration_rng(iteration)
        total = total_iterations(self.trainer.max_steps, self.steps_per_iteration)
        scheduled = self.schedules.apply(self, iteration, total)  # lr, gamma, EMA horizon, augmentation p
        with self.toggled_optimizer(opt_d):
            for step, chunk in enumerate(real.split(self.d_steps), start=iteration * self.d_steps):
                # conditional fakes take the real labels: both sides of D (and any penalty) see the same classes
                latents = self.latents.draw(len(chunk.images), rng, self.device, labels=chunk.labels)
                d = self._update(opt_d, partial(self.objective.d_loss, G, D, rng=rng, step=step), chunk, latents)
                self.objective.end_d_update(step)  # components with per-update state (ADA's p) move it once
        with self.toggled_optimizer(opt_g):
            latents = self.latents.draw(len(chunk.images), rng, self.device)
            g = self._update(opt_g, partial(self.objective.g_loss, G, D, rng=rng, step=iteration), chunk, latents)
        iteration += 1
        if self.ema is not None:
            self.ema.update(G, iteration)
        self.finite.step(iteration, (d.loss.detach(), g.loss.detach()), self.trainer.strategy)  # regularizers included
        # Lightning writes step metrics only every `log_every_n_steps` batches: build them only then.
        if iteration % max(1, self.trainer.log_every_n_steps) == 0:
            self._log_step(d.stats | g.stats, scheduled)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move an (images, labels) batch tensor by tensor; other batch types take Lightning's generic walk."""
        moved = move_tensors(batch, device)
        return moved if moved is not None else super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _update(self, optimizer: Any, phase: accumulate.Phase, real: Batch, latents: Latents) -> PhaseLoss:
        """zero_grad, backward of `phase`'s loss (over `accumulate` micro-batches) and one step through Lightning
        (precision plugin, strategy); counts fp16-skipped steps."""
        optimizer.zero_grad(set_to_none=True)
        out = accumulate.accumulate(phase, real, latents, self.hparams.accumulate, self.manual_backward,
                                    self.trainer.strategy)  # fmt: skip
        self.amp.step(getattr(self.trainer.precision_plugin, "scaler", None), optimizer.step)
        return out

    def _log_step(self, stats: dict[str, Tensor], scheduled: dict[str, float]) -> None:
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        metrics = step_metrics(stats, self.generator, self.discriminator, self.amp.skipped if scaler else None)
        metrics |= {f"train/{k}": v for k, v in scheduled.items()}  # the values this iteration used
        # "step" is Lightning's documented x-axis override: iterations, the axis sample grids and val/ metrics use
        self.log_dict({**metrics, "step": float(self.iteration)}, on_step=True, on_epoch=False)

    def configure_model(self) -> None:
        """Apply the speed options on the target device, before the optimizers exist."""
        if self.hparams.channels_last:
            # NHWC lets cuDNN pick tensor-core convolution kernels without layout transposes.
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self._compiled:  # Lightning calls this at every trainer entry point
            self._compiled = True
            compile_networks(self.generator, self.discriminator, self.objective)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers of `optim.py`: G's, then D's (its heads included)."""
        return call_with(build_optimizers, self.hparams, generator=self.generator,
                         discriminator=self.discriminator, device=self.device)  # fmt: skip

    # ----------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to checkpoint a non-finite state; store the global RNG states (for randomness in custom nets)."""
        self.finite.check(self.trainer.strategy)
        self.global_rng.save(checkpoint)
        checkpoint["gan_lightning_format"] = CHECKPOINT_FORMAT

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Upgrade checkpoints of older releases in place; fit the objective's component state to this run's
        components; keep the global RNG states to reapply on train start."""
        upgrade_checkpoint(checkpoint)
        adopt_component_state(checkpoint["state_dict"], self)
        self.global_rng.load(checkpoint)

    def on_train_start(self) -> None:
        """Reapply a resumed checkpoint's global RNG states (Lightning restores none)."""
        self.global_rng.restore()

    def ddp_networks(self) -> list[nn.Module]:
        """The networks `PerNetworkDDPStrategy` wraps separately: each phase all-reduces only its own gradients."""
        return [self.generator, self.discriminator]
