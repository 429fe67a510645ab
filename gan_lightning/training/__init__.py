"""Training: the GAN LightningModule (`gan.py`) and what it composes: objectives, latents, EMA, optimizers,
accumulation, schedules, guards and the per-network DDP strategy."""
