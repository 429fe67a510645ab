"""The `scripts/train.py` command line: flags and presets -> DataModule, GAN, Trainer."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gan_lightning.commands.base import CommandStopped, Parser, one_line, run_command
from gan_lightning.core.errors import ConfigError, DataError, WriteError
from gan_lightning.core.files import check_writable_dir, reason
from gan_lightning.core.options import Option, Options, declared
from gan_lightning.data import DATASETS, default_data_dir
from gan_lightning.data import registry as data_registry
from gan_lightning.models import default_image_size
from gan_lightning.training.accumulate import check_divisible
from gan_lightning.training.guards import NonFiniteLossError
from gan_lightning.training.schedules import check_run_length, scheduled_targets

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
    # CIFAR-10 reference configurations: sources, published FIDs and their protocols in README "Reference
    # configurations (CIFAR-10)". Radford et al. 2015 (DCGAN paper: uniform 100-d z, Adam 2e-4, beta1 0.5, batch 128)
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


def _preset_help() -> str:
    lines = ["presets (explicit flags override them):"]
    for name, values in PRESETS.items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return "\n".join(lines)


# The run itself: its length, hardware, logging and checkpoints. Declared here because the command owns them.
# fmt: off
RUN_OPTIONS = (
    Option("preset", None, "set every flag of a source configuration at once", type=str,
           choices=lambda: sorted(PRESETS), resume="free", default_text="none"),
    Option("config", None, "replay a run: RUN_DIR/config.yaml (or RUN_DIR) sets every flag; explicit flags "
           "override it", type=str, metavar="FILE", resume="transient", default_text="none"),
    Option("max_steps", None, "training length in generator updates, i.e. iterations (not Lightning's optimizer "
           "steps, which are d_steps+1 per iteration)", type=int, positive=True, resume="free",
           default_text="5000 unless --max-epochs is given"),
    Option("max_epochs", None, "training length in epochs", type=int, positive=True, resume="free",
           default_text="none"),
    Option("accelerator", "auto", "cpu, gpu, mps or auto", resume="free"),
    Option("devices", "auto", "number of devices, a list like 0,1, or auto", resume="free"),
    Option("precision", "32-true", "numeric precision; 16-mixed uses a gradient scaler, bf16-mixed none",
           choices=("32-true", "16-mixed", "bf16-mixed")),
    Option("strategy", "auto", "Lightning strategy; auto picks ddp_per_network (G and D in separate DDP wrappers: "
           "each phase all-reduces only its own network) when training on more than one device", resume="free"),
    Option("num_nodes", 1, "machines, launched by Lightning's own launcher", positive=True, resume="free"),
    Option("sync_batchnorm", False, "synchronise BatchNorm statistics across devices", resume="free"),
    Option("log_dir", "lightning_logs", "TensorBoard root", resume="free"),
    Option("name", None, "run name: logs go to LOG_DIR/NAME/version_N", type=str, resume="free",
           default_text="the model"),
    Option("sample_every", 500, "log a sample grid every N iterations", positive=True, resume="free"),
    Option("log_every", 50, "log scalars every N iterations", positive=True, resume="free"),
    Option("checkpoint_every", 1000, "write checkpoints/last.ckpt every N iterations and at the end", positive=True,
           resume="free"),
    Option("keep_checkpoints", False, "also keep checkpoints/iter_N.ckpt at every save, for `evaluate.py RUN_DIR` "
           "to score the run's history", resume="free"),
    Option("ckpt_path", None, "resume from a checkpoint file, or `last` for the newest run of --name", type=str,
           resume="transient", default_text="none"),
    Option("fast_dev_run", False, "run one batch through everything, write nothing", resume="transient"),
)
# fmt: on


def option_groups() -> list[tuple[str, Options]]:
    """The train command's options by owner, as `--help` groups them: each declared once, by its component."""
    from gan_lightning import data, metrics
    from gan_lightning.training.gan import GAN

    return [
        ("data", declared(data.registry)),
        ("model, objective and optimization", GAN.declared_options()),
        ("evaluation (offline: no weights are ever downloaded)", declared(metrics)),
        ("run, hardware, logging and checkpoints", Options(RUN_OPTIONS)),
    ]


def train_options() -> Options:
    """Every option of the train command."""
    return Options(*(group for _, group in option_groups()))


class TrainParser(Parser):
    """The train command's parser: `--config FILE` supplies every flag's value, explicit flags still win."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """Parse once to find `--config`, then again with its values as the defaults."""
        cfg = super().parse_args(args, namespace)
        if not cfg.config:
            return cfg
        from gan_lightning.commands.runconfig import load_config

        try:
            values = load_config(cfg.config, known=set(vars(cfg)))
        except ConfigError as err:
            self.error(str(err))
        self.set_defaults(**values)
        return super().parse_args(args, namespace)


def build_parser() -> Parser:
    """The train command's argument parser, generated from the declared options."""
    p = TrainParser(
        prog="train.py",
        description="Train a GAN with PyTorch Lightning; watch it with `tensorboard --logdir lightning_logs`.",
        epilog=_preset_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for title, group in option_groups():
        arguments = p.add_argument_group(title)
        for option in group:
            option.add_to(arguments)
    return p


def _resolve(cfg: argparse.Namespace) -> argparse.Namespace:
    """Fill flags left unset from the preset, the dataset's and the model's declarations, then the declared
    defaults; validate everything before any work."""
    options = train_options()
    for key, value in (PRESETS.get(cfg.preset, {}) if cfg.preset else {}).items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    for key in ("dataset", "model"):
        if getattr(cfg, key) is None:
            setattr(cfg, key, options[key].default)
        options[key].validate(getattr(cfg, key))
    spec = DATASETS.get(cfg.dataset)
    # classes found in the data (a folder's subfolders) are read now: they size the networks
    names = spec.class_names(cfg.data_dir, conditional=bool(cfg.conditional))
    num_classes = len(names) if names else spec.num_classes
    derived = {
        "image_size": default_image_size(cfg.model, spec.native_size),
        "channels": spec.channels or 3,
        "download": spec.download,
        "num_classes": num_classes,
        "class_names": names,
        "name": cfg.model,
        "max_steps": 5000 if cfg.max_epochs is None else None,
    }
    for option in options:
        if getattr(cfg, option.name) is None:
            setattr(cfg, option.name, derived.get(option.name, option.default))
        option.validate(getattr(cfg, option.name))
    _check_dataset(cfg, spec, names, num_classes)
    # the module checks these too, during training; here they fail before anything is written
    check_divisible(cfg.batch_size, cfg.accumulate)
    check_run_length(scheduled_targets(vars(cfg)), cfg.max_steps)
    return cfg


def _check_dataset(cfg: argparse.Namespace, spec: Any, names: list[str] | None, num_classes: int) -> None:
    """What the dataset's declaration (and the class `names` found in its data, `num_classes` in all) rules out:
    other channels or classes, conditioning without labels, flags that do not apply to it."""
    if spec.channels is not None and cfg.channels != spec.channels:
        raise ConfigError(f"--dataset {cfg.dataset} images have {spec.channels} channel(s); drop --channels "
                          f"or pass --channels {spec.channels}")  # fmt: skip
    if cfg.conditional and not num_classes:
        raise ConfigError(f"--conditional needs class labels; --dataset {cfg.dataset} does not have them")
    found = f" (found in {cfg.data_dir})" if names else ""
    if cfg.num_classes is None:  # a dataset without classes: the option's own default, unused without labels
        cfg.num_classes = train_options()["num_classes"].default
    elif num_classes and cfg.num_classes != num_classes:
        raise ConfigError(f"--dataset {cfg.dataset} has {num_classes} classes{found}, not {cfg.num_classes}; drop "
                          "--num-classes")  # fmt: skip
    if names and cfg.class_names != names:
        raise ConfigError(f"--class-names {','.join(cfg.class_names)} differ from the classes of --dataset "
                          f"{cfg.dataset}{found}: {','.join(names)}; drop --class-names")  # fmt: skip
    if cfg.data_on_device and not spec.data_on_device:
        raise ConfigError(f"--data-on-device holds datasets in device memory; --dataset {cfg.dataset} streams "
                          "from disk")  # fmt: skip
    for option in declared(data_registry):
        value = getattr(cfg, option.name)
        if option.name != "dataset" and not spec.accepts(option.name) and value not in (None, False, option.default):
            raise ConfigError(f"{option.flag} does not apply to --dataset {cfg.dataset}; drop it")


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


class LightningNotices(logging.Filter):
    """Drops Lightning's notices that say nothing to this command's user (an advertising tip, accelerators that
    are not used, the distributed banner, why `fit` stopped), so the project's own lines stay readable; its
    warnings are left alone."""

    DROPPED = ("💡 Tip", "GPU available:", "TPU available:", "HPU available:", "`Trainer.fit` stopped:",
               "Initializing distributed:", "LOCAL_RANK:")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        text = record.getMessage().strip()
        return not (text.startswith(self.DROPPED) or "All distributed processes registered" in text)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Filter the handlers Lightning writes its notices through, for the duration of the block."""
        handlers = [h for name in ("lightning.pytorch", "lightning.fabric") for h in logging.getLogger(name).handlers]
        for handler in handlers:
            handler.addFilter(self)
        try:
            yield
        finally:
            for handler in handlers:
                handler.removeFilter(self)


def resume_command(checkpoint: str) -> str:
    """The command line that continues this run from `checkpoint`: the one that started it, with --ckpt-path."""
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == "--ckpt-path" or arg.startswith("--ckpt-path="):
            skip = arg == "--ckpt-path"
            continue
        argv.append(arg)
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else "scripts/train.py"
    return shlex.join(["python", script, *argv, "--ckpt-path", checkpoint])


def run(cfg: argparse.Namespace, callbacks: Sequence[Any] = ()) -> dict[str, str]:
    """Train a resolved config (`_resolve`) plus any extra `callbacks`; returns the log dir and last checkpoint path."""
    with LightningNotices().installed():
        return _run(cfg, callbacks)


def _run(cfg: argparse.Namespace, callbacks: Sequence[Any]) -> dict[str, str]:
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from gan_lightning.callbacks import (
        DirectCheckpointIO,
        GANCheckpoint,
        GANLogger,
        RankWatch,
        RunProgress,
        SampleGrid,
        TrainingHealth,
    )
    from gan_lightning.training.gan import GAN

    # Expected under manual optimization and a metrics-only val loader: not actionable for the user.
    warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization.*")
    warnings.filterwarnings("ignore", message=".*no `validation_step`.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # Logging every N iterations carries on across epochs (Lightning counts steps, not batches of one epoch).
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # the GAN moves its (images, labels) batches itself, cheaper than Lightning's generic walk: not actionable
    warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device` in `LightningModule`.*")
    from gan_lightning.commands.runconfig import (
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
    resumed_at = 0
    if ckpt_path is not None:
        ckpt = read_training_checkpoint(ckpt_path)
        changes = compare_for_resume(checkpoint_config(ckpt), config, ckpt_path, trained_d_steps(ckpt))
        resumed_at = int(ckpt.get("global_step", 0))
        del ckpt  # Lightning reads it again; holding two copies of a large checkpoint helps nobody
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = GAN(**GAN.declared_options().pick(vars(cfg)))
    # One iteration consumes d_steps real minibatches, one per D update.
    options = {k: v for k, v in vars(cfg).items() if k != "data_dir"}
    datamodule = DATASETS.get(cfg.dataset)(cfg.data_dir, **{**options, "batch_size": cfg.batch_size * model.d_steps})
    if os.environ.get("LOCAL_RANK", "0") == "0":
        datamodule.prepare_data()  # fail on missing data here, before any directory is created
    datamodule.setup("fit")  # ...and on unreadable data (Lightning's own call later finds it done)
    extra = list(callbacks)
    if ckpt_path is not None:
        extra.append(ResumeWithChanges())
    if cfg.eval_every:
        from gan_lightning.metrics import SampleQuality, build_extractor
        from gan_lightning.metrics.classifier import cached_classifier

        if cfg.classifier is None and DATASETS.get(cfg.dataset).extractor is not None:
            # No manual step: train the classifier once per MNIST copy and reuse it from the cache.
            cfg.classifier = str(cached_classifier(cfg.data_dir or default_data_dir()))
        # Loaded before the logger exists: a wrong path fails without writing anything.
        extractor = build_extractor(
            cfg.channels,
            classifier=cfg.classifier,
            fid_weights=cfg.fid_weights,
            dataset=cfg.dataset,
            fid_weights_unchecked=cfg.fid_weights_unchecked,
        )
        if extractor is not None:  # None: metrics are off, and build_extractor said why in one line
            extra.append(
                SampleQuality(
                    extractor,
                    every_n_steps=cfg.eval_every,
                    num_samples=cfg.eval_samples,
                    reference=f"{cfg.dataset}/val",
                )
            )
    logger = GANLogger(cfg.log_dir, name=cfg.name, version=version, default_hp_metric=False)
    data_dir = str(Path(cfg.data_dir or default_data_dir()).resolve())
    run_info = {"dataset": cfg.dataset, "data_dir": data_dir, "config": config}
    checkpoint = GANCheckpoint(every_n_iterations=cfg.checkpoint_every, keep=cfg.keep_checkpoints, run_info=run_info)
    watch = RankWatch()
    strategy = cfg.strategy if cfg.strategy != "auto" else _default_strategy(devices, cfg.accelerator, cfg.num_nodes)
    try:
        trainer = pl.Trainer(
            accelerator=cfg.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=strategy,
            sync_batchnorm=cfg.sync_batchnorm,
            precision=cfg.precision,
            plugins=[DirectCheckpointIO()],
            max_steps=model.optimizer_steps(cfg.max_steps) if cfg.max_steps else -1,
            max_epochs=cfg.max_epochs,
            logger=logger,
            callbacks=[
                SampleGrid(every_n_steps=cfg.sample_every),
                checkpoint,
                RunProgress(),
                TrainingHealth(),
                watch,
                *extra,
            ],  # fmt: skip
            log_every_n_steps=cfg.log_every,
            fast_dev_run=cfg.fast_dev_run,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
    except (MisconfigurationException, ValueError, ImportError) as err:  # bad --accelerator/--devices/--strategy
        raise ConfigError(f"cannot set up training on this machine: {str(err).splitlines()[0]}") from None
    datamodule.check_batches(trainer.world_size)  # per process, now that the number of processes is known
    paths = {"log_dir": str(logger.log_dir), "checkpoint": str(Path(logger.log_dir) / "checkpoints" / "last.ckpt")}
    if trainer.is_global_zero and not cfg.fast_dev_run:
        # Everything that could be wrong with the input has been checked by now: the run directory may appear.
        iteration = resumed_at // model.steps_per_iteration
        resumed_from = {"checkpoint": str(Path(ckpt_path).resolve()), "iteration": iteration} if ckpt_path else None
        if changes or not (Path(paths["log_dir"]) / "config.yaml").is_file():
            write_config(paths["log_dir"], config, resumed_from)
        if changes:
            warn_changes(changes, iteration)
            record_changes(paths["log_dir"], iteration, changes, resumed_from["checkpoint"])
    _fit(trainer, model, datamodule, ckpt_path, checkpoint, watch)
    if trainer.is_global_zero and not cfg.fast_dev_run:
        print(f"logs:       {paths['log_dir']}\ncheckpoint: {paths['checkpoint']}")
    if checkpoint.stop_requested or trainer.received_sigterm:
        raise CommandStopped(
            f"stopped by a signal after iteration {model.iteration}; resume with the same flags and --ckpt-path last",
            status=130,
        )
    return paths


def _last_good(checkpoint: Any, trainer: Any) -> str | None:
    """The newest checkpoint this run can resume from: its own last.ckpt, else the one it resumed from."""
    if Path(checkpoint.last_model_path or "").is_file():
        return checkpoint.last_model_path
    return str(trainer.ckpt_path) if trainer.ckpt_path else None


def _resume_hint(checkpoint: Any, trainer: Any) -> str:
    """Where training can continue from, and the command that does it."""
    good = _last_good(checkpoint, trainer)
    if good is None:
        return "No checkpoint was written; start again."
    at = f" (iteration {checkpoint.saved_iteration})" if checkpoint.saved_iteration is not None else ""
    return f"Last good checkpoint: {good}{at}; resume with: {resume_command(good)}"


def _fit(trainer: Any, model: Any, datamodule: Any, ckpt_path: str | None, checkpoint: Any, watch: Any) -> None:
    """`trainer.fit`, with every way training can fail part-way turned into one line and an exit status."""
    import torch

    from gan_lightning.callbacks import collective_failed
    from gan_lightning.callbacks.checkpoint import CheckpointWriteError

    try:
        # weights_only: the checkpoint holds tensors and plain containers (read_training_checkpoint checked)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteLossError as err:
        good = _last_good(checkpoint, trainer) or "none"
        raise CommandStopped(f"{err} Last good checkpoint: {good}", status=3) from None
    except DataError as err:  # an image found unreadable mid-run (in a loader worker, or decoded in process)
        good = _last_good(checkpoint, trainer)
        after = f"last good checkpoint: {good}; resume it with --ckpt-path last" if good else "no checkpoint yet"
        raise DataError(f"{one_line(err)} (stopped at iteration {model.iteration}; {after})") from None
    except CheckpointWriteError:
        raise  # its message already says what is intact
    except WriteError as err:  # a sample grid or the metrics log on a full disk: training stops with it
        raise WriteError(
            f"{err}; training stopped at iteration {model.iteration}. {_resume_hint(checkpoint, trainer)}"
        ) from None
    except torch.OutOfMemoryError as err:
        after = _resume_hint(checkpoint, trainer)
        raise CommandStopped(f"rank {trainer.global_rank} ran out of device memory at iteration {model.iteration} "
                             f"({one_line(err)[:120]}); lower --batch-size or use --precision bf16-mixed. {after}",
                             status=5) from None  # fmt: skip
    except OSError as err:  # an output Lightning writes itself (hparams.yaml, the event file) on a full disk
        good = _last_good(checkpoint, trainer)
        what = err.filename or "an output"
        raise WriteError(f"could not write {what} ({reason(err)}) at iteration {model.iteration}; training stopped; "
                         f"last good checkpoint: {good or 'none'}") from None  # fmt: skip
    except Exception as err:
        if trainer.world_size == 1 or not collective_failed(err):
            raise
        message, speak = watch.explain(err, model.iteration, _resume_hint(checkpoint, trainer))
        raise CommandStopped(message if speak else "", status=5) from None


def _train(cfg: argparse.Namespace) -> None:
    """The train command's `run`: fill in presets and defaults, then train (the paths are printed, not returned)."""
    run(_resolve(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/train.py`: 0 on success, 2 bad input or data, 3 non-finite loss, 130 signal."""
    return run_command(build_parser(), _train, argv)
