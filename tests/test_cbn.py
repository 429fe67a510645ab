"""Class-conditional BatchNorm in the convolutional generators (`--g-conditioning cbn`): shapes, parameter counts,
plain BatchNorm at initialisation, dependence on the label, gradients, refusals, a short run and a checkpoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_registry_wide import PhaseProbe, tiny_gan
from test_run_ux import one_error_line, status_of
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.commands.sample import load_gan
from gan_lightning.core.errors import ConfigError
from gan_lightning.models import MODELS, build_models, builder_options, default_image_size
from gan_lightning.models.cbn import ConditionalBatchNorm
from gan_lightning.training.objectives import get_objective

from conftest import cpu_trainer

K = 3
CBN_MODELS = [m for m in MODELS.names() if "g_conditioning" in builder_options(m)]
# (model, noise dim, channels, size, widths): the smallest each builds
SHAPES = {"dcgan": (8, 3, 32, {"ngf": 8, "ndf": 8}), "dcgan_mnist": (8, 1, 28, {}),
          "sngan_cnn": (8, 3, 32, {"ngf": 8, "ndf": 8}), "sngan_resnet": (8, 3, 32, {"ngf": 4, "ndf": 4})}  # fmt: skip
# BatchNorms of each G that become conditional, and those its source keeps plain (sngan_projection's conditional
# ResNet G: the blocks' six, not the one before the output)
CONDITIONED = {"dcgan": (3, 0), "dcgan_mnist": (3, 0), "sngan_cnn": (4, 0), "sngan_resnet": (6, 1)}


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def cbn_generator(model: str, **extra) -> nn.Module:
    nz, channels, size, widths = SHAPES[model]
    g, _ = build_models(model, latent_dim=nz + K, channels=channels, image_size=size, num_classes=K,
                        g_conditioning="cbn", **widths, **extra)  # fmt: skip
    return g


def inputs(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What LatentSpace.draw builds for a conditional GAN: noise, then the one-hot labels."""
    return torch.cat([z, F.one_hot(labels, K).float()], dim=1)


def perturb(g: nn.Module) -> None:
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm):
                m.gain.normal_(0, 0.5)
                m.bias.normal_(0, 0.5)


def test_the_models_with_batchnorm_in_g_take_the_option():
    assert CBN_MODELS == sorted(SHAPES)


def test_conditional_batchnorm_against_hand_computed_values():
    layer = ConditionalBatchNorm(2, 3, nn.BatchNorm1d)
    with torch.no_grad():
        layer.gain.copy_(torch.tensor([[0.5, -0.5], [1.0, 0.0], [0.0, 2.0]]))
        layer.bias.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0], [-1.0, 3.0]]))
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0]])  # per-feature batch mean (2, 2), biased variance (1, 4)
    y = F.one_hot(torch.tensor([0, 2]), 3).float()
    normalised = torch.tensor([[-1.0, -1.0], [1.0, 1.0]]) / torch.sqrt(torch.tensor(1.0 + 1e-5))
    normalised[:, 1] = torch.tensor([-1.0, 1.0]) * 2 / torch.sqrt(torch.tensor(4.0 + 1e-5))
    expected = torch.stack([normalised[0] * torch.tensor([1.5, 0.5]) + torch.tensor([1.0, 2.0]),
                            normalised[1] * torch.tensor([1.0, 3.0]) + torch.tensor([-1.0, 3.0])])  # fmt: skip
    torch.testing.assert_close(layer(x, y), expected)
    assert layer.norm.weight is None and torch.equal(layer.norm.running_mean, torch.tensor([0.2, 0.2]))


def test_parameter_counts_by_hand():
    # dcgan_mnist, noise 96, 10 classes: the first Linear sees the 96 noise columns only, and the BatchNorms of
    # 1024, 6272 and 64 features trade their 2 x 7360 affine parameters for 2 x 10 x 7360 per-class ones
    g, _ = build_models("dcgan_mnist", latent_dim=106, channels=1, image_size=28, num_classes=10, g_conditioning="cbn")
    assert num_params(g) == 6_675_009 - 2 * 7360 + 2 * 10 * 7360 == 6_807_489
    # dcgan, noise 100, 3x64x64: BatchNorms of 512, 256, 128 and 64 channels (960)
    g, _ = build_models("dcgan", latent_dim=110, channels=3, image_size=64, num_classes=10, g_conditioning="cbn")
    assert num_params(g) == 3_576_704 - 2 * 960 + 2 * 10 * 960 == 3_593_984
    # sngan_resnet, noise 128, ngf 64: the blocks' six BatchNorms of 256 channels (1536); the last one stays plain
    g, _ = build_models("sngan_resnet", latent_dim=138, channels=3, image_size=32, num_classes=10, g_conditioning="cbn")
    assert num_params(g) == 4_276_739 - 2 * 1536 + 2 * 10 * 1536 == 4_304_387
    # sngan_cnn, noise 128, ngf 64: BatchNorms of 4*4*512 units, then 256, 128 and 64 channels (8640)
    g, _ = build_models("sngan_cnn", latent_dim=138, channels=3, image_size=32, num_classes=10, g_conditioning="cbn")
    assert num_params(g) == 3_828_739 - 2 * 8640 + 2 * 10 * 8640 == 3_984_259


@pytest.mark.parametrize("model", CBN_MODELS)
def test_the_default_keeps_todays_networks_and_parameter_names(model):
    nz, channels, size, widths = SHAPES[model]
    torch.manual_seed(0)
    g, d = build_models(model, latent_dim=nz + K, channels=channels, image_size=size, num_classes=K, **widths)
    torch.manual_seed(0)
    g0, d0 = build_models(model, latent_dim=nz + K, channels=channels, image_size=size, **widths)  # as before
    for new, old in ((g, g0), (d, d0)):
        assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in old.state_dict().items()}
        assert all(torch.equal(new.state_dict()[k], v) for k, v in old.state_dict().items())
    assert not any(isinstance(m, ConditionalBatchNorm) for m in g.modules())


@pytest.mark.parametrize("model", CBN_MODELS)
def test_shapes_and_range(model):
    g = cbn_generator(model)
    nz, channels, size, _ = SHAPES[model]
    out = g(inputs(torch.randn(4, nz), torch.tensor([0, 1, 2, 0])))
    assert out.shape == (4, channels, size, size) and out.abs().max() <= 1
    conditioned, kept = CONDITIONED[model]
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine for m in g.modules()) == kept
    # the BatchNorms of today's G became cBNs (dcgan at 32 px: its 4x4, 8x8 and 16x16 maps), the kept ones aside
    plain = build_models(model, latent_dim=nz, channels=channels, image_size=size, **SHAPES[model][3])[0]
    assert sum(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in plain.modules()) == conditioned + kept
    assert sum(isinstance(m, ConditionalBatchNorm) for m in g.modules()) == conditioned


def _plain_twin(model: str, g: nn.Module) -> nn.Module:
    """The unconditional generator on the noise alone, with g's weights and BatchNorm weight 1, bias 0."""
    nz, channels, size, widths = SHAPES[model]
    plain, _ = build_models(model, latent_dim=nz, channels=channels, image_size=size, **widths)
    state = plain.state_dict()
    for key in state:
        prefix, _, leaf = key.rpartition(".")
        if f"{prefix}.norm.{leaf}" in g.state_dict():  # a BatchNorm buffer (running stats)
            state[key] = g.state_dict()[f"{prefix}.norm.{leaf}"]
        elif f"{prefix}.gain" in g.state_dict():  # the BatchNorm's affine: what a zero cBN amounts to
            state[key] = torch.ones_like(state[key]) if leaf == "weight" else torch.zeros_like(state[key])
        else:
            state[key] = g.state_dict()[key]
    plain.load_state_dict(state)
    return plain


@pytest.mark.parametrize("model", CBN_MODELS)
def test_at_initialisation_it_is_plain_batchnorm_whatever_the_label(model):
    torch.manual_seed(0)
    g = cbn_generator(model)
    z = torch.randn(6, SHAPES[model][0])
    for mode in ("train", "eval"):  # batch statistics, then the running ones the train-mode passes left
        plain = _plain_twin(model, g)
        g.train(mode == "train"), plain.train(mode == "train")
        a, b = g(inputs(z, torch.tensor([0, 1, 2, 0, 1, 2]))), g(inputs(z, torch.tensor([2, 2, 2, 1, 1, 0])))
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the label has no effect yet
        torch.testing.assert_close(a, plain(z))


@pytest.mark.parametrize("model", CBN_MODELS)
def test_once_the_tables_move_the_label_changes_the_image_and_only_its_own(model):
    torch.manual_seed(0)
    g = cbn_generator(model).eval()  # eval: each sample depends on its own input only
    perturb(g)
    z = torch.randn(1, SHAPES[model][0]).expand(K, -1)
    images = g(inputs(z, torch.arange(K)))  # the same noise, one row per class
    for i in range(K):
        for j in range(i + 1, K):
            assert (images[i] - images[j]).abs().max() > 1e-3, (i, j)
    again = g(inputs(z[:2], torch.tensor([1, 1])))
    torch.testing.assert_close(again, images[1].expand(2, -1, -1, -1))
    # soft one-hots blend the classes' gains and biases linearly (what averaged latents in sample.py give)
    layer = next(m for m in g.modules() if isinstance(m, ConditionalBatchNorm))
    x = torch.randn(2, layer.gain.shape[1], *(() if isinstance(layer.norm, nn.BatchNorm1d) else (2, 2)))
    half = torch.tensor([[0.5, 0.5, 0.0]]).expand(2, -1)
    y0, y1 = F.one_hot(torch.tensor([0, 0]), K).float(), F.one_hot(torch.tensor([1, 1]), K).float()
    torch.testing.assert_close(layer(x, half), (layer(x, y0) + layer(x, y1)) / 2)


@pytest.mark.parametrize("model", CBN_MODELS)
def test_gradients_reach_every_class_table_in_one_real_iteration(tmp_path, model):
    probe = PhaseProbe(get_objective("bce"))
    torch.manual_seed(0)
    gan = tiny_gan(model, objective=probe, conditional=True, num_classes=K, g_conditioning="cbn")
    size = gan.hparams.image_size
    data = TensorDataset(torch.rand(8, 1, size, size) * 2 - 1, torch.arange(8) % K)
    cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1)).fit(gan, DataLoader(data, batch_size=8))
    tables = {k for k in probe.seen["g"][0] if k.endswith((".gain", ".bias")) and ".norm." not in k}
    assert tables and {k for k in tables if "gain" in k} and tables <= probe.moving["G phase"]


@pytest.mark.parametrize("model", sorted(set(MODELS.names()) - set(CBN_MODELS)))
def test_the_other_models_refuse_it_in_one_line(model):
    # mlp and resnet have no BatchNorm in G
    size = default_image_size(model, 32)  # 32, or the size a fixed-size model builds (28 for infogan_mnist)
    with pytest.raises(ConfigError) as err:
        GAN(model, image_size=size, latent_dim=8, ngf=8, ndf=8, conditional=True, num_classes=K, g_conditioning="cbn")
    GAN(model, image_size=size, latent_dim=8, ngf=8, ndf=8, conditional=True, num_classes=K)  # builds with the default
    message = str(err.value)
    assert "\n" not in message
    expected = f"--g-conditioning cbn does not apply to --model {model} (only {', '.join(CBN_MODELS)} take it)"
    assert expected in message


@pytest.mark.parametrize("options", [{}, {"infogan": True}], ids=["unconditional", "infogan"])
def test_cbn_needs_class_labels(options):
    with pytest.raises(ConfigError, match="--g-conditioning cbn conditions G's BatchNorms on class labels; add --cond"):
        GAN("dcgan", image_size=32, latent_dim=8, ngf=8, ndf=8, g_conditioning="cbn", **options)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    gan = GAN("dcgan", image_size=32, latent_dim=8, ngf=8, ndf=8, conditional=True, num_classes=K,
              g_conditioning="cbn", channels=1)  # fmt: skip
    data = TensorDataset(torch.rand(16, 1, 32, 32) * 2 - 1, torch.arange(16) % K)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, DataLoader(data, batch_size=8))
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    assert "generator.main.1.gain" in gan.state_dict() and gan.hparams.g_conditioning == "cbn"
    labels, z = torch.arange(K).repeat(2), torch.rand(2 * K, 8) * 2 - 1
    for loaded in (GAN.load_from_checkpoint(tmp_path / "gan.ckpt"), load_gan(tmp_path / "gan.ckpt")):
        torch.testing.assert_close(loaded.sample(z=z, labels=labels), gan.sample(z=z, labels=labels))


def test_a_short_conditional_mnist_run_with_cbn(tmp_path, fake_mnist_dir, capsys):
    logs = tmp_path / "logs"
    argv = ["--data-dir", str(fake_mnist_dir), "--model", "dcgan_mnist", "--conditional", "--g-conditioning", "cbn",
            "--latent-dim", "8", "--batch-size", "16", "--accelerator", "cpu", "--log-dir", str(logs),
            "--sample-every", "2", "--max-steps", "2"]  # fmt: skip
    assert status_of(argv) == 0
    run = logs / "dcgan_mnist" / "version_0"
    gan = load_gan(run / "checkpoints" / "last.ckpt")
    assert gan.hparams.g_conditioning == "cbn" and gan.latents.input_dim == 8 + 10
    assert (run / "samples" / "samples_0000002.png").is_file()
    # G's labels travel through its BatchNorms: resuming as a one-hot-input G is another network, refused
    resume = [*argv, "--max-steps", "3", "--ckpt-path", "last", "--g-conditioning", "input"]
    assert status_of(resume) == 2
    assert "--g-conditioning cbn -> input" in one_error_line(capsys)
