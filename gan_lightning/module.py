"""The GAN LightningModule: a discriminator phase and a generator phase under manual optimization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
        self._noise_state: Tensor | None = None  # restored from a checkpoint before the generator exists

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
        # A private stream, so noise does not depend on whatever else draws from the global RNG, and its state
        # can be checkpointed; each DDP rank draws different noise.
        if self._noise_gen is None or self._noise_gen.device != self.device:
            gen = torch.Generator(device=self.device)
            if self._noise_state is not None:
                gen.set_state(self._noise_state)
                self._noise_state = None
            else:
                rank = self.trainer.global_rank if self._trainer is not None else 0
                gen.manual_seed(self.hparams.seed * 1000 + rank)
            self._noise_gen = gen
        return self._noise_gen

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
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
        return {
            "d_loss": loss.detach(),
            "real_logits": real_logits.detach(),
            "fake_logits": fake_logits.detach(),
        }

    def generator_step(self, batch_size: int, optimizer: Any) -> Tensor:
        """One G update on fresh noise; gradients flow through D, whose parameters are left untouched."""
        with self.toggled_optimizer(optimizer):
            loss = self.adversarial.g(self._logits(self.generator(self.sample_noise(batch_size))))
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
        return loss.detach()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One iteration: `d_steps` D updates on fresh real chunks, then one G update."""
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        if real.shape[0] < self.d_steps:
            raise ConfigError(f"a batch of {real.shape[0]} images cannot feed d_steps={self.d_steps} D updates")
        opt_g, opt_d = self.optimizers()
        for chunk in real.chunk(self.d_steps):
            d_out = self.discriminator_step(chunk, opt_d)
        g_loss = self.generator_step(real.shape[0] // self.d_steps, opt_g)
        self._log_step(d_out, g_loss)

    def _log_step(self, d_out: dict[str, Tensor], g_loss: Tensor) -> None:
        # Tensors, not floats: `.item()` here would sync the device every iteration.
        metrics = {
            "train/d_loss": d_out["d_loss"],
            "train/g_loss": g_loss,
            "train/p_real": torch.sigmoid(d_out["real_logits"]).mean(),
            "train/p_fake": torch.sigmoid(d_out["fake_logits"]).mean(),
        }
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
        """Store the noise stream so a resumed run draws exactly the noise the uninterrupted run would have."""
        if self._noise_gen is not None:
            checkpoint["gan_noise_rng"] = self._noise_gen.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the noise stream saved by `on_save_checkpoint`."""
        self._noise_state = checkpoint.get("gan_noise_rng")
        self._noise_gen = None
