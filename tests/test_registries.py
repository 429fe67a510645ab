"""Registry-wide contract tests (timm's tests/test_models.py style): every entry of every registry, parametrised over
the registry's `names()` at collection time, so a new component file is tested here with no test edit.

What each kind promises is docs/extending.md: transforms `f(x, rng) -> x`, regularizers on a
`PhaseContext`, datasets declaring themselves, noise priors, objectives on logits, feature extractors from a local
weights file. `test_registry_wide.py` runs every model x objective through a real training iteration.
"""

from __future__ import annotations

import inspect
import math
import random
import re

import numpy as np
import pytest
import torch
from torch import nn
from weights_files import WEIGHTS_WRITERS

from gan_lightning import GAN, MODELS
from gan_lightning.augment import PIPELINE_OPS, TRANSFORMS, AdaptiveAugment, DiffAugment
from gan_lightning.commands.train.options import check_regularizer_options
from gan_lightning.core.errors import ConfigError, DataError
from gan_lightning.core.options import RESUME_RULES, Option, declared
from gan_lightning.data import DATASETS, GANDataModule, dataset_options
from gan_lightning.data.registry import DatasetSpec
from gan_lightning.loggers import LOGGERS
from gan_lightning.metrics import EXTRACTORS, FeatureExtractor, file_sha256, load_extractor
from gan_lightning.metrics.extractors.resizers import RESIZES
from gan_lightning.metrics.protocols import PROTOCOLS
from gan_lightning.regularizers import REGULARIZERS, PhaseContext, Regularizer, due
from gan_lightning.training.batch import Batch
from gan_lightning.training.latents import NOISES, LatentSpace, Prior
from gan_lightning.training.objectives import OBJECTIVES, get_objective
from gan_lightning.training.schedules import schedule_options

REGISTRIES = {"model": MODELS, "loss": OBJECTIVES, "regularizer": REGULARIZERS, "transform": TRANSFORMS,
              "dataset": DATASETS, "extractor": EXTRACTORS, "noise": NOISES, "pipeline op": PIPELINE_OPS,
              "resize": RESIZES, "protocol": PROTOCOLS, "logger": LOGGERS}  # fmt: skip


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def global_rng_states() -> tuple:
    """Every global random state a component could draw from instead of its `rng`."""
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()


def same_states(a: tuple, b: tuple) -> bool:
    return torch.equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])


def check_option(option: Option) -> None:
    """A declaration the command line, config.yaml and the resume rules can use."""
    assert isinstance(option, Option), f"{option!r} is not an Option"
    assert re.fullmatch(r"[a-z][a-z0-9_]*", option.name), f"option name {option.name!r} does not make a flag"
    text = option.help() if callable(option.help) else option.help
    assert isinstance(text, str) and text.strip(), f"{option.flag} has no help text"
    # a component's option is recorded in config.yaml (replays, resumes): "transient" is for --config, --ckpt-path
    assert option.resume in RESUME_RULES and option.resume != "transient", f"{option.flag}: resume={option.resume!r}"
    option.validate(option.default)  # its own default passes its own validation


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_registered_names_work_as_command_line_values(kind):
    names = REGISTRIES[kind].names()
    assert names, f"the {kind} registry is empty"
    for name in names:
        assert re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", name), f"{kind} {name!r}: lowercase letters, digits, _ and -"
        assert name in REGISTRIES[kind] and REGISTRIES[kind].get(name) is not None


@pytest.mark.parametrize("name", RESIZES.names())
def test_resize_contract(name):
    """uint8 (B, 3, H, W) in, float (B, 3, S, S) on the 0..255 scale out, each image on its own, deterministic."""
    resize = RESIZES.get(name)
    assert resize.description.strip()
    x = (torch.rand(2, 3, 16, 16, generator=rng()) * 256).to(torch.uint8)
    same = resize(x, 16)
    assert same.is_floating_point() and torch.equal(same, x.to(same.dtype))  # at its own size: the image itself
    flat = torch.full_like(x, 100)
    for size in (8, 24):
        out = resize(x, size)
        assert out.shape == (2, 3, size, size) and out.is_floating_point()
        assert torch.equal(out, resize(x, size))
        torch.testing.assert_close(resize(x[1:], size), out[1:])  # no image depends on another
        assert abs(out.mean().item() - x.float().mean().item()) < 5  # the 0..255 scale, not 0..1
        # interpolation weights sum to one: a constant image stays that constant
        assert torch.equal(resize(flat, size), torch.full_like(out, 100.0))


# ------------------------------------------------------------------------------------------------- transforms
SHAPES = [(4, 1, 8, 8), (3, 3, 16, 16)]


def images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] including both ends exactly."""
    x = torch.rand(shape, generator=rng(seed)) * 2 - 1
    x.view(-1)[:2] = torch.tensor([-1.0, 1.0])
    return x


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_transform_keeps_shape_dtype_and_input(name, shape):
    x = images(shape)
    before = x.clone()
    y = TRANSFORMS.get(name)(x, rng(1))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all(), "non-finite output on images in [-1, 1]"
    assert torch.equal(x, before), "the transform modified its input in place"


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_transform_is_differentiable(name):
    x = images((4, 3, 16, 16)).requires_grad_(True)
    y = TRANSFORMS.get(name)(x, rng(1))
    (y * torch.randn(y.shape, generator=rng(2))).sum().backward()
    assert x.grad is not None, "no gradient reaches x: G could not learn through the transform"
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_transform_draws_from_its_rng_only(name):
    transform, x = TRANSFORMS.get(name), images((6, 3, 16, 16))
    states = global_rng_states()
    stream = rng(3)
    start = stream.get_state()
    first = transform(x, stream)
    assert same_states(states, global_rng_states()), "the transform drew from a global RNG"
    assert torch.equal(first, transform(x, rng(3))), "the same rng seed gave another output"
    if not torch.equal(start, stream.get_state()):  # it draws: its randomness must show in the output
        outputs = [transform(x, rng(seed)) for seed in range(4, 12)]
        assert any(not torch.equal(first, out) for out in outputs), "draws from rng but the output never changes"


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_transform_is_usable_in_policies(name):
    x = images((4, 1, 8, 8))
    for augment in (DiffAugment(name), DiffAugment(name, p=0.5), AdaptiveAugment(name)):
        assert augment(x, rng()).shape == x.shape
    DiffAugment.options[0].validate(name)  # --diffaug NAME


# ----------------------------------------------------------------------------------------------- regularizers
@pytest.fixture(scope="module")
def tiny_gan() -> GAN:
    torch.manual_seed(0)
    return GAN("mlp", latent_dim=8, image_size=8)


def switch_on(kind: type[Regularizer]) -> tuple[dict, dict]:
    """The declared defaults, and the same with each of the regularizer's float weights that default to 0 (off)
    and may be any value >= 0 set to 1.0: its lambda / gamma / weight."""
    off = GAN.declared_options().defaults()
    on = dict(off)
    for option in declared(kind):
        if isinstance(option.default, float) and option.default == 0.0 and option.minimum == 0:
            on[option.name] = 1.0
    return off, on


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_regularizer_options(name):
    kind = REGULARIZERS.get(name)
    assert issubclass(kind, Regularizer)
    options = declared(kind)
    assert len(options), f"{name} declares no options: nothing could switch it on from the command line"
    for option in options:
        check_option(option)
        assert option.name in GAN.declared_options(), f"{option.flag} is not one of the GAN's options"
    off, on = switch_on(kind)
    assert kind.from_options(off) is None, f"{name} is on by default: every run would get it"
    assert isinstance(kind.from_options(on), kind), f"{name}: no float option defaulting to 0.0 switches it on"
    options.validate(**options.pick(on))


def networks_for(reg: Regularizer, default: GAN) -> GAN:
    """`default` (the 8 px mlp), or the first registered model at 8 px whose networks `reg` accepts
    (`check_models`: path length needs a style-based G)."""
    for gan in (default, *(lambda m=m: GAN(m, latent_dim=8, image_size=8, ngf=8, ndf=8) for m in MODELS.names())):
        try:
            gan = gan if isinstance(gan, GAN) else gan()
            reg.check_models(gan.generator, gan.discriminator)
        except ConfigError:
            continue
        return gan
    raise AssertionError(f"{type(reg).__name__} accepts no registered model's networks")


def another_value(option: Option) -> object:
    """A valid value of `option` other than its default."""
    choices = option.choices() if callable(option.choices) else option.choices
    if choices:
        return next(c for c in choices if c != option.default)
    if isinstance(option.default, bool):
        return not option.default
    if isinstance(option.default, int) or option.type is int:
        return (option.default or 0) + 1
    if isinstance(option.default, float) or option.type is float:
        return option.default / 2 if option.default else 0.5
    if "transform" in option.name:  # a policy of registered transforms
        return next(n for n in TRANSFORMS.names() if n != option.default)
    raise AssertionError(f"{option.flag}: say here which other value it may take")


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_a_regularizers_own_options_are_refused_while_it_is_off(name):
    # `--lecam-decay 0.9` without `--lecam` would change nothing: the train command refuses it in one line
    kind = REGULARIZERS.get(name)
    off, on = switch_on(kind)
    weights = {k for k in on if on[k] != off[k]}
    for option in (*declared(kind), *schedule_options(declared(kind))):
        if option.name in weights:
            continue
        changed = {option.name: another_value(option)}
        option.validate(changed[option.name])
        with pytest.raises(ConfigError, match=f"^{re.escape(option.flag)}.* applies only with --") as caught:
            check_regularizer_options({**off, **changed}, given=changed)
        assert "\n" not in str(caught.value)
        check_regularizer_options({**on, **changed}, given=changed)  # switched on: taken
        check_regularizer_options({**off, **changed}, given=())  # a preset's or a recorded config's: taken


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_regularizer_terms_in_real_phases(tiny_gan, name):
    kind = REGULARIZERS.get(name)
    reg = kind.from_options(switch_on(kind)[1])
    tiny_gan = networks_for(reg, tiny_gan)
    seen: dict[str, tuple] = {}
    for phase in ("d", "g"):  # record each phase's context and term on the way through the objective
        method = getattr(reg, f"{phase}_term")
        setattr(reg, f"{phase}_term", lambda ctx, m=method, p=phase: seen.setdefault(p, (ctx, m(ctx)))[1])
    G, D = tiny_gan.generator, tiny_gan.discriminator
    with_reg, without = get_objective("bce", regularizers=[reg]), get_objective("bce")
    real = Batch(images((4, 1, 8, 8)), torch.zeros(4, dtype=torch.long))
    latents = tiny_gan.latents.draw(4, rng(5))
    terms = 0
    for phase, own, other in (("d", D, G), ("g", G, D)):
        other.requires_grad_(False)  # as the module toggles them
        try:
            result, baseline = (
                getattr(o, f"{phase}_loss")(G, D, real, latents, rng(7), step=0) for o in (with_reg, without)
            )
        finally:
            other.requires_grad_(True)
        if phase not in seen:  # a lazy regularizer's interval always includes step 0
            assert not due(reg, phase, 0), f"{name}: the {phase} phase did not call its {phase}_term"
            continue
        ctx, term = seen[phase]
        assert isinstance(ctx, PhaseContext) and ctx.phase == phase and ctx.step == 0
        assert ctx.G is G and ctx.D is D and ctx.real is real and ctx.latents is latents
        assert ctx.fake_logits.shape == (4,) and ctx.fake_images.shape == real.images.shape
        for key, value in term.stats.items():
            assert torch.isfinite(value).all(), f"{name}: statistic {key} = {value}"
            assert key in result.stats, f"{name}: statistic {key} is not logged"
        assert torch.isfinite(result.loss)
        if term.loss is None:
            continue
        terms += 1
        assert term.loss.numel() == 1 and torch.isfinite(term.loss), f"{name} {phase} term {term.loss}"
        # the phase's loss is the objective's plus the term, times its lazy interval
        torch.testing.assert_close(result.loss - baseline.loss, due(reg, phase, 0) * term.loss.reshape(()))
        assert term.loss.requires_grad, f"{name}: the {phase} term is detached from the networks"
        params = [p for p in own.parameters() if p.requires_grad]
        grads = torch.autograd.grad(term.loss, params, retain_graph=True, allow_unused=True)
        reached = [g for g in grads if g is not None]
        assert reached and all(torch.isfinite(g).all() for g in reached), f"{name}: {phase} term's gradient"
        assert any(g.abs().sum() > 0 for g in reached), f"{name}: the {phase} term does not reach the {phase} network"
    assert terms, f"{name} is switched on but adds no term to either phase"


# --------------------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_declares_itself_consistently(name):
    spec = DATASETS.get(name)
    assert isinstance(spec, DatasetSpec) and issubclass(spec.datamodule, GANDataModule)
    assert spec.channels in (None, 1, 3)
    assert spec.native_size is None or (isinstance(spec.native_size, int) and spec.native_size > 0)
    assert spec.num_classes is None or (isinstance(spec.num_classes, int) and spec.num_classes > 0)
    assert spec.extractor is None or spec.extractor in EXTRACTORS, f"unknown extractor {spec.extractor!r}"
    # what the spec says the dataset does, its DataModule takes
    assert spec.data_on_device == spec.accepts("data_on_device")
    assert not spec.download or spec.accepts("download"), "downloads by default but takes no download option"
    for shared in ("data_dir", "batch_size", "num_workers", "seed"):
        assert spec.accepts(shared), f"the DataModule takes no {shared}"
    for attribute in ("channels", "num_classes"):  # a DataModule's class attribute, when set, agrees with the spec
        own, declared_value = getattr(spec.datamodule, attribute, None), getattr(spec, attribute)
        if own is not None and declared_value is not None:
            assert own == declared_value, f"{attribute}: the DataModule's {own}, the spec's {declared_value}"


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_options_are_its_constructors(name):
    spec = DATASETS.get(name)
    params = inspect.signature(spec.datamodule).parameters
    all_options = dataset_options()  # every dataset's options together, none declared twice differently
    for option in declared(spec.datamodule):
        check_option(option)
        assert option.name in all_options
        assert spec.accepts(option.name), f"declares {option.flag} but its constructor does not take it"
        default = params[option.name].default
        message = f"{option.flag}: --help says {option.default}, the constructor's default is {default}"
        assert option.default is None or default == option.default, message


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_without_its_files_is_one_line(tmp_path, name):
    dm = DATASETS.get(name)(str(tmp_path), batch_size=2, download=False, num_workers=0)  # nothing read yet
    with pytest.raises(DataError) as caught:
        dm.prepare_data()
        dm.setup("fit")
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


# ----------------------------------------------------------------------------------------------- noise priors
@pytest.mark.parametrize("name", NOISES.names())
def test_noise_prior_draws(name):
    prior = NOISES.get(name)
    assert isinstance(prior, Prior)
    states = global_rng_states()
    z = prior((5, 7), device=torch.device("cpu"), rng=rng(1))
    assert same_states(states, global_rng_states()), "the prior drew from a global RNG"
    assert z.shape == (5, 7) and z.dtype.is_floating_point and torch.isfinite(z).all()
    assert torch.equal(z, prior((5, 7), device=torch.device("cpu"), rng=rng(1)))
    assert not torch.equal(z, prior((5, 7), device=torch.device("cpu"), rng=rng(2)))
    assert z.std() > 0
    if prior.half_width is not None:
        assert prior.centre is not None and ((z - prior.centre).abs() <= prior.half_width).all()
    if prior.centre is not None:
        torch.testing.assert_close(prior.truncate(z, rng(3), psi=0.5), prior.centre + 0.5 * (z - prior.centre))
    a, b = z[:2], z[2:4]
    torch.testing.assert_close(prior.interpolate(a, b, torch.zeros(2, 1)), a)
    torch.testing.assert_close(prior.interpolate(a, b, torch.ones(2, 1)), b)
    assert LatentSpace(8, name).draw(3, rng(4)).input.shape == (3, 8)


# ------------------------------------------------------------------------------------------------- objectives
def adversarial(objective, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(D's loss, G's loss) on logits, G given the real logits when the objective compares with them."""
    g = objective.g_adversarial(fake, real.detach() if objective.g_needs_real else None)
    return objective.d_adversarial(real, fake), g


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_objective_on_logits(name):
    objective = get_objective(name)
    for option in declared(type(objective)):
        check_option(option)
    assert isinstance(objective.default_d_steps, int) and objective.default_d_steps >= 1
    real = (torch.randn(16, generator=rng(1)) * 2).requires_grad_(True)
    fake = (torch.randn(16, generator=rng(2)) * 2).requires_grad_(True)
    d, g = adversarial(objective, real, fake)
    assert d.shape == () and g.shape == () and torch.isfinite(d) and torch.isfinite(g)
    d_real, d_fake = torch.autograd.grad(d, (real, fake), retain_graph=True)
    (g_fake,) = torch.autograd.grad(g, fake)
    for grad in (d_real, d_fake, g_fake):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    huge = torch.full((4,), 1e4)
    for r, f in ((huge, -huge), (-huge, huge)):
        assert all(torch.isfinite(loss) for loss in adversarial(objective, r, f)), "non-finite at extreme logits"
    # positive logits mean "real": D prefers reals high and fakes low, G prefers its fakes high
    high, low = torch.full((4,), 3.0), torch.full((4,), -3.0)
    assert objective.d_adversarial(high, low) < objective.d_adversarial(low, high)
    assert objective.g_adversarial(high, low if objective.g_needs_real else None) < objective.g_adversarial(
        low, high if objective.g_needs_real else None
    )
    verdicts = objective.real_verdicts(high, low)
    assert verdicts.shape == (4,) and (verdicts > 0).all() and (objective.real_verdicts(low, high) < 0).all()


@pytest.mark.parametrize("name", [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).chance_d_loss is not None])
def test_objective_chance_d_loss_is_the_best_constant_d(name):
    objective = get_objective(name)
    losses = [objective.d_adversarial(torch.full((8,), c), torch.full((8,), c)).item()
              for c in np.linspace(-5, 5, 1001)]  # fmt: skip
    assert min(losses) == pytest.approx(objective.chance_d_loss, abs=1e-4)
    assert objective.chance_d_loss == pytest.approx(min(losses), abs=1e-4) and math.isfinite(objective.chance_d_loss)


# ------------------------------------------------------------------------------------------ feature extractors
@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_extractor_without_usable_weights_is_one_line(tmp_path, no_downloads, name):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a weights file")
    for path in (tmp_path / "missing.pt", junk):
        with pytest.raises(DataError) as caught:
            load_extractor(name, path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_extractor_builds_frozen_from_a_weights_file(tmp_path, no_downloads, name):
    refused, unwritten = [], []
    for what, write in WEIGHTS_WRITERS.items():
        path = tmp_path / f"{len(what)}.pt"
        try:
            write(path)
        except ConfigError as err:  # the writer's optional package (timm) is not installed
            unwritten.append(f"{what}: {err}")
            continue
        try:  # random weights: an extractor that checks its file's published hash takes them unchecked
            extractor = load_extractor(name, path, checked=False)
            break
        except (DataError, ConfigError) as err:
            refused.append(f"{what}: {err}")
    else:
        tried = f"{name} loads none of the weights files this test writes: {refused}; not written: {unwritten}"
        assert unwritten or EXTRACTORS.origin(name) is not None, tried  # None: one of this package's own
        pytest.skip(tried)  # a plugin's extractor, or a file format whose optional package is missing
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.protocol()["extractor"] and extractor.protocol()["extractor_sha256"] == file_sha256(path)
    nn.Sequential(extractor).train()  # what Lightning does to everything attached to the module
    assert not any(m.training for m in extractor.modules()) and not any(p.requires_grad for p in extractor.parameters())
    for channels in (1, 3):
        x = images((2, channels, 28, 28))
        try:
            features, probs = extractor.extract(x)
        except ConfigError:  # the other channel count
            continue
        assert features.shape == (2, extractor.num_features) and torch.isfinite(features).all()
        torch.testing.assert_close(extractor(x), features)
        if probs is not None:  # class outputs, as `statistics` takes them (probabilities, or the Inception's logits)
            assert len(probs) == 2 and torch.isfinite(probs).all()
            statistics = extractor.statistics(probs)
            assert set(statistics) == set(extractor.statistic_names) and all(map(math.isfinite, statistics.values()))
        return
    raise AssertionError(f"{name} takes neither grey nor RGB images")


class OnceDifferentiable(torch.autograd.Function):
    """The identity, whose backward cannot itself be differentiated: torch.compile's limit, made visible."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return grad


def d_phase_differentiates_d_twice(objective, gan: GAN) -> bool:
    """Whether `objective`'s D phase backpropagates through D's input gradients, found by running it on a D whose
    input passes through `OnceDifferentiable`."""
    G, D = gan.generator, gan.discriminator
    hook = D.register_forward_pre_hook(lambda module, args: (OnceDifferentiable.apply(args[0]), *args[1:]))
    real = Batch(images((4, 1, 8, 8)), torch.zeros(4, dtype=torch.long))
    try:
        G.requires_grad_(False)
        loss = objective.d_loss(G, D, real, gan.latents.draw(4, rng(5)), rng(7), step=0).loss
        loss.backward()
    except RuntimeError as err:
        assert "once_differentiable" in str(err), err
        return True
    finally:
        hook.remove()
        G.requires_grad_(True)
    return False


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_a_regularizer_declares_input_grads_exactly_when_it_differentiates_d_twice(tiny_gan, name):
    # what --compile reads to leave D eager (torch.compile has no double backward)
    kind = REGULARIZERS.get(name)
    reg = kind.from_options(switch_on(kind)[1])
    objective = get_objective("bce", regularizers=[reg])
    twice = d_phase_differentiates_d_twice(objective, networks_for(reg, tiny_gan))
    assert twice == bool(reg.input_grads) == objective.differentiates_d_twice, (name, twice, reg.input_grads)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_an_objective_says_when_its_own_penalty_differentiates_d_twice(tiny_gan, name):
    objective = get_objective(name)
    assert d_phase_differentiates_d_twice(objective, tiny_gan) == objective.differentiates_d_twice, name
