"""StyleGAN2-ADA's augmentation pipeline (`--augpipe`): the reference's policies, each op's identity at p = 0 and
effect at p = 1, exact pixel blitting, the frame kept filled, one draw per rng state, R1 through the pipe, the
options, and ADA tuning the pipe's p in a real run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from test_ada import tiny_data
from test_callbacks import read_events

from gan_lightning import GAN
from gan_lightning.augment import PIPELINE_OPS, POLICIES, AdaptiveAugment, AugmentPipe, build_augment
from gan_lightning.core.errors import ConfigError
from gan_lightning.core.injected import build_component, describe_component
from gan_lightning.core.options import declared

from conftest import cpu_trainer

# NVlabs stylegan2-ada-pytorch train.py, augpipe_specs, as written there
AUGPIPE_SPECS = {
    'blit':   dict(xflip=1, rotate90=1, xint=1),
    'geom':   dict(scale=1, rotate=1, aniso=1, xfrac=1),
    'color':  dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'filter': dict(imgfilter=1),
    'noise':  dict(noise=1),
    'cutout': dict(cutout=1),
    'bg':     dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    'bgc':    dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),  # noqa: E501
    'bgcf':   dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1),  # noqa: E501
    'bgcfn':  dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1),  # noqa: E501
    'bgcfnc': dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1, cutout=1),  # noqa: E501
}  # fmt: skip
REFERENCE_OPS = list(AUGPIPE_SPECS["bgcfnc"])
SIZE = 32  # imgfilter's 43-tap filter needs images over 21 px


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, channels: int = 3, seed: int = 1) -> torch.Tensor:
    """Random images in [-1, 1]: no symmetry, so any flip, turn or shift changes them."""
    return torch.rand(n, channels, SIZE, SIZE, generator=rng(seed)) * 2 - 1


def changed(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) whether each image differs from its input at all."""
    return (out != x).flatten(1).any(dim=1)


# brownvc/R3GAN train.py, its augment_kwargs, as written there
R3GAN_AUGMENT = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=0.5, contrast=0.5, lumaflip=0.5, hue=0.5, saturation=0.5, cutout=1)  # noqa: E501  # fmt: skip


def multipliers(pipe: AugmentPipe) -> dict[str, float]:
    return {op.name: op.multiplier for stage in pipe.stages for op in stage}


def test_the_policies_run_the_references_augpipe_specs_ops_in_its_order():
    assert list(POLICIES) == [*AUGPIPE_SPECS, "r3gan"]
    for name, spec in {**AUGPIPE_SPECS, "r3gan": R3GAN_AUGMENT}.items():
        assert AugmentPipe(name).ops == list(spec), name
        assert multipliers(AugmentPipe(name)) == spec, name
    # OP=MULTIPLIER in a comma list; a malformed one is one line
    assert multipliers(AugmentPipe("xflip,hue=0.25")) == {"xflip": 1.0, "hue": 0.25}
    for bad in ("xflip,hue=", "xflip,hue=much", "hue=-1", "hue=inf"):
        with pytest.raises(ConfigError, match="--augpipe"):
            AugmentPipe(bad)
    # a comma list names the same ops in any order: they run in the reference's order, stage by stage
    assert AugmentPipe("cutout,hue,xint,xflip").ops == ["xflip", "xint", "hue", "cutout"]
    assert set(PIPELINE_OPS.names()) >= set(REFERENCE_OPS)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", PIPELINE_OPS.names())
def test_each_op_at_p_zero_is_the_identity_and_draws_what_it_draws_at_p_one(name, channels):
    x = images(8, channels)
    stream, other = rng(3), rng(3)
    assert torch.equal(AugmentPipe(name, p=0.0)(x, stream), x)
    AugmentPipe(name, p=1.0)(x, other)
    assert torch.equal(stream.get_state(), other.get_state()), "the stream's position depends on p"


# At p = 1 every image is hit, but an op can draw its own identity: xflip's i = 0 and lumaflip's i = 0 (1/2),
# rotate90's zero turns (1/4), xint's shift rounding to 0 pixels in x and in y ((1/S) / (2 x 0.125) per axis).
# So the images a hit op leaves unchanged must come at that rate, and at rate 0 for every other op: a p that
# did not reach 1 (or a mask drawn wrongly) shows as extra unchanged images.
IDENTITY_ODDS = {"xflip": 1 / 2, "lumaflip": 1 / 2, "rotate90": 1 / 4, "xint": (1 / SIZE / 0.25) ** 2}


@pytest.mark.parametrize("name", PIPELINE_OPS.names())
def test_each_op_at_p_one_transforms_every_image_but_its_own_identity_draws(name):
    n = 256
    x = images(n)
    unchanged = (~changed(AugmentPipe(name, p=1.0)(x, rng(4)), x)).float().mean().item()
    odds = IDENTITY_ODDS.get(name, 0.0)
    assert abs(unchanged - odds) <= 3 * math.sqrt(odds * (1 - odds) / n) + 1e-9, unchanged
    if odds:  # at p = 1/2 half the images are not hit at all: the unchanged rate rises to 1/2 + odds/2
        half = (~changed(AugmentPipe(name, p=0.5)(x, rng(4)), x)).float().mean().item()
        expected = 0.5 + odds / 2
        assert abs(half - expected) <= 3 * math.sqrt(expected * (1 - expected) / n)


# imgfilter draws a hit for each of its four frequency bands (the reference's per-band probabilities): an image is
# filtered unless all four miss
def hit_rate(name: str, multiplier: float) -> float:
    """The probability that an op at p = 1 with this multiplier hits an image at all."""
    return 1 - (1 - multiplier) ** 4 if name == "imgfilter" else multiplier


@pytest.mark.parametrize("name", PIPELINE_OPS.names())
def test_an_ops_multiplier_scales_the_share_of_images_it_hits(name):
    # OP=MULTIPLIER as a policy writes it (R3GAN's colour ops at 0.5): at p = 1 half the images are hit, and of
    # those the op's own identity draws leave some unchanged (multiplier 1 hits all: the p = 1 test above). A hit
    # drawn with p alone would change twice as many: 3 standard errors at n = 256 are under 0.1
    n = 256
    x = images(n)
    rate = changed(AugmentPipe(f"{name}=0.5", p=1.0)(x, rng(17)), x).float().mean().item()
    expected = hit_rate(name, 0.5) * (1 - IDENTITY_ODDS.get(name, 0.0))
    assert abs(rate - expected) <= 3 * math.sqrt(expected * (1 - expected) / n), rate


def test_brightness_adds_one_constant_per_image_with_the_default_std():
    # on black images the output is the offset itself: one value per image, N(0, 0.2^2) (brightness_std's default,
    # the reference's); n = 1024 gives the sample std a standard error of 0.2 / sqrt(2n) ~ 0.0044
    n = 1024
    out = AugmentPipe("brightness", p=1.0)(torch.zeros(n, 3, 4, 4), rng(18))
    offset = out[:, 0, 0, 0]
    assert torch.equal(out, offset.view(n, 1, 1, 1).expand_as(out))
    assert abs(offset.std().item() - 0.2) <= 3 * 0.2 / math.sqrt(2 * n)
    assert abs(offset.mean().item()) <= 3 * 0.2 / math.sqrt(n)


def test_contrast_scales_each_image_by_a_log2_normal_factor_with_the_default_std():
    # contrast scales about 0: white images come out as the factor itself, log2 of it N(0, 0.5^2) (contrast_std's
    # default, the reference's); standard error of the sample std 0.5 / sqrt(2n) ~ 0.011
    n = 1024
    out = AugmentPipe("contrast", p=1.0)(torch.ones(n, 3, 4, 4), rng(19))
    factor = out[:, 0, 0, 0]
    torch.testing.assert_close(out, factor.view(n, 1, 1, 1).expand_as(out), rtol=1e-6, atol=0)
    log2 = factor.log2()
    assert abs(log2.std().item() - 0.5) <= 3 * 0.5 / math.sqrt(2 * n)
    assert abs(log2.mean().item()) <= 3 * 0.5 / math.sqrt(n)


def test_integer_translation_reaches_xint_max():
    # at xint_max 0.25 a 32-pixel image moves by up to 8 pixels in x and y; the default 0.125 stops at 4
    x = images(16)
    reach = round(0.25 * SIZE)
    padded = F.pad(x, [reach] * 4, mode="reflect")
    shifts = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    moved = [padded[:, :, reach - dy : reach - dy + SIZE, reach - dx : reach - dx + SIZE] for dy, dx in shifts]
    which = candidates_match(AugmentPipe("xint", p=1.0, xint_max=0.25)(x, rng(20)), moved)
    assert (which >= 0).all()  # every image moved by whole pixels, at most 8 either way
    furthest = max(max(abs(dy), abs(dx)) for dy, dx in (shifts[i] for i in which.tolist()))
    assert furthest > round(0.125 * SIZE), furthest


def candidates_match(out: torch.Tensor, candidates: list[torch.Tensor]) -> torch.Tensor:
    """(B,) the index of the candidate each output image equals exactly, -1 for none."""
    equal = torch.stack([(out == c).flatten(1).all(dim=1) for c in candidates])  # (K, B)
    return torch.where(equal.any(dim=0), equal.float().argmax(dim=0), -1)


def test_pixel_blitting_is_exact():
    x = images(64)
    which = candidates_match(AugmentPipe("xflip", p=1.0)(x, rng(5)), [x, x.flip(3)])
    assert (which >= 0).all() and set(which.tolist()) == {0, 1}
    which = candidates_match(AugmentPipe("rotate90", p=1.0)(x, rng(5)), [torch.rot90(x, k, (2, 3)) for k in range(4)])
    assert (which >= 0).all() and set(which.tolist()) == {0, 1, 2, 3}
    # integer translation: the image moved by whole pixels, the uncovered border filled by its mirror image
    reach = round(0.125 * SIZE)
    padded = F.pad(x, [reach] * 4, mode="reflect")
    shifts = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    moved = [padded[:, :, reach - dy : reach - dy + SIZE, reach - dx : reach - dx + SIZE] for dy, dx in shifts]
    which = candidates_match(AugmentPipe("xint", p=1.0)(x, rng(5)), moved)
    assert (which >= 0).all() and len(set(which.tolist())) > 20
    # all three at once still only move pixels: every output pixel is one of its own image's (no resampling)
    out = AugmentPipe("blit", p=1.0)(x, rng(6))
    assert all(torch.isin(out[i], x[i]).all() for i in range(len(x))) and changed(out, x).float().mean() > 0.8


def test_the_reference_resampling_of_blitting_is_available_and_close_on_smooth_images():
    smooth = F.interpolate(torch.rand(16, 3, 4, 4, generator=rng(1)) * 2 - 1, size=SIZE, mode="bicubic")
    exact = AugmentPipe("rotate90", p=1.0)(smooth, rng(7))
    resampled = AugmentPipe("rotate90", p=1.0, exact_blit=False)(smooth, rng(7))
    assert not torch.equal(exact, resampled)
    torch.testing.assert_close(resampled, exact, atol=0.1, rtol=0)  # the reference's sub-pixel shift, no more


@pytest.mark.parametrize("policy", ["geom", "bg", "scale,aniso", "rotate"])
def test_the_geometric_ops_keep_the_frame_filled(policy):
    # reflect padding: a flat image stays flat (zero padding would darken the corners of every scaled or rotated one)
    flat = torch.full((32, 3, SIZE, SIZE), 0.5)
    torch.testing.assert_close(AugmentPipe(policy, p=1.0)(flat, rng(8)), flat, atol=1e-4, rtol=0)


@pytest.mark.parametrize("policy", ["geom", "rotate90,scale,rotate,aniso"])
def test_a_centred_blob_stays_centred_under_scaling_rotation_and_anisotropy(policy):
    centre = (SIZE - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(SIZE) - centre, torch.arange(SIZE) - centre, indexing="ij")
    blob = torch.exp(-(xs**2 + ys**2) / (2 * 2.0**2)).expand(64, 1, SIZE, SIZE)
    strengths = {"xfrac_std": 0.0} if "xfrac" in AugmentPipe(policy).ops else {}
    out = AugmentPipe(policy, p=1.0, **strengths)(blob, rng(9))
    assert changed(out, blob).all()
    # its centroid over the middle half of the frame (zoomed out, its mirror images from the reflect padding show
    # nearer the borders) stays at the centre, give or take the ~0.1 pixel the reference's resampling moves it
    window = slice(SIZE // 4, SIZE - SIZE // 4)
    middle, ys, xs = out[:, 0, window, window], ys[window, window], xs[window, window]
    mass = middle.sum(dim=(1, 2))
    assert ((middle * xs).sum(dim=(1, 2)) / mass).abs().max() < 0.3
    assert ((middle * ys).sum(dim=(1, 2)) / mass).abs().max() < 0.3
    middle = out[:, :, SIZE // 2 - 1 : SIZE // 2 + 1, SIZE // 2 - 1 : SIZE // 2 + 1].amax(dim=(1, 2, 3))
    assert (middle >= 0.9 * out.amax(dim=(1, 2, 3))).all()  # the blob's peak is still in the middle 2x2 pixels


def test_the_same_rng_state_gives_the_image_and_its_r1_input_the_same_draw():
    x = images(8)
    for augment in (AugmentPipe("bgcfnc", p=0.6), AdaptiveAugment(augpipe="bgcfnc")):
        augment.p.fill_(0.6)
        r1_input = x.clone().requires_grad_(True)
        out, out_r1 = augment(x, rng(11)), augment(r1_input, rng(11))
        assert out_r1.requires_grad and torch.equal(out, out_r1.detach())
        assert not torch.equal(out, augment(x, rng(12)))


def test_r1_through_the_pipe_has_a_finite_second_derivative():
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Softplus(), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    x = images(6).requires_grad_(True)  # before the augmentation, as the reference's R1
    logits = D(AugmentPipe("bgcfnc", p=1.0)(x, rng(13)))
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    assert grad.abs().sum() > 0
    grad.square().sum().backward()
    conv = D[0].weight.grad
    assert conv is not None and torch.isfinite(conv).all() and conv.abs().sum() > 0


@pytest.mark.parametrize("exact_blit", [True, False])
def test_the_second_derivative_through_the_pipe_matches_finite_differences(exact_blit):
    pipe = AugmentPipe("bgcfnc", p=0.8, exact_blit=exact_blit)

    def r1(x: torch.Tensor) -> torch.Tensor:
        """An R1 penalty ||grad_x D(pipe(x))||^2 of a cubic D, its gradient taken with create_graph."""
        (grad,) = torch.autograd.grad(pipe(x, rng(15)).pow(3).sum() / 3, x, create_graph=True)
        return grad.square().sum()

    x = (torch.rand(3, 3, 24, 24, generator=rng(14), dtype=torch.float64) * 2 - 1).requires_grad_(True)
    (analytic,) = torch.autograd.grad(r1(x), x)  # the double backward
    v = torch.randn(x.shape, generator=rng(16), dtype=torch.float64)
    eps = 1e-5
    ahead, behind = ((x.detach() + s * eps * v).requires_grad_(True) for s in (1, -1))
    numeric = (r1(ahead) - r1(behind)) / (2 * eps)
    torch.testing.assert_close(numeric, (analytic * v).sum(), rtol=1e-6, atol=0)


def test_every_draw_comes_from_the_callers_rng_on_its_device_only():
    state = torch.get_rng_state()
    AugmentPipe("bgcfnc", p=0.5)(images(4), rng())
    assert torch.equal(state, torch.get_rng_state())


def test_strengths_by_the_references_names_are_checked_recorded_and_rebuilt():
    pipe = AugmentPipe("bgc", p=0.3, xint_max=0.25, xflip=0.5, hue=0)
    assert "hue" not in pipe.ops and "xflip" in pipe.ops  # multiplier 0 drops an op
    rebuilt = build_component(describe_component(pipe), "augment")
    assert repr(rebuilt) == repr(pipe) and rebuilt.ops == pipe.ops
    x = images(8)
    assert torch.equal(rebuilt(x, rng(16)), pipe(x, rng(16)))
    ada = AdaptiveAugment(augpipe=pipe, target=0.7)
    again = build_component(describe_component(ada), "augment")
    assert type(again) is AdaptiveAugment and repr(again.augment) == repr(pipe) and again.target == 0.7
    for bad, words in [(lambda: AugmentPipe("bgx"), "bgc, bgcf"),
                       (lambda: AugmentPipe("color", xint_max=0.2), "xint_max"),
                       (lambda: AugmentPipe("blit", xint_max=-1.0), "must be >= 0"),
                       (lambda: AugmentPipe("xflip,xflip"), "twice"), (lambda: AugmentPipe("blit", p=1.5), "[0, 1]"),
                       (lambda: AugmentPipe("filter")(torch.zeros(2, 3, 16, 16), rng()), "larger than 21 px"),
                       (lambda: AugmentPipe("color")(torch.zeros(2, 2, 8, 8), rng()), "got 2 channels")]:  # fmt: skip
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")) as err:
            bad()
        assert "\n" not in str(err.value)


def test_options_build_the_fixed_or_the_adaptive_pipe_and_refuse_mixtures_in_one_line():
    options = GAN.declared_options().defaults()
    assert {"augpipe", "augpipe_p"} <= set(options) and options["augpipe"] is None
    fixed = build_augment({**options, "augpipe": "bgc", "augpipe_p": 0.25})
    assert type(fixed) is AugmentPipe and fixed.policy == "bgc" and float(fixed.p) == 0.25
    assert not dict(fixed.state_dict())  # a fixed p is an option, not state: old checkpoints are unchanged
    ada = build_augment({**options, "augpipe": "bgc", "ada_target": 0.6})
    assert type(ada) is AdaptiveAugment and isinstance(ada.augment, AugmentPipe) and float(ada.p) == 0.0
    assert list(ada.state_dict()) == ["p", "sign_sum", "count", "rt"]  # the DiffAugment ADA's keys
    for bad, words in [({"augpipe": "bgc"}, "needs --ada-target T"),
                       ({"augpipe": "bgc", "diffaug": "color", "augpipe_p": 0.5}, "--diffaug and --augpipe"),
                       ({"augpipe": "bgc", "diffaug": "color", "ada_target": 0.6}, "--diffaug and --augpipe"),
                       ({"augpipe": "bgc", "augpipe_p": 0.5, "ada_target": 0.6},
                        "--augpipe-p does not apply")]:  # fmt: skip
        with pytest.raises(ConfigError, match=words) as err:
            build_augment({**options, **bad})
        assert "\n" not in str(err.value)
    assert {"augpipe", "augpipe_p"} <= set(declared(AdaptiveAugment).names())


def test_an_aug_schedule_moves_the_fixed_pipes_p():
    gan = GAN("mlp", latent_dim=8, augpipe="blit", augpipe_p=0.0, aug_schedule="linear", aug_final=0.5)
    values = gan.schedules.apply(gan, 5, 10)
    assert values["aug_p"] == 0.25 and float(gan.objective.augment.p) == 0.25


def test_ada_tunes_the_pipes_p_in_a_real_run(tmp_path):
    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8, augpipe="bgc", ada_target=0.6, ada_interval=1, ada_kimg=0.064)  # steps of 0.25
    assert isinstance(gan.objective.augment.augment, AugmentPipe)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = cpu_trainer(tmp_path, logger=logger, log_every_n_steps=1, max_steps=gan.optimizer_steps(4))
    trainer.fit(gan, tiny_data())
    events = read_events(logger.log_dir)
    p = [e.value for e in events.Scalars("train/ada_p")]
    rt = [e.value for e in events.Scalars("train/ada_rt")]
    assert len(p) == 4 and any(p)  # p moved
    for before, after, r in zip([0.0, *p], p, rt, strict=False):  # by +-0.25 toward the target, floored at 0
        assert after == max(0.0, before + (0.25 if r > 0.6 else -0.25 if r < 0.6 else 0.0))
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    loaded = GAN.load_from_checkpoint(tmp_path / "gan.ckpt").objective.augment
    assert isinstance(loaded.augment, AugmentPipe) and torch.equal(loaded.p, gan.objective.augment.p)


def test_augpipe_p_without_a_pipeline_is_refused_in_one_line():
    with pytest.raises(ConfigError) as caught:
        GAN("mlp", latent_dim=8, augpipe_p=0.5)
    expected = "--augpipe-p sets the probability of --augpipe's pipeline; add --augpipe POLICY or drop --augpipe-p"
    assert str(caught.value) == expected


def test_resample_blits_reaches_the_fixed_and_the_adaptive_pipe_and_their_rebuild():
    image = torch.linspace(-1, 1, 8 * 8).reshape(1, 1, 8, 8)
    batch = image.expand(16, 1, 8, 8)

    def mirrored_exactly(pipe: AugmentPipe) -> list[bool]:
        out = pipe.per_image(batch, rng(0), 1.0)  # each image: flipped or not, a coin toss as the reference's
        return [torch.equal(o, image[0].flip(-1)) for o in out if not torch.equal(o, image[0])]

    for kwargs in [{"augpipe_p": 1.0}, {"ada_target": 0.6}]:
        gan = GAN("mlp", latent_dim=8, channels=1, image_size=8, augpipe="xflip", augpipe_resample_blits=True, **kwargs)
        rebuilt = GAN(**gan.hparams)  # as a checkpoint rebuilds it
        for model in (gan, rebuilt):
            pipe = model.objective.augment if "augpipe_p" in kwargs else model.objective.augment.augment
            assert pipe.exact_blit is False
            flips = mirrored_exactly(pipe)
            assert flips and not any(flips)  # every mirrored image resampled, as the reference does
    exact = GAN("mlp", latent_dim=8, channels=1, image_size=8, augpipe="xflip", augpipe_p=1.0).objective.augment
    flips = mirrored_exactly(exact)
    assert flips and all(flips)
    with pytest.raises(ConfigError, match="--augpipe-resample-blits changes --augpipe's pipeline") as caught:
        GAN("mlp", latent_dim=8, augpipe_resample_blits=True)
    assert "\n" not in str(caught.value)
