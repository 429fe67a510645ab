"""The train command's presets: source configurations as plain data, and the `--help` epilog listing them."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "cs231n_gan": {"model": "mlp", "loss": "bce", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                   "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    "cs231n_lsgan": {"model": "mlp", "loss": "lsgan", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                     "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    "cs231n_dcgan": {"model": "dcgan_mnist", "loss": "bce", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                     "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    # measured on this project's 2-core CPU (docs/measurements.md, "Modern recipe"): R3GAN's loss with R1 + R2, an EMA
    "modern_mnist": {"model": "dcgan_mnist", "loss": "rpgan", "r1": 1.0, "r2": 1.0, "ema_decay": 0.999,
                     "noise": "uniform", "latent_dim": 96, "lr": 1e-3, "beta1": 0.5, "beta2": 0.999,
                     "batch_size": 128},
    "dcgan_celeba": {"dataset": "celeba", "model": "dcgan", "loss": "bce", "image_size": 64, "latent_dim": 100,
                     "ngf": 64, "ndf": 64, "noise": "normal", "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
                     "batch_size": 128},
    # CIFAR-10 reference configurations: sources, published FIDs and their protocols in
    # docs/reference-configurations.md. Radford et al. 2015 (DCGAN paper: uniform 100-d z, Adam 2e-4, beta1 0.5,
    # batch 128)
    "dcgan_cifar10": {"dataset": "cifar10", "model": "dcgan", "loss": "bce", "image_size": 32, "latent_dim": 100,
                      "ngf": 64, "ndf": 64, "noise": "uniform", "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
                      "batch_size": 128},
    # Miyato et al. 2018, standard CNN: hinge, SN, n_dis 5, Adam 2e-4 (0, 0.9), batch 64, z ~ N(0, I) 128-d
    "sngan_cifar10_cnn": {"dataset": "cifar10", "model": "sngan_cnn", "loss": "hinge", "spectral_norm": True,
                          "d_steps": 5, "lr": 2e-4, "beta1": 0.0, "beta2": 0.9, "batch_size": 64, "noise": "normal",
                          "latent_dim": 128, "max_steps": 100_000},
    # Miyato et al. 2018, ResNet; the authors' sngan_projection configs/sn_cifar10_unconditional.yml: 50k
    # iterations of n_dis 5, lr decayed linearly to 0
    "sngan_cifar10_resnet": {"dataset": "cifar10", "model": "sngan_resnet", "loss": "hinge", "spectral_norm": True,
                             "d_steps": 5, "lr": 2e-4, "beta1": 0.0, "beta2": 0.9, "batch_size": 64,
                             "noise": "normal", "latent_dim": 128, "lr_schedule": "linear", "lr_final": 0.0,
                             "max_steps": 50_000},
    # R3GAN's CIFAR-10 recipe (Huang et al. 2024, preset CIFAR10: conditional, batch 512, 64-d noise, cosine lr
    # 2e-4 -> 5e-5 and gamma 0.05 -> 0.005 over 20M images, augmentation p 0 -> 0.55, EMA) on this project's
    # components: the small normalisation-free `resnet`, not R3GAN's network; the run is those 20M images
    "r3gan_cifar10": {"dataset": "cifar10", "model": "resnet", "conditional": True, "loss": "rpgan", "r1": 0.05,
                      "r2": 0.05, "gamma_schedule": "cosine", "gamma_final": 0.005, "lr": 2e-4, "lr_schedule": "cosine",
                      "lr_final": 5e-5, "beta1": 0.0, "beta2": 0.9, "batch_size": 512, "noise": "normal",
                      "latent_dim": 64, "diffaug": "translation,color,cutout", "diffaug_p": 0.0,
                      "aug_schedule": "cosine", "aug_final": 0.55, "ema_decay": 0.99993, "max_steps": 39_063},
}  # fmt: skip


def preset_help() -> str:
    """The `--help` epilog: every preset with the flags it sets."""
    lines = ["presets (explicit flags override them):"]
    for name, values in PRESETS.items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return "\n".join(lines)
