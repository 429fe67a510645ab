"""The GAN LightningModule: k D updates, then one G update, composed of the networks (`models/`, heads included),
the latent space (`latents.py`), the objective (`objectives.py`), the EMA generator (`ema.py`) and `guards.py`."""

from __future__ import annotations

import sys
import warnings
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from gan_lightning.augment import PIPELINE_OPS, TRANSFORMS, AdaptiveAugment, AugmentPipe, DiffAugment, build_augment
from gan_lightning.core import plugins
from gan_lightning.core.compat import FORMAT as CHECKPOINT_FORMAT
from gan_lightning.core.compat import upgrade_checkpoint
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.injected import build_component, describe_component, is_spec
from gan_lightning.core.options import Option, Options, call_with, declared
from gan_lightning.models import MODELS, build_models, heads, model_options
from gan_lightning.models.heads import Critic, spectral_norm_all, unnormalisable_layers
from gan_lightning.regularizers import REGULARIZERS
from gan_lightning.training import accumulate, optim, schedules
from gan_lightning.training.ema import EMA, adopt_ema_state
from gan_lightning.training.guards import AmpSkipCounter, FiniteGuard, NonFiniteLossError
from gan_lightning.training.latents import NOISES, Latents, LatentSpace, Truncation, truncation_options
from gan_lightning.training.objectives import OBJECTIVES, Batch, Objective, PhaseLoss, build_objective
from gan_lightning.training.optim import build_optimizers
from gan_lightning.training.rng import GlobalRNG
from gan_lightning.training.schedules import Schedules, total_iterations
from gan_lightning.training.steps import (
    adopt_component_state,
    adversarial_iteration,
    compile_networks,
    generate,
    iteration_seed,
    step_metrics,
    training_batch,
)

Tensor = torch.Tensor
__all__ = ["GAN", "NonFiniteLossError", "iteration_seed"]


# The module's own options: how it seeds, guards and speeds up training.
# fmt: off
options = (
    # the train command takes 0 .. 2^32 - 1 (Lightning's seed_everything refuses others); a GAN built in Python, or
    # loaded from its checkpoint, takes any integer
    Option("seed", 0, "seed for weights, data order and noise, 0 to 2^32 - 1"),
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
            generator, discriminator = build_models(model, **{**hp, **shape}, mixing_latent=self.latents.mixing_latent)
        self.generator = generator
        self.discriminator = Critic.build(discriminator, num_classes=self.latents.num_classes,
                                          n_cat=self.latents.n_cat, n_cont=self.latents.n_cont)  # fmt: skip
        if hp["spectral_norm"]:
            spectral_norm_all(self.discriminator)
            if own := unnormalisable_layers(self.discriminator):  # the train command refuses these for a new run
                warnings.warn(f"spectral_norm leaves D's {', '.join(own)} layers unnormalised", stacklevel=2)
        for regularizer in getattr(self.objective, "regularizers", {}).values():
            regularizer.check_models(self.generator, self.discriminator)  # e.g. path length needs a style-based G
        self.ema = EMA.from_options(generator, hp)
        self.schedules = Schedules.from_options(hp, self.objective, self.ema)
        self.finite = FiniteGuard(hp["finite_check_every"])
        self.amp = AmpSkipCounter()
        self.automatic_optimization = False
        self.global_rng = GlobalRNG()
        self._rng: torch.Generator | None = None
        self._compiled = False
        self._unlogged: tuple[dict[str, Tensor], dict[str, float]] | None = None  # this iteration's, when not logged

    @staticmethod
    def declared_options() -> Options:
        """Every option of the GAN's components, each declared once by its component (this file's: `options`)."""
        objectives = (declared(OBJECTIVES.get(name)) for name in OBJECTIVES.names())
        regularizers = (declared(REGULARIZERS.get(name)) for name in REGULARIZERS.names())
        components = Options(*objectives, *regularizers, declared(DiffAugment, AdaptiveAugment))
        return Options(model_options(), declared(LatentSpace, heads), components,
                       schedules.schedule_options(components),
                       declared(optim, accumulate, schedules, EMA, sys.modules[__name__]))  # fmt: skip

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> GAN:  # type: ignore[override]
        """Lightning's `load_from_checkpoint`, after importing the plugins the checkpoint records (whose registered
        names and options rebuilding it needs); one line naming a plugin that cannot be imported."""
        plugins.require(plugins.checkpoint_plugins(checkpoint_path), f"the checkpoint {checkpoint_path}")
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

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
        truncate the noise, not the labels or codes (`LatentSpace.truncate`; psi in W for a style-based G); latents
        drawn here and threshold redraws come from `rng`, default the module's.
        """
        rng = self.rng if rng is None else rng
        if latents is None:
            n = next((len(t) for t in parts.values() if t is not None), n)
            if n is None or n < 1:
                raise ValueError("sample() needs a positive n, or z / labels / codes / latents")
            latents = self.latents.draw(n, rng, self.device, **parts)
        truncation = Truncation.of(truncation, truncation_threshold)
        G = self.sampling_generator(ema)
        # a style-based G truncates toward its average w (StyleGAN's trick); the threshold still redraws z
        in_w = getattr(G, "truncates_in_w", False)
        if in_w and truncation.psi is not None:  # z's own truncation, which checks psi, is skipped for it
            Options(truncation_options)["truncation"].validate(truncation.psi)
        latents = self.latents.truncate(latents, rng, None if in_w else truncation.psi, truncation.threshold)
        inputs = latents.input if isinstance(latents, Latents) else latents
        return generate(G, inputs, batch_size, self.device, truncation.psi if in_w else None)

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
        total = total_iterations(self.trainer.max_steps, self.steps_per_iteration)
        scheduled = self.schedules.apply(self, iteration, total)  # lr, gamma, EMA horizon, augmentation p
        G = self.generator
        d, g = adversarial_iteration(
            real, iteration, G=G, D=self.discriminator, latents=self.latents, objective=self.objective,
            d_steps=self.d_steps, rng=self.iteration_rng(iteration),
            update_d=partial(self._update, opt_d), update_g=partial(self._update, opt_g),
            d_phase=lambda: self.toggled_optimizer(opt_d), g_phase=lambda: self.toggled_optimizer(opt_g),
        )  # fmt: skip
        iteration += 1
        if self.ema is not None:
            self.ema.update(G, iteration)
        self.finite.step(iteration, (d.loss.detach(), g.loss.detach()), self.trainer.strategy)  # regularizers included
        # Lightning writes step metrics only every `log_every_n_steps` batches: build them only then.
        if iteration % max(1, self.trainer.log_every_n_steps) == 0:
            self._log_step(d.stats | g.stats, scheduled)
            self._unlogged = None
        else:
            self._unlogged = (d.stats | g.stats, scheduled)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log an iteration Lightning would skip when the run stops after it (a signal, a callback's stop): Lightning
        writes the step metrics it holds whenever it stops, which would repeat the last logged iteration's."""
        if self.trainer.should_stop and self._unlogged is not None:
            self._log_step(*self._unlogged)
        self._unlogged = None

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
        """Refuse to checkpoint a non-finite state; store the global RNG states (for randomness in custom nets) and
        the plugins whose components this GAN uses."""
        self.finite.check(self.trainer.strategy)
        self.global_rng.save(checkpoint)
        checkpoint["gan_lightning_format"] = CHECKPOINT_FORMAT
        checkpoint[plugins.CHECKPOINT_KEY] = self.plugins()

    def plugins(self) -> dict[str, str | None]:
        """The plugins (with their versions) this GAN's components come from: those that registered the names it
        uses (model, loss, noise, regularizers, augmentation transforms) and those defining any of its modules
        (injected networks or objectives). What loading it needs."""
        named = [(MODELS, self.hparams.model), (OBJECTIVES, self.hparams.loss), (NOISES, self.hparams.noise)]
        named += [(REGULARIZERS, key) for key in getattr(self.objective, "regularizers", {})]
        for module in self.modules():  # the augmentation's transforms, and those of regularizers (CR's, bCR's)
            if isinstance(module, DiffAugment):
                named += [(TRANSFORMS, name.strip()) for name in module.policy.split(",") if name.strip()]
            elif isinstance(module, AugmentPipe):
                named += [(PIPELINE_OPS, name) for name in module.ops]
        origins = plugins.versions(registry.origin(name) for registry, name in named)
        return {**origins, **plugins.owners(self.modules())}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Upgrade checkpoints of older releases in place; fit the objective's component state and the EMA to this
        run's components; keep the global RNG states to reapply on train start."""
        self.upgrade_checkpoint(checkpoint)
        adopt_component_state(checkpoint["state_dict"], self)
        adopt_ema_state(checkpoint["state_dict"], self.ema)
        self.global_rng.load(checkpoint)

    def upgrade_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint dict of an earlier release upgraded in place to this module's state-dict keys."""
        regularizers = getattr(self.objective, "regularizers", {})
        upgrade_checkpoint(checkpoint, list(regularizers.keys()) if isinstance(regularizers, nn.ModuleDict) else [])

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reapply a resumed checkpoint's global RNG states (Lightning restores none), once, before the first
        iteration: after the resumed data loader's iterator has drawn its base seed from the global generator,
        which an uninterrupted run did at the epoch's start, before the checkpoint's states were captured. Only for a
        fit that resumes (`ckpt_path`): weights loaded with `load_from_checkpoint` and fitted afresh keep the seed."""
        if self.trainer.ckpt_path:
            self.global_rng.restore()

    def ddp_networks(self) -> list[nn.Module]:
        """The networks `PerNetworkDDPStrategy` wraps separately: each phase all-reduces only its own gradients."""
        return [self.generator, self.discriminator]
