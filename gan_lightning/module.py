"""The GAN LightningModule: a discriminator phase and a generator phase under manual optimization."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.losses import AdversarialLoss, get_loss, gradient_penalty
from gan_lightning.models import build_models
from gan_lightning.registry import Registry

Tensor = torch.Tensor

NOISES: Registry[Callable[..., Tensor]] = Registry("noise")


@NOISES.register("uniform")
def uniform_noise(shape: tuple[int, ...], *, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """U(-1, 1) noise, as in the cs231n GAN assignment."""
    return torch.rand(shape, device=device, generator=generator).mul_(2).sub_(1)


@NOISES.register("normal")
def normal_noise(shape: tuple[int, ...], *, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """N(0, 1) noise, as in the DCGAN paper and the PyTorch DCGAN tutorial."""
    return torch.randn(shape, device=device, generator=generator)


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")


class GAN(LightningModule):
    """A GAN trained with manual optimization: `d_steps` discriminator updates, then one generator update.

    The networks come from the model registry by name (`model="mlp"`, `"dcgan_mnist"`, `"dcgan"`), or are the
    caller's own `generator` / `discriminator` modules. The discriminator must return raw logits of shape
    (B,) or (B, 1). Each training batch is split into `d_steps` chunks so that every D update sees fresh real
    images (the GAN paper's k minibatches); the CLI loads `d_steps * batch_size` images per iteration.

    Lightning's `global_step` counts optimizer steps: `d_steps + 1` per iteration. `iteration` counts
    generator updates, and `optimizer_steps(n)` converts an iteration budget into `Trainer(max_steps=...)`.
    """

    def __init__(
        self,
        model: str = "mlp",
        *,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        loss: str = "bce",
        latent_dim: int = 96,
        noise: str = "uniform",
        channels: int = 1,
        image_size: int = 28,
        ngf: int = 64,
        ndf: int = 64,
        lr: float = 1e-3,
        beta1: float = 0.5,
        beta2: float = 0.999,
        d_steps: int | None = None,
        gp_weight: float = 10.0,
        seed: int = 0,
        finite_check_every: int = 10,
    ) -> None:
        super().__init__()
        if (generator is None) != (discriminator is None):
            raise ConfigError("pass both `generator` and `discriminator` modules, or neither (to use `model`)")
        custom = generator is not None
        # Modules are saved in the state dict; keeping them out of hparams keeps checkpoints loadable.
        self.save_hyperparameters(ignore=["generator", "discriminator"])
        for name, value in (("latent_dim", latent_dim), ("channels", channels), ("image_size", image_size)):
            _positive(name, value)
        _positive("lr", lr)
        _positive("finite_check_every", finite_check_every)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(f"Adam betas must lie in [0, 1), got ({beta1}, {beta2})")
        self.adversarial: AdversarialLoss = get_loss(loss)
        self.noise_fn = NOISES.get(noise)
        self.d_steps = self.adversarial.default_d_steps if d_steps is None else d_steps
        _positive("d_steps", self.d_steps)
        if custom:
            self.generator, self.discriminator = generator, discriminator
        else:
            self.generator, self.discriminator = build_models(
                model, latent_dim=latent_dim, channels=channels, image_size=image_size, ngf=ngf, ndf=ndf
            )
        self.automatic_optimization = False
        self._noise_gen: torch.Generator | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        # First iteration with a non-finite loss, kept on the device so checking it costs no per-step sync.
        self.register_buffer("_first_nonfinite", torch.tensor(-1), persistent=False)
        self.register_buffer("_amp_skipped", torch.tensor(0), persistent=False)

    # ----------------------------------------------------------------------------------------------- noise
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

    def _noise_generator(self) -> torch.Generator:
        # A private stream: noise does not depend on whatever else draws from the global RNG.
        if self._noise_gen is None or self._noise_gen.device != self.device:
            self._noise_gen = torch.Generator(device=self.device)
            self._noise_gen.manual_seed(self.hparams.seed)
        return self._noise_gen

    def _reseed_noise(self) -> None:
        # Every iteration's noise is a pure function of (seed, rank, iteration): a resumed run draws exactly what
        # the uninterrupted run would have, with no generator state to checkpoint, and DDP ranks draw differently.
        rank = self.trainer.global_rank if self._trainer is not None else 0
        self._noise_generator().manual_seed((self.hparams.seed * 1_000_003 + rank) * 1_000_000_007 + self.iteration)

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw (n, latent_dim) noise from the configured prior, on the module's device."""
        gen = generator if generator is not None else self._noise_generator()
        return self.noise_fn((n, self.hparams.latent_dim), device=gen.device, generator=gen).to(self.device)

    # --------------------------------------------------------------------------------------------- forward
    def forward(self, z: Tensor) -> Tensor:
        """Map noise (B, latent_dim) to images (B, C, H, W) in [-1, 1]."""
        return self.generator(z)

    @torch.no_grad()
    def sample(self, n: int | None = None, *, z: Tensor | None = None, batch_size: int = 1024) -> Tensor:
        """Generate images in [-1, 1] in eval mode (BatchNorm running statistics), from `z` or `n` fresh draws."""
        if z is None:
            if n is None or n < 1:
                raise ValueError("sample() needs a positive n or a noise tensor z")
            z = self.sample_noise(n)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return torch.cat([self.generator(chunk.to(self.device)) for chunk in z.split(batch_size)])
        finally:
            self.generator.train(was_training)

    # ---------------------------------------------------------------------------------------------- phases
    def _logits(self, x: Tensor) -> Tensor:
        return self.discriminator(x).reshape(x.shape[0])

    def discriminator_step(self, real: Tensor, optimizer: Any) -> dict[str, Tensor]:
        """One D update on a real batch and a detached fake batch of the same size; G receives no gradient."""
        with self.toggled_optimizer(optimizer):
            fake = self.generator(self.sample_noise(real.shape[0])).detach()
            real_logits, fake_logits = self._logits(real), self._logits(fake)
            loss = self.adversarial.d(real_logits, fake_logits)
            if self.adversarial.gradient_penalty:
                penalty = gradient_penalty(self._logits, real, fake, generator=self._noise_generator())
                loss = loss + self.hparams.gp_weight * penalty
            self._update(optimizer, loss)
        return {
            "d_loss": loss.detach(),
            "real_logits": real_logits.detach(),
            "fake_logits": fake_logits.detach(),
        }

    def generator_step(self, batch_size: int, optimizer: Any) -> Tensor:
        """One G update on fresh noise; gradients flow through D, whose parameters are left untouched."""
        with self.toggled_optimizer(optimizer):
            loss = self.adversarial.g(self._logits(self.generator(self.sample_noise(batch_size))))
            self._update(optimizer, loss)
        return loss.detach()

    def _update(self, optimizer: Any, loss: Tensor) -> None:
        """zero_grad, backward through Lightning (precision, DDP), step; counts steps 16-mixed skipped."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        scaler = self._grad_scaler()
        scale = scaler._scale.clone() if scaler is not None and scaler._scale is not None else None
        optimizer.step()
        if scale is not None:
            # Lightning calls scaler.update() after every optimizer step (here: D and G alike), and update()
            # lowers the scale exactly when that step found inf/NaN gradients and was skipped. On the device:
            # no host sync.
            self._amp_skipped += (scaler._scale < scale).long()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One iteration: `d_steps` D updates on fresh real chunks, then one G update."""
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        if real.shape[0] < self.d_steps:
            raise ConfigError(f"a batch of {real.shape[0]} images cannot feed d_steps={self.d_steps} D updates")
        opt_g, opt_d = self.optimizers()
        self._reseed_noise()
        for chunk in real.chunk(self.d_steps):
            d_out = self.discriminator_step(chunk, opt_d)
        g_loss = self.generator_step(real.shape[0] // self.d_steps, opt_g)
        finite = torch.isfinite(d_out["d_loss"]) & torch.isfinite(g_loss)
        first = self._first_nonfinite
        first.copy_(torch.where(~finite & (first < 0), torch.full_like(first, self.iteration), first))
        if self.iteration % self.hparams.finite_check_every == 0:
            self.check_finite()
        self._log_step(d_out, g_loss)

    def _grad_scaler(self) -> Any:
        """The 16-mixed gradient scaler Lightning steps with, or None."""
        if self._trainer is None:
            return None
        return getattr(self.trainer.precision_plugin, "scaler", None)

    def check_finite(self) -> None:
        """Raise `NonFiniteLossError` if any loss so far was NaN or Inf (one host sync)."""
        first = int(self._first_nonfinite)
        if first >= 0:
            raise NonFiniteLossError(first)

    def _log_step(self, d_out: dict[str, Tensor], g_loss: Tensor) -> None:
        # Tensors, not floats: `.item()` here would sync the device every iteration.
        metrics = {
            "train/d_loss": d_out["d_loss"],
            "train/g_loss": g_loss,
            "train/p_real": torch.sigmoid(d_out["real_logits"]).mean(),
            "train/p_fake": torch.sigmoid(d_out["fake_logits"]).mean(),
        }
        if self._grad_scaler() is not None:
            metrics["train/amp_skipped_steps"] = self._amp_skipped.float()
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for G, then Adam for D (cs231n defaults: lr 1e-3, betas (0.5, 0.999))."""
        betas = (self.hparams.beta1, self.hparams.beta2)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas),
        ]

    # ----------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to checkpoint a non-finite state; store the global RNG states for the user's own randomness."""
        self.check_finite()
        # Our own randomness (noise, data order) is derived from seeds; this covers e.g. dropout in custom nets.
        checkpoint["gan_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # as tensors and ints, so the checkpoint stays loadable with torch.load(weights_only=True)
            "numpy": _numpy_state_to_safe(np.random.get_state()),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the saved global RNG states to reapply when training resumes."""
        self._rng_to_restore = checkpoint.get("gan_rng")

    def on_train_start(self) -> None:
        """Reapply the global RNG states of a resumed checkpoint (Lightning restores none by itself)."""
        state, self._rng_to_restore = self._rng_to_restore, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_numpy_state_from_safe(state["numpy"]))
        random.setstate(state["python"])


def _numpy_state_to_safe(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "gauss": (has_gauss, cached)}


def _numpy_state_from_safe(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["pos"], state["gauss"][0], state["gauss"][1]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; raised before any checkpoint could store the broken state."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        super().__init__(
            f"non-finite loss at iteration {iteration}: training stopped and no checkpoint was written after it. "
            "Lower --lr, try --precision 32-true or bf16-mixed, or another --loss."
        )
