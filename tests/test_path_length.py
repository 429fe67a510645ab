"""Path-length regularization (regularizers/path_length.py): the penalty against a hand-computed value on a linear
style-based G, the running mean, laziness, refusal of a G without mapping / synthesis, and a real StyleGAN2 run.

The G: z (B, 2) -> ws = [z, z] (two styles); synthesis(ws) = the image (B, 1, 1, 2) = A (w_0 + w_1), A = [[1, 2],
[0, -1]]. Then d(sum image * y)/d w_j = A^T y for both styles, so l = sqrt(mean_j ||A^T y||^2) = ||A^T y||.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gan_lightning import GAN
from gan_lightning.core.errors import ConfigError
from gan_lightning.regularizers import PhaseContext
from gan_lightning.regularizers.path_length import PathLength
from gan_lightning.training.batch import Batch
from gan_lightning.training.latents import Latents

A = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
Z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])


class LinearStyleG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))  # mapping's one weight (ws then require grad, as in a real G)
        self.scale = nn.Parameter(torch.ones(()))  # synthesis' one weight, 1: the lengths are ||A^T y||

    def split(self, inputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        return inputs, None

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return torch.stack([z, z], dim=1) * self.gain  # (B, 2, 2)

    def synthesis(self, ws: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        return (self.scale * ws.sum(1) @ A.T).view(-1, 1, 1, 2)  # (B, 1, 1, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(*self.split(inputs)))


def g_context(G: nn.Module, seed: int, step: int = 0) -> PhaseContext:
    fakes = G(Z)
    rng = torch.Generator().manual_seed(seed)
    return PhaseContext("g", step, None, None, Batch(fakes.detach(), None), Latents(Z, Z), None, fakes, G, None, rng)


def test_the_penalty_matches_hand_computed_lengths_and_running_mean():
    G, reg = LinearStyleG(), PathLength(2.0, every=4, decay=0.01, batch_shrink=2)
    term = reg.g_term(g_context(G, seed=3))
    # the first half of the batch (2 images); y as the regularizer draws it, scaled by 1/sqrt(H W) = 1/sqrt(2)
    y = torch.randn((2, 1, 1, 2), generator=torch.Generator().manual_seed(3)) / math.sqrt(2)
    lengths = (y.view(2, 2) @ A).norm(dim=1)  # ||A^T y_i||
    mean = 0.01 * lengths.mean()  # a starts at 0
    expected = ((lengths - mean) ** 2).mean()
    torch.testing.assert_close(term.stats["pl_penalty"], expected)
    torch.testing.assert_close(term.loss, 2.0 * expected)
    assert reg.pl_mean == 0  # the buffer moves once the G update is over
    reg.end_g_update(0)
    torch.testing.assert_close(reg.pl_mean, mean)
    assert "pl_mean" in reg.state_dict()  # a buffer: resumed with the run
    # the second call moves a again by 1% toward the new batch's mean
    term = reg.g_term(g_context(G, seed=4))
    reg.end_g_update(1)
    y = torch.randn((2, 1, 1, 2), generator=torch.Generator().manual_seed(4)) / math.sqrt(2)
    second = (y.view(2, 2) @ A).norm(dim=1).mean()
    torch.testing.assert_close(reg.pl_mean, mean + 0.01 * (second - mean))
    reg.end_g_update(2)  # an update where the penalty was not due leaves a where it was
    torch.testing.assert_close(reg.pl_mean, mean + 0.01 * (second - mean))
    (grad,) = torch.autograd.grad(term.loss, [G.scale])
    # l = scale ||A^T y||: d/dscale of 2 mean((l - a)^2), a's own dependence on l included, at scale = 1
    a = reg.pl_mean
    new = (y.view(2, 2) @ A).norm(dim=1)
    expected_grad = 2.0 * (2 * (new - a) * (new - 0.01 * new.mean())).mean()
    torch.testing.assert_close(grad, expected_grad)


def test_the_running_mean_moves_once_per_update_by_every_micro_batch():
    # --accumulate 2: two micro-batches of one G update, each penalty with a moved by its own mean; a itself moves
    # once, by the mean of all their lengths
    G, reg = LinearStyleG(), PathLength(2.0, every=1, decay=0.01, batch_shrink=2)
    terms = [reg.g_term(g_context(G, seed=seed)) for seed in (3, 4)]
    ys = [torch.randn((2, 1, 1, 2), generator=torch.Generator().manual_seed(seed)) / math.sqrt(2) for seed in (3, 4)]
    lengths = [(y.view(2, 2) @ A).norm(dim=1) for y in ys]
    for term, own in zip(terms, lengths, strict=True):
        torch.testing.assert_close(term.stats["pl_mean"], 0.01 * own.mean())
    reg.end_g_update(0)
    torch.testing.assert_close(reg.pl_mean, 0.01 * torch.cat(lengths).mean())
    assert "pending" not in reg.state_dict()  # zero between updates: checkpoints keep their keys


def test_laziness_and_options():
    reg = PathLength(2.0)
    assert (reg.interval("g"), reg.every, reg.decay, reg.batch_shrink) == (4, 4, 0.01, 2)  # StyleGAN2's
    assert PathLength.from_options(GAN.declared_options().defaults()) is None
    with pytest.raises(ConfigError, match="--pl-decay"):
        PathLength(2.0, decay=1.5)


def test_a_generator_without_mapping_and_synthesis_is_refused_in_one_line():
    with pytest.raises(ConfigError) as caught:
        GAN("mlp", latent_dim=8, pl_weight=2.0)
    assert "--model stylegan2" in str(caught.value) and "\n" not in str(caught.value)


def test_stylegan2_g_loss_adds_the_lazy_path_length_penalty_and_trains_the_mapping_through_it(monkeypatch):
    def build(pl_weight: float) -> GAN:
        torch.manual_seed(0)  # the same weights in both
        return GAN("stylegan2", image_size=8, latent_dim=8, ngf=8, ndf=8, w_dim=8, mapping_layers=2,
                   pl_weight=pl_weight, style_mixing=1.0, noise="normal")  # fmt: skip

    gan, without = build(2.0), build(0.0)
    reg = gan.objective.regularizer(PathLength)
    mix_styles, mixed_batches = gan.generator.mix_styles, []

    def recorded(ws: torch.Tensor, *args) -> torch.Tensor:
        mixed_batches.append(len(ws))
        return mix_styles(ws, *args)

    monkeypatch.setattr(gan.generator, "mix_styles", recorded)
    latents = gan.latents.draw(4, torch.Generator().manual_seed(0))
    real = Batch(torch.rand(4, 1, 8, 8) * 2 - 1, None)
    loss, plain = (
        model.objective.g_loss(model.generator, model.discriminator, real, latents, torch.Generator().manual_seed(1))
        for model in (gan, without)
    )
    gan.objective.end_g_update(0)
    # as the reference's run_G: the adversarial forward and the penalty's own (half the batch) both mix styles
    assert mixed_batches == [4, 2]
    assert reg.pl_mean > 0 and loss.stats["pl_penalty"] > 0
    # the penalty, weighted 2.0 and scaled by its lazy interval 4 as StyleGAN2's gain does, on top of the same
    # adversarial loss (PL's own draws come after the adversarial ones)
    added = loss.loss - plain.loss
    assert added.item() == pytest.approx(2.0 * 4 * loss.stats["pl_penalty"].item(), rel=1e-5)
    # the penalty moves the mapping network: its gradient differs from the adversarial loss's alone
    grads, plain_grads = (
        torch.autograd.grad(result.loss, list(model.generator.mapping.parameters()))
        for result, model in ((loss, gan), (plain, without))
    )
    assert any(not torch.allclose(g, h) for g, h in zip(grads, plain_grads, strict=True))


def test_a_resumed_run_with_path_length_and_accumulation_continues_exactly(tmp_path, fake_mnist_dir):
    # a regression guard through the real command: a is checkpointed and the per-update state is not (the once-per-
    # update rule itself is the micro-batch test above; all ranks agreeing is tests/test_ddp.py's)
    from test_resume import generator_weights, train

    flags = ("--model", "stylegan2", "--image-size", "8", "--ngf", "8", "--ndf", "8", "--w-dim", "8",
             "--mapping-layers", "1", "--pl-weight", "2", "--pl-every", "2", "--accumulate", "2")  # fmt: skip
    train(tmp_path / "straight", fake_mnist_dir, "--max-steps", "6", *flags)
    train(tmp_path / "resumed", fake_mnist_dir, "--max-steps", "3", *flags)
    train(tmp_path / "resumed", fake_mnist_dir, "--max-steps", "6", "--ckpt-path", "last", *flags)
    (straight, ckpt_a), (resumed, ckpt_b) = (generator_weights(tmp_path / run) for run in ("straight", "resumed"))
    key = "objective.regularizers.path_length.pl_mean"
    assert ckpt_a["state_dict"][key] > 0 and torch.equal(ckpt_a["state_dict"][key], ckpt_b["state_dict"][key])
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
