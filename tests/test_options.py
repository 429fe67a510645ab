"""Options declared once by their components: every declared option (generated from the declarations, so a new
option or registry entry needs no edit here) shows in --help, is validated, is written to config.yaml, replays and
has a resume rule; injected components are recorded in checkpoints and rebuilt."""

from __future__ import annotations

import pytest
import torch
from test_module import TinyD, TinyG
from test_stateful import AnchoredLogits
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.commands.train import build_parser, resolve, train_options
from gan_lightning.commands.train.runconfig import flags_with, load_config, run_config, write_config
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option, Options
from gan_lightning.regularizers.zero_centered import R1
from gan_lightning.training.objectives import LeastSquares

from conftest import cpu_trainer

OPTIONS = list(train_options())


def _bad_value(option: Option):
    """A value the declaration rules out, or None when it rules none out."""
    choices = option.valid_choices()
    if choices is not None:
        return 1234567 if all(isinstance(c, int) for c in choices) else "no-such-choice"
    if option.below is not None:
        return option.below
    if option.positive:
        return 0
    if option.minimum is not None:
        return option.minimum - 1
    return None


# (their resume rules: test_resume_rules_come_from_the_declarations)
def test_every_option_has_a_flag_and_its_help_line(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines; compare word sequences
    for option in OPTIONS:
        assert f"{option.flag} " in text or f"{option.flag}," in text, option.name
        assert " ".join(option.help_text().split()) in text, option.name


@pytest.mark.parametrize("option", [o for o in OPTIONS if _bad_value(o) is not None], ids=lambda o: o.name)
def test_every_bounded_option_refuses_an_out_of_range_value_in_one_line(option):
    with pytest.raises(ConfigError) as err:
        option.validate(_bad_value(option))
    message = str(err.value)
    assert "\n" not in message and (option.flag in message or option.name in message)
    if option.valid_choices() is None and option.value_type is float:
        with pytest.raises(ConfigError):  # NaN fails every comparison: refused, not waved through
            option.validate(float("nan"))


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.value_type is float], ids=lambda o: o.name)
def test_every_float_option_refuses_infinity_in_one_line(option):
    for value in (float("inf"), float("-inf")):
        with pytest.raises(ConfigError) as err:
            option.validate(value)
        assert str(err.value) == f"{option.flag} must be a finite number, got {value}"


@pytest.mark.parametrize(("build", "message"), [
    (lambda: LeastSquares(r1=-1.0), "--r1 must be >= 0, got -1.0"),
    (lambda: LeastSquares(gp_weight=-2.0), "--gp-weight must be >= 0, got -2.0"),
    (lambda: LeastSquares(reg_every=0), "--reg-every must be positive, got 0"),
], ids=["r1", "gp_weight", "reg_every"])  # fmt: skip
def test_an_objective_built_directly_checks_its_declared_ranges(build, message):
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_config_yaml_records_the_options_of_the_components_in_use_and_replays_all(tmp_path):
    cfg = resolve(build_parser().parse_args(["--model", "dcgan", "--lr", "3e-4", "--r1", "0.5"]))
    config = run_config(cfg)
    assert {"lr", "r1", "reg_every", "ngf", "ndf", "dataset", "max_steps"} <= set(config)
    # LeCam and R2 are off and the MNIST data is no image folder: their options are not the run's
    assert {"lecam", "lecam_decay", "r2", "skip_bad_images", "prepared"}.isdisjoint(config)
    write_config(tmp_path, config)
    replayed = resolve(build_parser().parse_args(["--config", str(tmp_path)]))
    assert run_config(replayed) == config
    every = [o.name for o in OPTIONS if o.resume != "transient"]
    assert [getattr(replayed, k) for k in every] == [getattr(cfg, k) for k in every]  # the unrecorded too
    assert load_config(tmp_path, known=set(vars(cfg))) == config


def test_resume_rules_come_from_the_declarations():
    assert {"model", "latent_dim", "image_size", "channels", "ngf", "ndf", "spectral_norm"} <= set(flags_with("refuse"))
    assert {"loss", "lr", "batch_size", "r1", "diffaug", "ema_decay", "precision"} <= set(flags_with("warn"))
    assert set(flags_with("transient")) == {"config", "ckpt_path", "fast_dev_run"}


def test_every_gan_option_is_a_saved_hyperparameter_and_reaches_load_from_checkpoint(tmp_path):
    gan = GAN("mlp", latent_dim=12, lr=3e-4, d_weight_decay=0.25)
    assert set(GAN.declared_options().names()) <= set(gan.hparams)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(8, 1, 28, 28) * 2 - 1), batch_size=8))
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    loaded = GAN.load_from_checkpoint(tmp_path / "gan.ckpt")
    assert {k: loaded.hparams[k] for k in GAN.declared_options().names()} == {
        k: gan.hparams[k] for k in GAN.declared_options().names()
    }
    assert (loaded.hparams.latent_dim, loaded.hparams.lr, loaded.hparams.d_weight_decay) == (12, 3e-4, 0.25)
    with pytest.raises(ConfigError, match="unknown GAN option no_such_option"):
        GAN(no_such_option=1)


def test_an_option_declared_twice_differently_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        Options([Option("width", 1, "a")], [Option("width", 2, "a")])
    assert len(Options([Option("width", 1, "a")], [Option("width", 1, "a")])) == 1


def test_range_messages_name_the_flag_and_the_bound():
    cases = {
        Option("beta", 0.5, "x", minimum=0, below=1): (1.0, "--beta must lie in [0, 1), got 1.0"),
        Option("decay", None, "x", type=float, positive=True, below=1): (0.0, "--decay must lie in (0, 1), got 0.0"),
        Option("steps", 1, "x", positive=True): (0, "--steps must be positive, got 0"),
        Option("weight", 0.0, "x", minimum=0): (-1.0, "--weight must be >= 0, got -1.0"),
    }
    for option, (value, message) in cases.items():
        with pytest.raises(ConfigError) as err:
            option.validate(value)
        assert str(err.value) == message
        option.validate(option.default)  # the default itself is valid


# ------------------------------------------------------------------------------------------ injected components
def test_injected_objective_and_networks_are_saved_reloaded_and_sampled(tmp_path):
    objective = LeastSquares(r1=0.5, regularizers=[AnchoredLogits(weight=0.5, decay=0.25)])
    gan = GAN(generator=TinyG(latent_dim=4), discriminator=TinyD(), objective=objective, latent_dim=4)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, DataLoader(TensorDataset(torch.randn(32, 2)), batch_size=16))
    path = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(path)
    loaded = GAN.load_from_checkpoint(path)
    assert type(loaded.objective) is LeastSquares and loaded.objective.r1 == 0.5  # not the default BCE
    regularizer, r1 = loaded.objective.regularizers.values()  # the r1 shorthand is the R1 regularizer
    assert type(regularizer) is AnchoredLogits and (regularizer.weight, regularizer.decay) == (0.5, 0.25)
    assert type(r1) is R1 and r1.gamma == 0.5
    # its state came with the weights
    assert torch.equal(regularizer.anchor, objective.regularizers["AnchoredLogits"].anchor)
    assert type(loaded.generator) is TinyG and type(loaded.discriminator.net) is TinyD
    z = torch.randn(5, 4)
    torch.testing.assert_close(loaded.sample(z=z), gan.sample(z=z))


def test_an_unimportable_injected_class_is_one_line_naming_it_and_the_argument(tmp_path):
    class NotebookG(TinyG):  # defined in a function: nothing can import it by name
        pass

    gan = GAN(generator=NotebookG(), discriminator=TinyD(), latent_dim=4)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, DataLoader(TensorDataset(torch.randn(16, 2)), batch_size=16))
    path = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(ConfigError) as err:
        GAN.load_from_checkpoint(path)
    message = str(err.value)
    assert "NotebookG" in message and "pass generator=" in message and "\n" not in message
    loaded = GAN.load_from_checkpoint(path, generator=NotebookG())  # the way out the message names
    assert type(loaded.generator) is NotebookG


def test_a_constructor_argument_that_cannot_be_read_back_is_one_line_not_a_silent_default(tmp_path):
    class Narrow(TinyD):  # importable by name, but `hidden` is never stored
        def __init__(self, hidden: int = 32) -> None:
            super().__init__()

    from gan_lightning.core.injected import build_component, describe_component

    spec = describe_component(Narrow(hidden=7))
    assert spec["missing"] == ["hidden"]
    with pytest.raises(ConfigError, match="did not record its options hidden; pass discriminator="):
        build_component({**spec, "class": "test_module.TinyD"}, "discriminator")
