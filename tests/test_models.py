"""Registry-wide model tests: parameter counts, shapes, gradients, init and the published layer specs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_lightning.core.errors import ConfigError
from gan_lightning.models import MODELS, build_models, builder_options
from gan_lightning.models.dcgan import DCGANDiscriminator, DCGANGenerator

# Hand-picked sizes per model; each case is (latent_dim, channels, image_size, options), small ngf/ndf keep the
# dcgan cases fast. A registered model without an entry is tested at the sizes it declares (`default_cases`), so a
# new model file needs no edit here to be covered.
CASES: dict[str, list[tuple[int, int, int, dict[str, int]]]] = {
    "mlp": [(96, 1, 28, {}), (16, 1, 32, {}), (16, 3, 32, {})],
    "dcgan_mnist": [(96, 1, 28, {}), (16, 3, 28, {})],
    "infogan_mnist": [(74, 1, 28, {}), (16, 3, 28, {})],
    "dcgan": [
        (16, 3, 32, {"ngf": 8, "ndf": 8}),
        (16, 1, 64, {"ngf": 8, "ndf": 4}),
        (16, 3, 128, {"ngf": 4, "ndf": 4}),
    ],
    "resnet": [(16, 1, 28, {"ngf": 8, "ndf": 8}), (16, 3, 32, {"ngf": 8, "ndf": 8}), (16, 3, 64, {"ngf": 4, "ndf": 4})],
    "sngan_cnn": [(16, 3, 32, {"ngf": 8, "ndf": 8}), (16, 1, 32, {"ngf": 4, "ndf": 4})],
    "sngan_resnet": [(16, 3, 32, {"ngf": 8, "ndf": 8}), (16, 1, 32, {"ngf": 4, "ndf": 4})],
    "stylegan2": [
        (16, 1, 32, {"ngf": 8, "ndf": 8}),
        (16, 3, 8, {"ngf": 4, "ndf": 4}),
        (16, 3, 64, {"ngf": 4, "ndf": 4}),
    ],
    "r3gan": [(16, 1, 32, {"ngf": 8, "ndf": 8}), (16, 3, 32, {"ngf": 8, "ndf": 4}), (16, 3, 16, {"ngf": 4, "ndf": 8})],
}


def default_cases(name: str) -> list[tuple[int, int, int, dict[str, int]]]:
    """One- and three-channel cases at the smallest size model `name` declares (32 when it builds any), narrow."""
    size = min(getattr(MODELS.get(name), "image_sizes", None) or [32])
    narrow = {o: 4 for o in builder_options(name) if o in ("ngf", "ndf")}
    return [(16, 1, size, narrow), (16, 3, size, narrow)]


SHAPE_CASES = [(name, *case) for name in MODELS.names() for case in CASES.get(name) or default_cases(name)]


def num_params(module: nn.Module) -> int:
    """Total number of parameters."""
    return sum(p.numel() for p in module.parameters())


def test_every_registered_model_has_shape_cases() -> None:
    assert {case[0] for case in SHAPE_CASES} == set(MODELS.names())
    assert set(CASES) <= set(MODELS.names())  # no hand-picked cases for a model that is gone


@pytest.mark.parametrize(
    ("name", "latent_dim", "channels", "image_size", "expected_g", "expected_d"),
    [
        ("mlp", 96, 1, 28, 1_952_528, 267_009),
        ("dcgan_mnist", 96, 1, 28, 6_675_009, 1_102_721),
        ("infogan_mnist", 74, 1, 28, 6_652_481, 6_559_169),  # by hand in models/infogan.py
        ("dcgan", 100, 3, 64, 3_576_704, 2_765_568),
        ("sngan_cnn", 128, 3, 32, 3_828_739, 5_860_865),  # by hand in test_sngan.py
        ("sngan_resnet", 128, 3, 32, 4_276_739, 1_053_824),
        # 8 blocks of 4w^2 + 292w at w = 64, plus G's basis, input Linear and output conv, D's in/out layers;
        # R3GAN's CIFAR-10 widths are in test_r3gan.py
        ("r3gan", 64, 3, 32, 285_888, 281_856),
    ],
)
def test_parameter_counts(
    name: str, latent_dim: int, channels: int, image_size: int, expected_g: int, expected_d: int
) -> None:
    g, d = build_models(name, latent_dim=latent_dim, channels=channels, image_size=image_size)
    assert num_params(g) == expected_g
    assert num_params(d) == expected_d


@pytest.mark.parametrize(("name", "latent_dim", "channels", "image_size", "options"), SHAPE_CASES)
def test_shapes_range_and_gradients(
    name: str, latent_dim: int, channels: int, image_size: int, options: dict[str, int]
) -> None:
    torch.manual_seed(0)
    g, d = build_models(name, latent_dim=latent_dim, channels=channels, image_size=image_size, **options)
    batch = 2  # BatchNorm1d in train mode needs more than one sample
    z = torch.randn(batch, latent_dim)

    fake = g(z)
    assert fake.shape == (batch, channels, image_size, image_size)
    assert torch.isfinite(fake).all()
    assert fake.abs().max() <= 1.0

    features = d.features(fake)
    assert features.shape == (batch, d.feature_dim)
    assert torch.isfinite(features).all()

    logits = d(fake)
    assert logits.shape == (batch,)
    assert torch.isfinite(logits).all()

    logits.sum().backward()
    for module_name, module in (("G", g), ("D", d)):
        for param_name, param in module.named_parameters():
            assert param.grad is not None, f"{module_name}.{param_name} got no gradient"
            assert torch.isfinite(param.grad).all(), f"{module_name}.{param_name} has a non-finite gradient"
    # Gradients must actually reach the generator's first layer through D and every G layer.
    first_g_weight = next(g.parameters())
    assert first_g_weight.grad.abs().sum() > 0


def test_dcgan_init_statistics() -> None:
    torch.manual_seed(0)
    g, d = build_models("dcgan", latent_dim=100, channels=3, image_size=64)
    for module in (g, d):
        bn_weights, bn_biases = [], []
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                w = layer.weight.detach()
                # PyTorch's default (kaiming-uniform, fan-in) gives stds from ~0.006 to ~0.08 on these layers;
                # the closest (fan-in 1024) is ~0.018, so 0.001 separates it while leaving >3 standard errors.
                assert abs(w.mean().item()) < 0.002, layer
                assert abs(w.std().item() - 0.02) < 0.001, layer
            elif isinstance(layer, nn.BatchNorm2d):
                bn_weights.append(layer.weight.detach())
                bn_biases.append(layer.bias.detach())
        # Pooled because a 64-channel layer alone gives a noisy std; the default init has std exactly 0.
        bn_w = torch.cat(bn_weights)
        assert abs(bn_w.mean().item() - 1.0) < 0.005
        assert abs(bn_w.std().item() - 0.02) < 0.004
        assert torch.equal(torch.cat(bn_biases), torch.zeros_like(torch.cat(bn_biases)))


def test_dcgan_64_matches_tutorial_layout() -> None:
    g, d = build_models("dcgan", latent_dim=100, channels=3, image_size=64)
    g_convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in g_convs] == [
        (100, 512),
        (512, 256),
        (256, 128),
        (128, 64),
        (64, 3),
    ]
    assert [(m.stride, m.padding) for m in g_convs] == [((1, 1), (0, 0))] + [((2, 2), (1, 1))] * 4
    assert all(m.bias is None for m in g_convs)
    assert isinstance(list(g.modules())[-1], nn.Tanh)

    d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in d_convs] == [(3, 64), (64, 128), (128, 256), (256, 512)]
    # No BatchNorm right after the first conv, and LeakyReLU 0.2 throughout.
    body = list(d.body)
    assert isinstance(body[1], nn.LeakyReLU)
    assert {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_dcgan_linear_head_equals_tutorial_final_conv() -> None:
    torch.manual_seed(0)
    d = DCGANDiscriminator(channels=3, image_size=64, ndf=8).eval()
    x = torch.randn(2, 3, 64, 64)
    conv = nn.Conv2d(8 * 8, 1, 4, 1, 0, bias=False)
    conv.weight.data.copy_(d.head.weight.view(1, 8 * 8, 4, 4))
    body_map = d.body[:-1](x)  # (B, ndf*8, 4, 4), before the Flatten
    torch.testing.assert_close(d(x), conv(body_map).view(2))


def test_dcgan_generator_accepts_4d_noise() -> None:
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=16, channels=3, image_size=32, ngf=4).eval()
    z = torch.randn(2, 16)
    torch.testing.assert_close(g(z), g(z.view(2, 16, 1, 1)))


def test_mlp_matches_cs231n_spec() -> None:
    g, d = build_models("mlp", latent_dim=96, channels=1, image_size=28)
    d_linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in d_linears] == [(784, 256), (256, 256), (256, 1)]
    slopes = [m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.01, 0.01]

    g_layers = [m for m in g.modules() if not isinstance(m, nn.Sequential) and m is not g]
    assert [type(m) for m in g_layers] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.Tanh]
    assert [(m.in_features, m.out_features) for m in g_layers if isinstance(m, nn.Linear)] == [
        (96, 1024),
        (1024, 1024),
        (1024, 784),
    ]


def test_dcgan_mnist_matches_cs231n_spec() -> None:
    g, d = build_models("dcgan_mnist", latent_dim=96, channels=1, image_size=28)
    g_layers = [m for m in g.modules() if not isinstance(m, nn.Sequential) and m is not g]
    assert [type(m) for m in g_layers] == [
        nn.Linear,
        nn.ReLU,
        nn.BatchNorm1d,
        nn.Linear,
        nn.ReLU,
        nn.BatchNorm1d,  # per-unit over the 7*7*128 FC output, not BatchNorm2d(128)
        nn.ConvTranspose2d,
        nn.ReLU,
        nn.BatchNorm2d,
        nn.ConvTranspose2d,
        nn.Tanh,
    ]
    assert g_layers[5].num_features == 7 * 7 * 128

    slopes = {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.01}
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (32, (5, 5), (1, 1)),
        (64, (5, 5), (1, 1)),
    ]
    assert sum(isinstance(m, nn.MaxPool2d) for m in d.modules()) == 2
    assert d.feature_dim == 1024


@pytest.mark.parametrize(
    ("name", "image_size", "fragments"),
    [
        ("dcgan_mnist", 32, ["28x28 only", "32", "--model dcgan"]),
        ("infogan_mnist", 32, ["28x28 only", "32", "--model dcgan"]),
        ("dcgan", 48, ["48", "32, 64, 128"]),
        ("dcgan", 16, ["16", "powers of two"]),
    ],
)
def test_unsupported_sizes_raise_config_error(name: str, image_size: int, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_models(name, latent_dim=16, channels=1, image_size=image_size)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        build_models("nope", latent_dim=16, channels=1, image_size=28)
    for name in MODELS.names():
        assert name in str(info.value)
