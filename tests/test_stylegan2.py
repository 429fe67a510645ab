"""--model stylegan2: parameter counts against the reference's, the W average and truncation, noise and style mixing
from the rng only, the FIR resampling and minibatch std by hand, gradients everywhere, and the builder's refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models import build_models, builder_options, default_image_size
from gan_lightning.models.stylegan2_layers import (
    MinibatchStdLayer,
    SynthesisLayer,
    ToRGBLayer,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upsample2d,
)

CIFAR = dict(channels=3, image_size=32, ngf=512, ndf=512, w_dim=512, mapping_layers=2, channel_base=32768,
             mbstd_group=32, d_architecture="orig")  # fmt: skip
TINY = dict(channels=3, image_size=16, ngf=8, ndf=8, w_dim=16, mapping_layers=2)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(latent_dim: int = 8, num_classes: int = 0, **options) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return build_models("stylegan2", latent_dim=latent_dim, num_classes=num_classes, **{**TINY, **options})


def noisy(G: nn.Module) -> nn.Module:
    """G with every noise input switched on (their strengths start at 0, which hides the noise)."""
    for name, p in G.named_parameters():
        if name.endswith("noise_strength"):
            p.data.fill_(0.5)
    return G


# Counted once from NVlabs' stylegan2-ada-pytorch training/networks.py at train.py's cfg 'cifar' (z = w = 512,
# channel_base 32768, channel_max 512, 2 mapping layers, D 'orig', mbstd group 32), 3x32x32.
@pytest.mark.parametrize(
    ("num_classes", "d_architecture", "expected_g", "expected_d"),
    [(0, "orig", 19_947_539, 20_720_641), (10, "orig", 20_215_315, 20_720_641), (0, "resnet", 19_947_539, 21_507_073),
     (0, "skip", 19_947_539, 20_726_785)],
)  # fmt: skip
def test_parameter_counts_match_the_reference(num_classes, d_architecture, expected_g, expected_d):
    options = {**CIFAR, "d_architecture": d_architecture}
    G, D = build_models("stylegan2", latent_dim=512 + num_classes, num_classes=num_classes, **options)
    assert (num_params(G), num_params(D)) == (expected_g, expected_d)
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws) == (512, num_classes, 512, 8)


def test_w_avg_tracks_the_mapping_output_in_training_mode_only():
    G, _ = tiny()
    z = torch.randn(6, 8)
    G.eval()
    G.mapping(z, None)
    assert torch.equal(G.mapping.w_avg, torch.zeros(16))
    G.train()
    ws = G.mapping(z, None)  # (B, num_ws, w_dim), every row the same w
    assert ws.shape == (6, G.num_ws, 16) and torch.equal(ws[:, 0], ws[:, -1])
    expected = 0.005 * ws[:, 0].detach().mean(0)  # lerp(mean, 0, beta 0.995)
    torch.testing.assert_close(G.mapping.w_avg, expected)
    G.mapping(z, None)
    torch.testing.assert_close(G.mapping.w_avg, expected + 0.995 * expected, rtol=1e-5, atol=1e-7)


def test_truncation_in_w():
    G, _ = tiny(latent_dim=11, num_classes=3)
    G.eval()
    G.mapping.w_avg.normal_()
    z, c = torch.randn(4, 8), torch.eye(3)[[0, 1, 2, 0]]
    ws = G.mapping(z, c)
    assert torch.equal(G.mapping(z, c, truncation_psi=1.0), ws)
    at_average = G.mapping(z, c, truncation_psi=0.0)
    torch.testing.assert_close(at_average, G.mapping.w_avg.expand_as(ws))
    half = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], (ws[:, :2] + G.mapping.w_avg) / 2)
    assert torch.equal(half[:, 2:], ws[:, 2:])
    inputs = torch.cat([z, c], dim=1)
    expected = torch.tanh(G.synthesis(G.mapping(z, c, truncation_psi=0.7)))
    torch.testing.assert_close(G(inputs, truncation_psi=0.7), expected)


def test_without_rng_the_noise_is_constant():
    G = noisy(tiny()[0])
    z = torch.randn(3, 8)
    G.eval()
    first = G(z)
    assert torch.equal(G(z), first)
    G.train()  # no rng: no random noise and no style mixing in training mode either
    assert torch.equal(G(z), first)


def test_noise_comes_from_the_rng():
    G = noisy(tiny()[0]).eval()
    z = torch.randn(3, 8)
    ws = G.mapping(z, None)
    seeded = [G.synthesis(ws, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(seeded[0], seeded[1])
    assert not torch.allclose(seeded[0], seeded[2])
    assert not torch.allclose(seeded[0], G.synthesis(ws))  # and not the constant noise
    state = torch.get_rng_state()
    G(z, rng=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is never drawn from


def test_style_mixing_only_in_training_mode_with_an_rng():
    G, _ = tiny(style_mixing=1.0)  # noise strengths at 0: the images depend on ws alone
    z = torch.randn(4, 8)
    plain = torch.tanh(G.synthesis(G.mapping(z, None)))
    G.eval()
    torch.testing.assert_close(G(z, rng=torch.Generator().manual_seed(0)), plain)
    G.train()
    torch.testing.assert_close(G(z), plain)
    mixed = G(z, rng=torch.Generator().manual_seed(0))
    assert not torch.allclose(mixed, plain)
    assert torch.equal(G(z, rng=torch.Generator().manual_seed(0)), mixed)
    G.style_mixing = 0.0
    torch.testing.assert_close(G(z, rng=torch.Generator().manual_seed(0)), plain)


@pytest.mark.parametrize("seed", range(4))
def test_mixed_styles_switch_to_a_second_w_at_one_cutoff(seed):
    G, _ = tiny(style_mixing=1.0)
    z = torch.randn(4, 8)
    ws = G.mapping(z, None)
    mixed = G.mix_styles(ws, z, None, torch.Generator().manual_seed(seed))
    same = [bool(torch.equal(mixed[:, i], ws[:, i])) for i in range(G.num_ws)]
    cutoff = same.index(False)
    assert cutoff >= 1 and all(same[:cutoff]) and not any(same[cutoff:])
    assert all(torch.equal(mixed[:, i], mixed[:, cutoff]) for i in range(cutoff, G.num_ws))  # one second w


def test_style_mixing_mixes_a_whole_batch_with_its_probability():
    # as the reference's run_G: one draw per batch decides whether every sample mixes or none does
    G, _ = tiny(style_mixing=0.5)
    z = torch.randn(3, 8)
    ws = G.mapping(z, None)
    mixed_batches = 0
    for seed in range(200):
        mixed = G.mix_styles(ws, z, None, torch.Generator().manual_seed(seed))
        changed = [not torch.equal(mixed[i], ws[i]) for i in range(3)]
        assert all(changed) or not any(changed)
        mixed_batches += changed[0]
    # 200 Bernoulli(0.5) draws: standard error 0.035, so the bounds are 3 of them either side
    assert 0.39 < mixed_batches / 200 < 0.61


def test_style_mixing_leaves_the_w_average_to_the_first_latent():
    # the reference maps the second z with skip_w_avg_update: w_avg tracks G's own latents, not mixing's draws
    G, _ = tiny(style_mixing=1.0)
    G.train()
    z = torch.randn(4, 8)
    start = G.mapping.w_avg.clone()
    mixed = G(z, rng=torch.Generator().manual_seed(0))
    after_mixing = G.mapping.w_avg.clone()
    G.mapping.w_avg.copy_(start)
    G.style_mixing = 0.0
    plain = G(z, rng=torch.Generator().manual_seed(0))
    assert not torch.allclose(mixed, plain)  # the first forward did mix
    assert not torch.equal(after_mixing, start)
    assert torch.equal(after_mixing, G.mapping.w_avg)


def test_fir_resampling_by_hand():
    f = setup_filter()
    torch.testing.assert_close(f, torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64)
    ones = torch.ones(1, 1, 8, 8)
    assert torch.allclose(upsample2d(ones, f)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))  # DC gain 1
    assert torch.allclose(downsample2d(ones, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))
    impulse = torch.zeros(1, 1, 8, 8)
    impulse[..., 3, 3] = 1.0
    # output pixel i of the downsampled map filters input rows 2i - 1 .. 2i + 2 with taps 1 3 3 1 / 8: row 3 is
    # tap 3/8 for i = 1 and tap 1/8 for i = 2
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = torch.tensor([[9.0, 3], [3, 1]]) / 64
    torch.testing.assert_close(downsample2d(impulse, f)[0, 0], expected)
    # 2x up: zeros between pixels, then the filter at gain 4, so one pixel spreads to 4x4 outputs 1 3 3 1 / 4 per axis
    impulse = torch.zeros(1, 1, 4, 4)
    impulse[..., 1, 1] = 1.0
    expected = torch.zeros(8, 8)
    expected[1:5, 1:5] = torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 16
    torch.testing.assert_close(upsample2d(impulse, f)[0, 0], expected)


def test_minibatch_std_by_hand():
    x = torch.randn(6, 4, 2, 2)
    out = MinibatchStdLayer(group_size=3, num_channels=2)(x)
    assert out.shape == (6, 6, 2, 2) and torch.equal(out[:, :4], x)
    for member in range(2):  # sample i is in group i mod 2
        group = x[member::2]  # (3, 4, 2, 2)
        std = group.var(dim=0, unbiased=False).add(1e-8).sqrt()  # (4, 2, 2)
        per_channel_group = std.reshape(2, 2, 2, 2).mean(dim=[1, 2, 3])  # channels split in 2 groups of 2
        for i in range(member, 6, 2):
            torch.testing.assert_close(out[i, 4:, 0, 0], per_channel_group)
    # a batch the group size does not divide uses the largest group size below that does (6 -> 3 for 4)
    torch.testing.assert_close(MinibatchStdLayer(group_size=4, num_channels=2)(x), out)


@pytest.mark.parametrize("d_architecture", ["resnet", "orig", "skip"])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_gradients_reach_every_parameter(d_architecture, num_classes):
    G, D = tiny(latent_dim=8 + num_classes, num_classes=num_classes, d_architecture=d_architecture, conv_clamp=256.0)
    inputs = torch.randn(4, 8 + num_classes)
    if num_classes:
        inputs[:, 8:] = torch.eye(num_classes)[torch.arange(4) % num_classes]
    noisy(G)
    images = G(inputs, rng=torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 16, 16) and images.abs().max() <= 1
    features = D.features(images)
    assert features.shape == (4, D.feature_dim) and D.feature_dim == 8
    logits = D(images)
    torch.testing.assert_close(logits, D.head(features).squeeze(1))
    logits.sum().backward()
    for name, p in [*G.named_parameters(prefix="G"), *D.named_parameters(prefix="D")]:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_conv_clamp_bounds_a_layers_output_scaled_by_its_gain(gain):
    # the reference clamps at conv_clamp * gain (the forward's gain, not lrelu's sqrt 2); ToRGB at conv_clamp
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 4, 4), torch.randn(2, 8)
    clamped, free = SynthesisLayer(4, 4, 8, 4, conv_clamp=0.1), SynthesisLayer(4, 4, 8, 4)
    free.load_state_dict(clamped.state_dict())
    unclamped = free(x, w, gain=gain)
    assert unclamped.abs().max() > 0.1 * gain  # the clamp has something to cut
    torch.testing.assert_close(clamped(x, w, gain=gain), unclamped.clamp(-0.1 * gain, 0.1 * gain))
    clamped, free = ToRGBLayer(4, 3, 8, conv_clamp=0.1), ToRGBLayer(4, 3, 8)
    free.load_state_dict(clamped.state_dict())
    unclamped = free(x, w)
    assert unclamped.abs().max() > 0.1
    torch.testing.assert_close(clamped(x, w), unclamped.clamp(-0.1, 0.1))


def test_builder_options_sizes_and_refusals():
    assert {"ngf", "ndf", "w_dim", "mapping_layers", "channel_base", "mbstd_group", "d_architecture",
            "style_mixing", "conv_clamp"} <= set(builder_options("stylegan2"))  # fmt: skip
    assert default_image_size("stylegan2", 28) == 32  # MNIST is padded to 32
    assert default_image_size("stylegan2", 64) == 64
    for size in (28, 4, 48):
        with pytest.raises(ConfigError, match=f"image_size={size}"):
            build_models("stylegan2", latent_dim=8, channels=1, image_size=size)
    with pytest.raises(ConfigError, match="noise columns"):
        build_models("stylegan2", latent_dim=3, num_classes=3, channels=1, image_size=8)
    with pytest.raises(ConfigError, match="--mbstd-channels 3 must divide"):
        build_models("stylegan2", latent_dim=8, channels=1, image_size=8, ndf=8, mbstd_channels=3)


def test_infogan_codes_are_noise_columns():
    G, _ = tiny(latent_dim=12)  # e.g. 8 noise + 3 categorical + 1 continuous: all z
    assert G.z_dim == 12 and G.c_dim == 0
    inputs = torch.randn(2, 12)
    changed = inputs.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(G(inputs), G(changed))


def test_modulated_conv_in_fp16_does_not_overflow_on_large_weights_and_styles():
    # the reference's fp16 guard: weights and styles scaled to a max of 1 first, which demodulation divides out
    torch.manual_seed(0)
    x, weight = torch.randn(2, 8, 8, 8), torch.randn(4, 8, 3, 3) * 300  # (B, I, H, W), (O, I, 3, 3)
    styles = torch.randn(2, 8) * 300 + 600  # (B, I): x * styles * weight summed over 72 taps would pass 65504
    expected = modulated_conv2d(x, weight, styles, padding=1)
    with torch.autocast("cpu", dtype=torch.float16):
        half = modulated_conv2d(x, weight, styles, padding=1)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), expected, rtol=0, atol=1e-2)
    # in fp32 the guard is off: demodulated outputs have unit scale whatever the weights' and styles'
    assert 0.5 < expected.std() < 2


def test_sample_checks_psi_for_a_generator_that_truncates_in_w():
    # z's own truncation, which checks psi, is skipped for a style-based G: sample() checks it itself
    from gan_lightning import GAN

    gan = GAN("stylegan2", latent_dim=8, image_size=8, ngf=8, ndf=8, w_dim=8)
    for psi in (2.0, 0.0, float("nan")):
        with pytest.raises(ConfigError, match=r"^--truncation must lie in \(0, 1\]"):
            gan.sample(2, truncation=psi)
    assert gan.sample(2, truncation=0.5).shape == (2, 1, 8, 8)
    # psi reaches G, which truncates toward a w_avg made non-zero (at zero, truncation would only shrink w)
    G = gan.sampling_generator()
    G.mapping.w_avg.normal_(generator=torch.Generator().manual_seed(0))
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    truncated = gan.sample(latents=z, truncation=0.5)
    G.eval()  # as sample() runs it, without an rng: the constant noise
    torch.testing.assert_close(truncated, G(z, truncation_psi=0.5))
    assert not torch.allclose(truncated, gan.sample(latents=z))


def test_style_mixing_draws_its_second_latent_from_the_runs_prior_with_the_same_infogan_codes():
    from gan_lightning import GAN

    def second_latents(gan: GAN, z: torch.Tensor) -> torch.Tensor:
        G = gan.generator
        G.style_mixing = 1.0
        seen = []
        hook = G.mapping.register_forward_hook(lambda module, args, out: seen.append(args[0]))
        G.mix_styles(G.mapping(z, None), z, None, torch.Generator().manual_seed(3))
        hook.remove()
        return seen[-1]  # the z the mixing mapped

    kwargs = {"latent_dim": 8, "image_size": 8, "ngf": 8, "ndf": 8, "w_dim": 8}
    uniform = second_latents(GAN("stylegan2", noise="uniform", **kwargs), torch.zeros(256, 8))
    assert uniform.abs().max() <= 1 and uniform.std() < 0.7  # U(-1, 1): std 0.58; N(0, 1) would pass 1
    gan = GAN("stylegan2", noise="normal", **kwargs)
    normal = second_latents(gan, torch.zeros(256, 8))
    gan.generator.mixing_latent = None  # the reference's own draw, torch.randn from the same stream
    assert torch.equal(normal, second_latents(gan, torch.zeros(256, 8)))  # normal-prior runs are unchanged
    info = GAN("stylegan2", noise="normal", infogan=True, n_cat=3, n_cont=1, **kwargs)
    z = info.latents.draw(64, torch.Generator().manual_seed(0), torch.device("cpu")).input  # (64, 8 + 3 + 1)
    mixed = second_latents(info, z)
    assert torch.equal(mixed[:, 8:], z[:, 8:]) and not torch.equal(mixed[:, :8], z[:, :8])  # codes kept, noise new
