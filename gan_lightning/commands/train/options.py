"""The train command's options: the run's own (length, hardware, logging, checkpoints) and every component's."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from gan_lightning.commands.train.presets import PRESETS
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, Options, declared

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
    Option("log_dir", "lightning_logs", "where runs go: LOG_DIR/NAME/version_N", resume="free"),
    Option("name", None, "run name: logs go to LOG_DIR/NAME/version_N", type=str, resume="free",
           default_text="the preset, else the model"),
    Option("sample_every", 500, "log a sample grid every N iterations", positive=True, resume="free"),
    Option("log_every", 50, "log scalars every N iterations", positive=True, resume="free"),
    Option("checkpoint_every", 1000, "write checkpoints/last.ckpt every N iterations and at the end", positive=True,
           resume="free"),
    Option("keep_checkpoints", False, "also keep checkpoints/iter_N.ckpt at every save, for `evaluate.py RUN_DIR` "
           "to score the run's history", resume="free"),
    Option("ckpt_path", None, "resume from a checkpoint file, `last` for the newest run of --name, or `auto`: that "
           "run when it has a checkpoint, else start it (one command for a job's first start and its restarts; in "
           "a Slurm job, only a run this job wrote); with the flags the run recorded in config.yaml (explicit flags "
           "override them)", type=str,
           resume="transient", default_text="none"),
    Option("fast_dev_run", False, "run one batch through everything, write nothing", resume="transient"),
)
# fmt: on


def option_groups() -> list[tuple[str, Options]]:
    """The train command's options by owner, as `--help` groups them: each declared once, by its component."""
    from gan_lightning import data, loggers, metrics
    from gan_lightning.training.gan import GAN

    return [
        ("data", data.dataset_options()),
        ("model, objective and optimization", GAN.declared_options()),
        ("evaluation (offline: no weights are ever downloaded)", declared(metrics)),
        ("run, hardware, logging and checkpoints", Options(RUN_OPTIONS, declared(loggers))),
    ]


def train_options() -> Options:
    """Every option of the train command."""
    return Options(*(group for _, group in option_groups()))


def options_in_use(values: Mapping[str, Any]) -> Options:
    """The options of the components a resolved configuration `values` uses: the run's, the data's, the model's and
    the training core's, plus the chosen dataset's and model's own and those of every regularizer it switches on.
    What `config.yaml` records, so a run replays wherever those components exist, other plugins installed or not."""
    from gan_lightning.data import DATASETS
    from gan_lightning.models import MODELS, builder_options
    from gan_lightning.regularizers import REGULARIZERS
    from gan_lightning.training.objectives import OBJECTIVES
    from gan_lightning.training.schedules import schedule_options

    owners: dict[str, list[bool]] = {}  # option -> whether each component declaring it is in use
    for name in DATASETS.names():
        for option in declared(DATASETS.get(name).datamodule):
            owners.setdefault(option.name, []).append(name == values["dataset"])
    for name in MODELS.names():
        for option in builder_options(name):
            owners.setdefault(option, []).append(name == values["model"])
    for name in OBJECTIVES.names():  # a loss's own options (the base Objective's are every loss's)
        for option in declared(OBJECTIVES.get(name)):
            owners.setdefault(option.name, []).append(name == values["loss"])
    for name in REGULARIZERS.names():
        kind = REGULARIZERS.get(name)
        own = declared(kind)
        for option in (*own, *schedule_options(own)):
            owners.setdefault(option.name, []).append(kind.from_options(values) is not None)
    return Options(o for o in train_options() if any(owners.get(o.name, [True])))


def check_regularizer_options(values: Mapping[str, Any], given: Collection[str]) -> None:
    """Refuse, in one line, a regularizer's option among the `given` ones (typed by the user, not filled in by a
    preset or a recorded config) set to other than its default while no regularizer taking it is switched on
    (`--lecam-decay 0.9` without `--lecam`): it would change nothing."""
    from gan_lightning.regularizers import REGULARIZERS
    from gan_lightning.training.schedules import schedule_options

    takers: dict[str, dict[str, str]] = {}  # option -> {regularizer taking it: the flag that switches it on}
    on = set()
    for name in REGULARIZERS.names():
        kind = REGULARIZERS.get(name)
        own = declared(kind)
        if kind.from_options(values) is not None:
            on.add(name)
        weights = [o for o in own if o.schedule] or [own[0]]  # what switches it on: its weights
        for option in (*own, *schedule_options(own)):
            # a weight's schedule needs that weight; any other option, one of them
            weight = next((w for w in weights if option.name.startswith(f"{w.name}_")), None)
            flags = [weight] if weight and option not in own else weights
            takers.setdefault(option.name, {})[name] = " or ".join(w.flag for w in flags)
    for option in train_options():
        if option.name not in given:
            continue
        regularizers, value = takers.get(option.name, {}), values.get(option.name)
        if regularizers and not on & set(regularizers) and value not in (None, option.default):
            flags = " or ".join(dict.fromkeys(regularizers.values()))
            shown = option.flag if value is True else f"{option.flag} {value}"
            raise ConfigError(f"{shown} applies only with {flags}, which this run does not switch on; add it or "
                              f"drop {option.flag}")  # fmt: skip


def check_switched_options(values: Mapping[str, Any], given: Collection[str]) -> None:
    """Refuse, in one line, a typed option of a part this run leaves off: the gradient penalty's weight without a
    loss that has one, InfoGAN's without `--infogan`, the EMA's without `--ema-decay` (they would change nothing)."""
    from gan_lightning.training.objectives import OBJECTIVES

    needs = {
        "gp_weight": ("a gradient-penalty loss (--loss wgan-gp)", OBJECTIVES.get(values["loss"]).gradient_penalty),
        **{name: ("--infogan", values["infogan"]) for name in ("info_weight", "n_cat", "n_cont")},
        **{name: ("--ema-decay", values["ema_decay"] is not None) for name in ("ema_rampup", "ema_bn_stats")},
    }
    for name, (what, on) in needs.items():
        if name in given and not on:
            option = train_options()[name]
            raise ConfigError(f"{option.flag} {values[name]} applies only with {what}, which this run does not use; "
                              f"add it or drop {option.flag}")  # fmt: skip
