"""The `scripts/train.py` command line: flags and presets -> DataModule, GAN, Trainer."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_lightning.command import CommandStopped, Parser, one_line, run_command
from gan_lightning.data import DATASETS, default_data_dir
from gan_lightning.errors import ConfigError, DataError
from gan_lightning.guards import NonFiniteLossError
from gan_lightning.latents import NOISES
from gan_lightning.models import MODELS
from gan_lightning.objectives import OBJECTIVES

# Defaults for every flag a preset may set; a flag left at None on the command line takes the preset's value,
# then this one. Image size and channels default per dataset (see `_resolve`).
DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "model": "mlp",
    "loss": "bce",
    "latent_dim": 96,
    "noise": "uniform",
    "image_size": None,
    "channels": None,
    "ngf": 64,
    "ndf": 64,
    "batch_size": 128,
    "lr": 1e-3,
    "beta1": 0.5,
    "beta2": 0.999,
    "r1": 0.0,
    "r2": 0.0,
    "reg_every": 1,
    "diffaug": None,
    "spectral_norm": False,
    "ema_decay": None,
}

PRESETS: dict[str, dict[str, Any]] = {
    "cs231n_gan": {"model": "mlp", "loss": "bce", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                   "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    "cs231n_lsgan": {"model": "mlp", "loss": "lsgan", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                     "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    "cs231n_dcgan": {"model": "dcgan_mnist", "loss": "bce", "noise": "uniform", "latent_dim": 96, "lr": 1e-3,
                     "beta1": 0.5, "beta2": 0.999, "batch_size": 128},
    # measured on this project's 2-core CPU: see README "Modern recipe"; R3GAN's loss with R1 + R2 and an EMA
    "modern_mnist": {"model": "dcgan_mnist", "loss": "rpgan", "r1": 1.0, "r2": 1.0, "ema_decay": 0.999,
                     "noise": "uniform", "latent_dim": 96, "lr": 1e-3, "beta1": 0.5, "beta2": 0.999,
                     "batch_size": 128},
    "dcgan_celeba": {"dataset": "celeba", "model": "dcgan", "loss": "bce", "image_size": 64, "latent_dim": 100,
                     "ngf": 64, "ndf": 64, "noise": "normal", "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
                     "batch_size": 128},
}  # fmt: skip


def _preset_help() -> str:
    lines = ["presets (explicit flags override them):"]
    for name, values in PRESETS.items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return "\n".join(lines)


class TrainParser(Parser):
    """The train command's parser: `--config FILE` supplies every flag's value, explicit flags still win."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """Parse once to find `--config`, then again with its values as the defaults."""
        cfg = super().parse_args(args, namespace)
        if not cfg.config:
            return cfg
        from gan_lightning.runconfig import load_config

        try:
            values = load_config(cfg.config, known=set(vars(cfg)))
        except ConfigError as err:
            self.error(str(err))
        self.set_defaults(**values)
        return super().parse_args(args, namespace)


def build_parser() -> Parser:
    """The train command's argument parser."""
    p = TrainParser(
        prog="train.py",
        description="Train a GAN with PyTorch Lightning; watch it with `tensorboard --logdir lightning_logs`.",
        epilog=_preset_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = DEFAULTS
    p.add_argument("--preset", choices=sorted(PRESETS), help="set every flag of a source configuration at once")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="replay a run: RUN_DIR/config.yaml (or RUN_DIR) sets every flag; explicit flags override it",
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS.names(), help=f"dataset (default {d['dataset']})")
    g.add_argument(
        "--data-dir", help="dataset root (default $GAN_DATA_DIR or ./data); (Stacked) MNIST reads DIR/MNIST/raw"
    )
    g.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="download missing data (default: yes for MNIST and Stacked MNIST, no for CelebA)",
    )
    g.add_argument(
        "--image-size",
        type=int,
        help="image side in pixels (default: 28 for (Stacked) MNIST, 32 for it with dcgan, 64 otherwise)",
    )
    g.add_argument("--channels", type=int, choices=(1, 3), help="image channels (default: 1 for MNIST, 3 otherwise)")
    g.add_argument("--skip-bad-images", action="store_true", help="skip unreadable image files instead of failing")
    g.add_argument("--num-workers", type=int, help="DataLoader worker processes (default: per dataset)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS.names(), help=f"architecture (default {d['model']})")
    g.add_argument("--loss", choices=OBJECTIVES.names(), help=f"adversarial loss (default {d['loss']})")
    g.add_argument(
        "--latent-dim",
        "--nz",
        dest="latent_dim",
        type=int,
        help=f"noise dimension (default {d['latent_dim']})",
    )
    g.add_argument("--noise", choices=NOISES.names(), help=f"noise prior (default {d['noise']})")
    g.add_argument("--ngf", type=int, help=f"dcgan generator width (default {d['ngf']})")
    g.add_argument("--ndf", type=int, help=f"dcgan discriminator width (default {d['ndf']})")
    g.add_argument(
        "--conditional",
        action="store_true",
        help="class-conditional GAN: one-hot labels into G, a projection term in D",
    )
    g.add_argument(
        "--infogan",
        action="store_true",
        help="InfoGAN: a 10-way categorical and --n-cont continuous codes into G, a Q head on D",
    )
    g.add_argument("--n-cont", type=int, default=2, help="InfoGAN continuous codes (default 2)")
    g.add_argument("--info-weight", type=float, default=1.0, help="InfoGAN mutual-information weight (default 1)")
    g.add_argument("--ema-decay", type=float, help="keep an EMA of G's weights (e.g. 0.999) for sampling and metrics")
    g.add_argument(
        "--ema-rampup",
        type=float,
        default=0.05,
        help="EMA horizon at most this fraction of the iterations so far (StyleGAN2; default 0.05); 0 turns it off",
    )
    g.add_argument(
        "--ema-bn-stats",
        choices=("recompute", "average", "copy"),
        default="recompute",
        help="how the EMA generator gets BatchNorm statistics (default recompute: re-estimated for its weights)",
    )
    g = p.add_argument_group("optimization")
    g.add_argument(
        "--batch-size",
        type=int,
        help=f"images per D step, per device; the effective batch is "
        f"batch-size x devices x nodes (default {d['batch_size']})",
    )
    g.add_argument("--lr", type=float, help=f"Adam learning rate for G and D (default {d['lr']})")
    g.add_argument("--beta1", type=float, help=f"Adam beta1 (default {d['beta1']})")
    g.add_argument("--beta2", type=float, help=f"Adam beta2 (default {d['beta2']})")
    g.add_argument(
        "--d-steps",
        type=int,
        help="D updates per G update, k in the GAN paper (default: the loss's, 1; 5 for wgan-gp)",
    )
    g.add_argument("--gp-weight", type=float, default=10.0, help="wgan-gp gradient penalty weight (default 10)")
    g.add_argument("--r1", type=float, metavar="GAMMA", help="R1 penalty gamma/2 E||grad D(x)||^2 on reals (default 0)")
    g.add_argument("--r2", type=float, metavar="GAMMA", help="R2 penalty gamma/2 E||grad D||^2 on fakes (default 0)")
    g.add_argument(
        "--reg-every",
        type=int,
        metavar="N",
        help="lazy R1/R2: apply them every N D steps, scaled by N (StyleGAN2; default 1)",
    )
    g.add_argument(
        "--diffaug",
        metavar="POLICY",
        help="DiffAugment on every image D sees: a comma list of color, translation, cutout",
    )
    g.add_argument(
        "--spectral-norm",
        action="store_true",
        default=None,
        help="spectral normalisation of every weight layer of D and its heads",
    )
    g.add_argument(
        "--max-steps",
        type=int,
        help="training length in generator updates, i.e. iterations (not "
        "Lightning's optimizer steps, which are d_steps+1 per iteration); default 5000 unless "
        "--max-epochs is given",
    )
    g.add_argument("--max-epochs", type=int, help="training length in epochs")
    g.add_argument("--seed", type=int, default=0, help="global seed for weights, data order and noise (default 0)")
    g = p.add_argument_group("hardware")
    g.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto (default auto)")
    g.add_argument("--devices", default="auto", help="number of devices, a list like 0,1, or auto (default auto)")
    g.add_argument(
        "--precision",
        default="32-true",
        choices=("32-true", "16-mixed", "bf16-mixed"),
        help="numeric precision (default 32-true); 16-mixed uses a gradient scaler, bf16-mixed none",
    )
    g.add_argument(
        "--strategy",
        default="auto",
        help="Lightning strategy; auto picks ddp_per_network (G and D in separate DDP wrappers: each phase "
        "all-reduces only its own network) when training on more than one device",
    )
    g.add_argument("--num-nodes", type=int, default=1, help="machines, launched by Lightning's own launcher")
    g.add_argument("--sync-batchnorm", action="store_true", help="synchronise BatchNorm statistics across devices")
    g.add_argument(
        "--data-on-device",
        action="store_true",
        help="(Stacked) MNIST: keep the dataset as uint8 on the accelerator and batch by indexing (no DataLoader)",
    )
    g.add_argument("--channels-last", action="store_true", help="NHWC memory format for convolutional models")
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the generator and the discriminator (D stays eager under WGAN-GP, R1 or R2: "
        "torch.compile has no double backward)",
    )
    g = p.add_argument_group("evaluation (offline: no weights are ever downloaded)")
    g.add_argument(
        "--eval-every",
        type=int,
        help="compute val/fid, val/kid (and for MNIST val/modes, val/class_kl, "
        "val/inception_score) every N iterations and at the end",
    )
    g.add_argument("--eval-samples", type=int, default=1000, help="generated images per evaluation (default 1000)")
    g.add_argument("--classifier", help="MNIST feature extractor from scripts/train_classifier.py (for MNIST runs)")
    g.add_argument("--fid-weights", help="local torchvision inception_v3 weights for FID on RGB data")
    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-dir", default="lightning_logs", help="TensorBoard root (default lightning_logs)")
    g.add_argument("--name", default=None, help="run name: logs go to LOG_DIR/NAME/version_N (default: the model)")
    g.add_argument("--sample-every", type=int, default=500, help="log a sample grid every N iterations (default 500)")
    g.add_argument("--log-every", type=int, default=50, help="log scalars every N iterations (default 50)")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=1000,
        help="write checkpoints/last.ckpt every N iterations and at the end (default 1000)",
    )
    g.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="also keep checkpoints/iter_N.ckpt at every save, for `evaluate.py RUN_DIR` to score the run's history",
    )
    g.add_argument("--ckpt-path", help="resume from a checkpoint file, or `last` for the newest run of --name")
    g.add_argument("--fast-dev-run", action="store_true", help="run one batch through everything, write nothing")
    return p


def _check_positive(cfg: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


def _resolve(cfg: argparse.Namespace) -> argparse.Namespace:
    """Fill flags left unset from the preset, then the defaults; validate everything before any work."""
    preset = PRESETS.get(cfg.preset, {}) if cfg.preset else {}
    for key, default in DEFAULTS.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, preset.get(key, default))
    mnist_like = cfg.dataset in ("mnist", "stacked_mnist")
    if cfg.image_size is None:
        cfg.image_size = (32 if cfg.model == "dcgan" else 28) if mnist_like else 64
    native_channels = {"mnist": 1, "stacked_mnist": 3}.get(cfg.dataset)
    if cfg.channels is None:
        cfg.channels = native_channels or 3
    if native_channels is not None and cfg.channels != native_channels:
        raise ConfigError(f"--dataset {cfg.dataset} images have {native_channels} channel(s); drop --channels "
                          f"or pass --channels {native_channels}")  # fmt: skip
    if cfg.download is None:
        cfg.download = mnist_like
    if cfg.max_steps is None and cfg.max_epochs is None:
        cfg.max_steps = 5000
    _check_positive(cfg, "num_nodes", "latent_dim", "image_size", "ngf", "ndf", "batch_size", "lr", "d_steps",
                    "reg_every", "max_steps", "max_epochs", "sample_every", "log_every")  # fmt: skip
    _check_positive(cfg, "checkpoint_every")
    _check_positive(cfg, "eval_every")
    if cfg.eval_samples < 2:
        raise ConfigError(f"--eval-samples must be at least 2, got {cfg.eval_samples}")
    if cfg.num_workers is not None and cfg.num_workers < 0:
        raise ConfigError(f"--num-workers must be >= 0, got {cfg.num_workers}")
    for flag in ("gp_weight", "r1", "r2", "ema_rampup"):
        if getattr(cfg, flag) < 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(cfg, flag)}")
    if cfg.conditional and cfg.dataset != "mnist":
        raise ConfigError(f"--conditional needs MNIST's 10 class labels; --dataset {cfg.dataset} does not have them")
    if cfg.data_on_device and not mnist_like:
        raise ConfigError("--data-on-device holds (Stacked) MNIST in device memory; other datasets stream from disk")
    if cfg.conditional and cfg.infogan:
        raise ConfigError("choose one of --conditional and --infogan")
    cfg.name = cfg.name or cfg.model
    return cfg


def _latest_version_dir(log_dir: str, name: str) -> Path | None:
    """The newest `LOG_DIR/NAME/version_N` holding `checkpoints/last.ckpt`."""
    root = Path(log_dir) / name
    versions = [p for p in root.glob("version_*") if p.name[8:].isdigit() and (p / "checkpoints/last.ckpt").is_file()]
    return max(versions, key=lambda p: int(p.name[8:]), default=None)


def _resume_target(cfg: argparse.Namespace) -> tuple[str | None, int | None]:
    """(checkpoint path, logger version to continue) for `--ckpt-path`, failing early when it does not exist."""
    if not cfg.ckpt_path:
        return None, None
    if cfg.ckpt_path == "last":
        version_dir = _latest_version_dir(cfg.log_dir, cfg.name)
        if version_dir is None:
            raise ConfigError(f"--ckpt-path last: no {cfg.log_dir}/{cfg.name}/version_*/checkpoints/last.ckpt; "
                              "check --log-dir and --name")  # fmt: skip
        return str(version_dir / "checkpoints/last.ckpt"), int(version_dir.name[8:])
    path = Path(cfg.ckpt_path)
    if path.is_dir():
        raise ConfigError(f"--ckpt-path {path} is a directory; pass a checkpoint file (checkpoints/last.ckpt) or last")
    if not path.is_file():
        raise ConfigError(f"--ckpt-path {path}: no such checkpoint file")
    # Continue logging in the run the checkpoint came from when it lives in the standard layout.
    version_dir = path.parent.parent
    same_run = (
        path.parent.name == "checkpoints" and version_dir.resolve().parent == (Path(cfg.log_dir) / cfg.name).resolve()
    )
    return str(path), int(version_dir.name[8:]) if same_run and version_dir.name[8:].isdigit() else None


def check_writable_dir(path: str | Path, flag: str) -> None:
    """Fail with one line unless `path` is, or can be created as, a directory this process can write into."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise ConfigError(f"{flag} {path} {what}, not a directory; pass a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable; pass a directory you can write to")


def _parse_devices(devices: str) -> int | str | list[int]:
    if devices == "auto":
        return devices
    try:
        if "," in devices:
            ids = [int(x) for x in devices.split(",") if x.strip()]
            if not ids or min(ids) < 0:
                raise ValueError
            return ids
        value = int(devices)
    except ValueError:
        raise ConfigError(f"--devices must be auto, a count or a list like 0,1; got {devices!r}") from None
    if value == 0 or value < -1:
        raise ConfigError(f"--devices must be positive (or -1 for all), got {value}")
    return value


def _default_strategy(devices: int | str | list[int], accelerator: str, num_nodes: int) -> str:
    """`ddp_per_network` whenever the run spans several processes, else Lightning's auto.

    Each phase's backward reaches only one network: D's loss gives G no gradient (fakes are detached and G is
    frozen), G's loss gives D's parameters none. One DDP wrapper around both needs find_unused_parameters and
    all-reduces the idle network's gradients as zeros in every phase; `PerNetworkDDPStrategy` (strategy.py) wraps
    G and D separately, so each phase all-reduces only its own (`--strategy ddp_find_unused_parameters_true`
    restores the single wrapper).
    """
    import torch

    if isinstance(devices, list):
        many = len(devices) > 1
    elif isinstance(devices, int) and devices > 1:
        many = True
    else:  # "auto" or -1: all visible GPUs when on GPU
        many = accelerator in ("auto", "gpu", "cuda") and torch.cuda.device_count() > 1
    return "ddp_per_network" if many or num_nodes > 1 else "auto"


def run(cfg: argparse.Namespace, callbacks: Sequence[Any] = ()) -> dict[str, str]:
    """Train a resolved config (`_resolve`) plus any extra `callbacks`; returns the log dir and last checkpoint path."""
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from gan_lightning.callbacks import GANCheckpoint, GANLogger, RunProgress, SampleGrid, TrainingHealth
    from gan_lightning.module import GAN

    # Expected under manual optimization and a metrics-only val loader: not actionable for the user.
    warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization.*")
    warnings.filterwarnings("ignore", message=".*no `validation_step`.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # the GAN moves its (images, labels) batches itself, cheaper than Lightning's generic walk: not actionable
    warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device` in `LightningModule`.*")
    from gan_lightning.runconfig import (
        ResumeWithChanges,
        checkpoint_config,
        compare_for_resume,
        read_training_checkpoint,
        record_changes,
        run_config,
        trained_d_steps,
        warn_changes,
        write_config,
    )

    devices = _parse_devices(cfg.devices)
    if not cfg.fast_dev_run:
        check_writable_dir(cfg.log_dir, "--log-dir")
    ckpt_path, version = _resume_target(cfg)
    config = run_config(cfg)
    changes: dict[str, Any] = {}
    if ckpt_path is not None:
        ckpt = read_training_checkpoint(ckpt_path)
        changes = compare_for_resume(checkpoint_config(ckpt), config, ckpt_path, trained_d_steps(ckpt))
        resumed_at = int(ckpt.get("global_step", 0))
        del ckpt  # Lightning reads it again; holding two copies of a large checkpoint helps nobody
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = GAN(
        cfg.model, loss=cfg.loss, latent_dim=cfg.latent_dim, noise=cfg.noise, channels=cfg.channels,
        image_size=cfg.image_size, ngf=cfg.ngf, ndf=cfg.ndf, lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2,
        d_steps=cfg.d_steps, gp_weight=cfg.gp_weight, r1=cfg.r1, r2=cfg.r2, reg_every=cfg.reg_every,
        diffaug=cfg.diffaug, spectral_norm=cfg.spectral_norm, conditional=cfg.conditional, infogan=cfg.infogan,
        n_cont=cfg.n_cont, info_weight=cfg.info_weight, ema_decay=cfg.ema_decay, ema_rampup=cfg.ema_rampup or None,
        ema_bn_stats=cfg.ema_bn_stats, channels_last=cfg.channels_last,
        compile=cfg.compile, seed=cfg.seed,
    )  # fmt: skip
    # One iteration consumes d_steps real minibatches, one per D update.
    datamodule = DATASETS.get(cfg.dataset)(
        cfg.data_dir, batch_size=cfg.batch_size * model.d_steps, seed=cfg.seed, image_size=cfg.image_size,
        channels=cfg.channels, num_workers=cfg.num_workers, download=cfg.download,
        skip_bad_images=cfg.skip_bad_images, data_on_device=cfg.data_on_device,
    )  # fmt: skip
    if os.environ.get("LOCAL_RANK", "0") == "0":
        datamodule.prepare_data()  # fail on missing data here, before any directory is created
    datamodule.setup("fit")  # ...and on unreadable data (Lightning's own call later finds it done)
    extra = list(callbacks)
    if ckpt_path is not None:
        extra.append(ResumeWithChanges(cfg.lr, (cfg.beta1, cfg.beta2)))
    if cfg.eval_every:
        from gan_lightning.classifier import cached_classifier
        from gan_lightning.metrics import MNIST_LIKE, SampleQuality, build_extractor

        if cfg.classifier is None and cfg.dataset in MNIST_LIKE:
            # No manual step: train the classifier once per MNIST copy and reuse it from the cache.
            cfg.classifier = str(cached_classifier(cfg.data_dir or default_data_dir()))
        # Loaded before the logger exists: a wrong path fails without writing anything.
        extractor = build_extractor(
            cfg.channels, classifier=cfg.classifier, fid_weights=cfg.fid_weights, dataset=cfg.dataset
        )
        if extractor is not None:  # None: metrics are off, and build_extractor said why in one line
            extra.append(SampleQuality(extractor, every_n_steps=cfg.eval_every, num_samples=cfg.eval_samples))
    logger = GANLogger(cfg.log_dir, name=cfg.name, version=version, default_hp_metric=False)
    data_dir = str(Path(cfg.data_dir or default_data_dir()).resolve())
    run_info = {"dataset": cfg.dataset, "data_dir": data_dir, "config": config}
    checkpoint = GANCheckpoint(every_n_iterations=cfg.checkpoint_every, keep=cfg.keep_checkpoints, run_info=run_info)
    strategy = cfg.strategy if cfg.strategy != "auto" else _default_strategy(devices, cfg.accelerator, cfg.num_nodes)
    try:
        trainer = pl.Trainer(
            accelerator=cfg.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=strategy,
            sync_batchnorm=cfg.sync_batchnorm,
            precision=cfg.precision,
            max_steps=model.optimizer_steps(cfg.max_steps) if cfg.max_steps else -1,
            max_epochs=cfg.max_epochs,
            logger=logger,
            callbacks=[
                SampleGrid(every_n_steps=cfg.sample_every),
                checkpoint,
                RunProgress(),
                TrainingHealth(),
                *extra,
            ],
            log_every_n_steps=cfg.log_every,
            fast_dev_run=cfg.fast_dev_run,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
    except (MisconfigurationException, ValueError, ImportError) as err:  # bad --accelerator/--devices/--strategy
        raise ConfigError(f"cannot set up training on this machine: {str(err).splitlines()[0]}") from None
    paths = {"log_dir": str(logger.log_dir), "checkpoint": str(Path(logger.log_dir) / "checkpoints" / "last.ckpt")}
    if trainer.is_global_zero and not cfg.fast_dev_run:
        # Everything that could be wrong with the input has been checked by now: the run directory may appear.
        if changes:
            iteration = resumed_at // model.steps_per_iteration
            warn_changes(changes, iteration)
            record_changes(paths["log_dir"], iteration, changes)
        if changes or not (Path(paths["log_dir"]) / "config.yaml").is_file():
            write_config(paths["log_dir"], config)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except NonFiniteLossError as err:
        good = checkpoint.last_model_path if Path(checkpoint.last_model_path or "").is_file() else "none was written"
        raise CommandStopped(f"{err} Last good checkpoint: {good}", status=3) from None
    except DataError as err:  # an image found unreadable mid-run (in a loader worker, or decoded in process)
        good = checkpoint.last_model_path if Path(checkpoint.last_model_path or "").is_file() else None
        after = f"last good checkpoint: {good}; resume it with --ckpt-path last" if good else "no checkpoint yet"
        raise DataError(f"{one_line(err)} (stopped at iteration {model.iteration}; {after})") from None
    if trainer.is_global_zero and not cfg.fast_dev_run:
        print(f"logs:       {paths['log_dir']}\ncheckpoint: {paths['checkpoint']}")
    if checkpoint.stop_requested or trainer.received_sigterm:
        raise CommandStopped(
            f"stopped by a signal after iteration {model.iteration}; resume with the same flags and --ckpt-path last",
            status=130,
        )
    return paths


def _train(cfg: argparse.Namespace) -> None:
    """The train command's `run`: fill in presets and defaults, then train (the paths are printed, not returned)."""
    run(_resolve(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/train.py`: 0 on success, 2 bad input or data, 3 non-finite loss, 130 signal."""
    return run_command(build_parser(), _train, argv)
