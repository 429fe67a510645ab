"""The train command's presets: source configurations as plain data, and the `--help` epilog listing them."""

from __future__ import annotations

from typing import Any

# measured on this project's 2-core CPU (docs/measurements.md, "Modern recipe"): R3GAN's loss with R1 + R2, an EMA
_MODERN_MNIST: dict[str, Any] = {"model": "dcgan_mnist", "loss": "rpgan", "r1": 1.0, "r2": 1.0, "ema_decay": 0.999,
                                 "noise": "uniform", "latent_dim": 96, "lr": 1e-3, "beta1": 0.5, "beta2": 0.999,
                                 "batch_size": 128}  # fmt: skip

PRESETS: dict[str, dict[str, Any]] = {
    "cs231n_gan": {"model": "mlp", "loss": "bce", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                   "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    "cs231n_lsgan": {"model": "mlp", "loss": "lsgan", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                     "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    "cs231n_dcgan": {"model": "dcgan_mnist", "loss": "bce", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                     "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    "modern_mnist": _MODERN_MNIST,
    # modern_mnist on Stacked MNIST at twice its batch: the setting that reached 1000 modes with mode KL <= 0.05 at
    # 2000 and 3000 iterations at seeds 0-2 (docs/measurements.md, "Stacked MNIST"), where batch 128 did not at 3000
    "modern_stacked_mnist": {"dataset": "stacked_mnist", **_MODERN_MNIST, "batch_size": 256},
    # modern_mnist at twice its batch, Adam (0, 0.99) at 1.5x its learning rate: under half its FID at 1000
    # iterations on the mean of seeds 0-2, for about twice its time per iteration (docs/measurements.md, "Half
    # modern_mnist's FID"); at 2e-3 one seed of three spiked, at 3e-3 training diverged
    "modern_mnist_2x": {**_MODERN_MNIST, "lr": 1.5e-3, "beta1": 0.0, "beta2": 0.99, "batch_size": 256},
    # Small baselines that fit a 2-core CPU at 1.3-1.7x modern_mnist's cost per iteration (docs/measurements.md,
    # "Modern baselines on MNIST"), MNIST padded to 32 px. R3GAN's network at width 16, one block per stage, with
    # modern_mnist's optimizer, loss, penalties and EMA (R3GAN's CIFAR-10 lr 2e-4, betas (0, 0.9) and gamma 0.05 are
    # made for hundreds of millions of images)
    "r3gan_mnist": {"model": "r3gan", "ngf": 16, "ndf": 16, "r3gan_blocks": 1, "loss": "rpgan", "r1": 1.0, "r2": 1.0,
                    "ema_decay": 0.999, "noise": "normal", "latent_dim": 64, "lr": 1e-3, "beta1": 0.5,
                    "beta2": 0.999, "batch_size": 128},
    # StyleGAN2 at channel_max 16 (G) / 32 (D), w 32, two mapping layers, D 'orig', with StyleGAN2-ADA's 'auto' and
    # 'cifar' rules where they fit: logistic loss, lazy R1 every 16 D steps, Adam 0.0025 betas (0, 0.99), EMA
    # half-life mb * 10 / 32 kimg (312 iterations at batch 128) with ramp-up 0.05; no path length or style mixing
    # (as 'cifar'); R1 gamma 1 (paper256's; modern_mnist's gamma on MNIST)
    "stylegan2_mnist": {"model": "stylegan2", "ngf": 16, "ndf": 32, "w_dim": 32, "mapping_layers": 2,
                        "mbstd_group": 4, "d_architecture": "orig", "style_mixing": 0.0, "loss": "bce", "r1": 1.0,
                        "reg_every": 16, "lr": 0.0025, "beta1": 0.0, "beta2": 0.99, "ema_decay": 0.99778,
                        "ema_rampup": 0.05, "noise": "normal", "latent_dim": 64, "batch_size": 128},
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
    # R3GAN's CIFAR-10 preset (Huang et al. 2024; brownvc/R3GAN train.py --preset CIFAR10 with its README's
    # command: --batch 512 --mirror 1 --aug 1 --cond 1): its network (width 768, 2 blocks per stage, cardinality 96),
    # RpGAN + R1 + R2; cosine schedules over the first 20M images (39,063 iterations), then held: gamma 0.05 -> 0.005,
    # lr 2e-4 -> 5e-5, beta2 0.9 -> 0.99 (beta1 0), EMA half-life 0 -> 5M images, its augmentation pipeline's p
    # 0 -> 0.55; 64-d noise; x-flips; 250M images in all (its paper's CIFAR-10 length, R3GAN issue #18)
    "r3gan_cifar10": {"dataset": "cifar10", "model": "r3gan", "ngf": 768, "ndf": 768, "conditional": True,
                      "mirror": True, "loss": "rpgan", "r1": 0.05, "r2": 0.05, "gamma_schedule": "cosine",
                      "gamma_final": 0.005, "lr": 2e-4, "lr_schedule": "cosine", "lr_final": 5e-5, "beta1": 0.0,
                      "beta2": 0.9, "beta2_schedule": "cosine", "beta2_final": 0.99, "batch_size": 512,
                      "noise": "normal", "latent_dim": 64, "augpipe": "r3gan", "augpipe_p": 0.0,
                      "augpipe_resample_blits": True, "aug_schedule": "cosine", "aug_final": 0.55, "ema_decay": 1e-6,
                      "ema_schedule": "cosine", "ema_final": 0.99992902, "ema_rampup": 0.0, "schedule_length": 39_063,
                      "max_steps": 488_282},
    # StyleGAN2-ADA's 'cifar' configuration (Karras et al. 2020b; NVlabs stylegan2-ada-pytorch train.py cfg_specs
    # 'cifar' with --cond 1 --mirror 1): z = w = 512, 2 mapping layers, channel_max 512, D 'orig', mbstd group 32,
    # conv_clamp 256, no style mixing or path length, logistic loss + lazy R1 gamma 0.01 every 16 D steps, Adam 0.0025
    # (0, 0.99), batch 64, EMA half-life 500k images with ramp-up 0.05, ADA (target 0.6, bgc, 500 kimg, every 4
    # updates), 100M images
    "stylegan2_cifar10": {"dataset": "cifar10", "model": "stylegan2", "ngf": 512, "ndf": 512, "w_dim": 512,
                          "mapping_layers": 2, "channel_base": 32768, "mbstd_group": 32, "d_architecture": "orig",
                          "conv_clamp": 256.0, "style_mixing": 0.0, "conditional": True, "mirror": True,
                          "loss": "bce", "r1": 0.01, "reg_every": 16, "lr": 0.0025, "beta1": 0.0, "beta2": 0.99,
                          "batch_size": 64, "noise": "normal", "latent_dim": 512, "ema_decay": 0.99991128,
                          "ema_rampup": 0.05, "augpipe": "bgc", "augpipe_resample_blits": True, "ada_target": 0.6,
                          "ada_interval": 4, "ada_kimg": 500.0, "max_steps": 1_562_500},
}  # fmt: skip


def preset_help() -> str:
    """The `--help` epilog: every preset with the flags it sets."""
    lines = ["presets (explicit flags override them):"]
    for name, values in PRESETS.items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return "\n".join(lines)
