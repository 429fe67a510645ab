"""Adaptive augmentation (ADA): the p controller on scripted logits, per-sample probability, DDP agreement, logged
statistics, checkpointed state and exact resume (with LeCam on too)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.loggers import TensorBoardLogger
from test_callbacks import read_events
from test_resume import generator_weights, train
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.augment import AdaptiveAugment, DiffAugment, build_augment, cutout
from gan_lightning.core.options import declared
from gan_lightning.training.objectives import NonSaturating

from conftest import cpu_trainer


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def signs(*values: float) -> torch.Tensor:
    return torch.tensor(values)


def test_controller_steps_by_the_reals_seen_toward_the_target_floored_at_zero():
    # 4 logits x interval 2 = 8 reals per adjustment; kimg 0.032 = 32 reals from p=0 to p=1: steps of exactly 0.25
    ada = AdaptiveAugment("cutout", target=0.5, interval=2, kimg=0.032)
    up, down, at_target = signs(3, 1, 2, 5), signs(-1, -2, 4, -3), signs(1, 1, 1, -1)  # r_t = 1, -0.5, 0.5
    expected = []
    step = 0
    for interval, (logits, p_after) in enumerate([(up, 0.25), (up, 0.5), (down, 0.25), (at_target, 0.25),
                                                  (down, 0.0), (down, 0.0), (up, 0.25), (up, 0.5), (up, 0.75),
                                                  (up, 1.0), (up, 1.25), (down, 1.0)]):  # fmt: skip
        ada.observe(logits)
        ada.end_update(step)
        assert float(ada.p) == (expected[-1] if expected else 0.0), "p moved mid-interval"
        assert float(ada.count) == 4
        ada.observe(logits)
        ada.end_update(step + 1)
        step += 2
        expected.append(p_after)
        assert float(ada.p) == p_after, f"interval {interval}"
        assert float(ada.rt) == {id(up): 1.0, id(down): -0.5, id(at_target): 0.5}[id(logits)]
        assert float(ada.count) == 0 and float(ada.sign_sum) == 0  # the interval's sums start over
    # an interval mixing batches: r_t is over all its reals; a zero logit counts as sign 0
    ada.observe(signs(1, 1, 1, 1))
    ada.end_update(step)
    ada.observe(signs(0, 0, -1, -1))
    ada.end_update(step + 1)
    assert float(ada.rt) == pytest.approx(2 / 8) and float(ada.p) == 0.75


def test_p_zero_is_the_identity_and_p_one_applies_every_transform():
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    ada = AdaptiveAugment("translation,color,cutout", target=0.6)
    assert torch.equal(ada(x, rng(1)), x)  # p starts at 0
    ada.p.fill_(1.0)
    # p = 1: every image gets every transform, with the parameters the transforms draw after each mask
    replay, expected = rng(1), x
    for name in ("translation", "color", "cutout"):
        torch.rand(16, generator=replay)  # the mask
        expected = DiffAugment(name)(expected, replay)
    assert torch.equal(ada(x, rng(1)), expected)


def test_each_image_is_hit_with_probability_p_by_its_own_mask_draw():
    x = torch.ones(2000, 1, 8, 8)  # cutout changes every all-ones image
    ada = AdaptiveAugment("cutout", target=0.6)
    ada.p.fill_(0.3)
    out = ada(x, rng(2))
    changed = (out != x).flatten(1).any(1)
    replay = rng(2)
    mask = torch.rand(2000, generator=replay) < 0.3
    assert torch.equal(changed, mask)  # exactly the images whose draw fell under p
    assert torch.equal(out[mask], cutout(x, replay)[mask])
    assert abs(changed.float().mean().item() - 0.3) < 0.03  # 3 standard deviations of a Binomial(2000, 0.3) mean


def test_gradient_reaches_the_generator_through_augmented_and_clean_images():
    G = torch.nn.Linear(4, 8 * 8)
    ada = AdaptiveAugment("translation,color,cutout", target=0.6)
    ada.p.fill_(0.5)
    ada(G(torch.randn(6, 4)).view(6, 1, 8, 8), rng()).square().sum().backward()
    assert G.weight.grad.abs().sum() > 0


def test_options_build_the_fixed_or_the_adaptive_augmentation():
    options = declared(DiffAugment, AdaptiveAugment).defaults()
    assert build_augment(options) is None
    fixed = build_augment({**options, "diffaug": "color"})
    # the fixed DiffAugment keeps no state and draws no mask: old runs and checkpoints are unchanged
    assert type(fixed) is DiffAugment and not dict(fixed.state_dict())
    ada = build_augment({**options, "ada_target": 0.6})
    assert type(ada) is AdaptiveAugment and ada.policy == AdaptiveAugment.default_policy
    assert (ada.target, ada.interval, ada.kimg, float(ada.p)) == (0.6, 4, 500.0, 0.0)
    ada = build_augment({**options, "ada_target": 0.7, "diffaug": "cutout", "ada_interval": 2, "ada_kimg": 10.0})
    assert (ada.policy, ada.target, ada.interval, ada.kimg) == ("cutout", 0.7, 2, 10.0)
    assert {"ada_target", "ada_interval", "ada_kimg", "diffaug"} <= set(GAN.declared_options().names())


def tiny_data(n: int = 64) -> DataLoader:
    images = torch.rand(n, 1, 28, 28, generator=rng(1)) * 2 - 1
    return DataLoader(TensorDataset(images), batch_size=16)


def test_p_and_rt_are_logged_and_p_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8, ada_target=0.6, ada_interval=1, ada_kimg=0.064)  # steps of 16/64 = 0.25
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = cpu_trainer(tmp_path, logger=logger, log_every_n_steps=1, max_steps=gan.optimizer_steps(4))
    trainer.fit(gan, tiny_data())
    events = read_events(logger.log_dir)
    p = [e.value for e in events.Scalars("train/ada_p")]
    rt = [e.value for e in events.Scalars("train/ada_rt")]
    assert len(p) == len(rt) == 4 and all(-1 <= r <= 1 for r in rt) and any(p)  # p moved
    # each logged p is the previous one moved by +-0.25 toward the target, floored at 0: r_t decided the direction
    for before, after, r in zip([0.0, *p], p, rt, strict=False):
        assert after == max(0.0, before + (0.25 if r > 0.6 else -0.25 if r < 0.6 else 0.0))
    # logged is the p each iteration used; after the last one p moved once more, by the last r_t
    ada = gan.objective.augment
    last = float(ada.rt)
    assert float(ada.p) == max(0.0, p[-1] + (0.25 if last > 0.6 else -0.25 if last < 0.6 else 0.0))
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    loaded = GAN.load_from_checkpoint(tmp_path / "gan.ckpt")
    assert isinstance(loaded.objective.augment, AdaptiveAugment) and loaded.objective.augment.target == 0.6
    for name, value in gan.objective.augment.state_dict().items():
        assert torch.equal(loaded.objective.augment.state_dict()[name], value), name


def test_an_injected_adaptive_augmentation_is_recorded_and_rebuilt(tmp_path):
    ada = AdaptiveAugment("color", target=0.3, interval=1, kimg=0.01)
    torch.manual_seed(0)
    gan = GAN("mlp", latent_dim=8, objective=NonSaturating(augment=ada))
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(3))
    trainer.fit(gan, tiny_data())
    assert float(ada.rt) != 0 and float(ada.p) != 0  # trained: there is state to restore
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    loaded = GAN.load_from_checkpoint(tmp_path / "gan.ckpt").objective.augment
    assert type(loaded) is AdaptiveAugment
    assert (loaded.policy, loaded.target, loaded.interval, loaded.kimg) == ("color", 0.3, 1, 0.01)
    assert torch.equal(loaded.p, ada.p)


def test_resume_with_ada_and_lecam_matches_the_uninterrupted_run(tmp_path, fake_mnist_dir):
    # interval 3 with 2 D updates per iteration: the half-way checkpoint falls mid-interval, so the interval's
    # partial sums must come back too; kimg 0.2 = steps of 3 x 32 / 200 reals, so p visibly moves in 10 iterations.
    # LeCam's anchors (tests/test_lecam.py) are the other state that must come back.
    extra = ("--model", "mlp", "--ada-target", "0.6", "--ada-interval", "3", "--ada-kimg", "0.2", "--lecam", "0.3")
    train(tmp_path / "straight", fake_mnist_dir, "--max-steps", "10", *extra)
    train(tmp_path / "resumed", fake_mnist_dir, "--max-steps", "5", *extra)
    _, half = generator_weights(tmp_path / "resumed")
    assert float(half["state_dict"]["objective.augment.p"]) > 0
    assert float(half["state_dict"]["objective.regularizers.lecam.alpha_real"]) != 0
    assert float(half["state_dict"]["objective.augment.count"]) == 32  # 10 D updates = 3 intervals + 1
    train(tmp_path / "resumed", fake_mnist_dir, "--max-steps", "10", "--ckpt-path", "last", *extra)
    (_, straight), (_, resumed) = generator_weights(tmp_path / "straight"), generator_weights(tmp_path / "resumed")
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert not torch.equal(half["state_dict"]["objective.augment.p"], straight["state_dict"]["objective.augment.p"])


def _observe_on_rank(rank: int, world: int, init: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ada = AdaptiveAugment("cutout", target=0.5, interval=1, kimg=0.016)  # 8 reals over both ranks: step 0.5
        # rank 0 alone would push p up (r_t = 1), rank 1 alone down (r_t = -0.5); together r_t = 0.25 < 0.5
        ada.observe(signs(1, 1, 1, 1) if rank == 0 else signs(-1, -1, 1, -1))
        ada.end_update(0)
        assert float(ada.rt) == 0.25 and float(ada.p) == 0.0
        ada.p.fill_(0.75)
        ada.observe(signs(1, 1, 1, 1) if rank == 0 else signs(-1, 1, 1, 1))  # r_t = 0.75 on both ranks
        ada.end_update(1)
        assert float(ada.rt) == 0.75 and float(ada.p) == 1.25  # not capped at 1, as the reference
    finally:
        dist.destroy_process_group()


def test_ranks_all_reduce_the_signs_and_agree_on_p(tmp_path):
    mp.spawn(_observe_on_rank, args=(2, f"file://{tmp_path / 'rendezvous'}"), nprocs=2)


class Offset(torch.nn.Module):
    """A D whose every logit is far below 0, yet always higher for brighter images: only differences tell."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)) - 10.0  # (B,)


class Dark(torch.nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(z), 1, 8, 8) + 0 * z.sum()  # (B, 1, 8, 8)


@pytest.mark.parametrize("loss,p_moves", [("bce", "down"), ("hinge", "down"), ("lsgan", "down"), ("rpgan", "up"),
                                         ("wgan-gp", "up")])  # fmt: skip
def test_ada_reads_the_verdict_at_each_losss_own_boundary(loss, p_moves):
    """bce's and hinge's boundary is logit 0, lsgan's 0.5 (these reals all look fake: p falls to 0); rpgan and
    wgan-gp only compare reals with fakes, and every real beats its fake, so D is sure of the reals and p rises,
    however negative the logits are."""
    from gan_lightning.models.heads import Critic
    from gan_lightning.training.latents import LatentSpace
    from gan_lightning.training.objectives import Batch, get_objective

    ada = AdaptiveAugment("translation", target=0.6, interval=1, kimg=0.001)
    objective = get_objective(loss, augment=ada)
    real = Batch(torch.ones(4, 1, 8, 8))
    latents = LatentSpace(dim=3).draw(4, rng(), torch.device("cpu"))
    ada.p.fill_(0.5)
    objective.d_loss(Dark(), Critic.build(Offset()), real, latents, rng(), step=0)
    objective.end_d_update(0)
    assert float(ada.rt) == (1.0 if p_moves == "up" else -1.0)
    assert float(ada.p) == (4.5 if p_moves == "up" else 0.0)  # one step of 4 / (0.001 * 1000), floored at 0


def test_micro_batches_of_one_update_move_p_once():
    """--accumulate: the update's micro-batches are all observed, then p moves once, by the whole update's r_t."""
    ada = AdaptiveAugment("cutout", target=0.5, interval=1, kimg=0.016)  # 8 reals: a step of 0.5
    ada.observe(signs(1, 1, 1, 1))
    ada.observe(signs(1, 1, 1, -1))
    assert float(ada.p) == 0.0  # nothing moves mid-update
    ada.end_update(0)
    assert float(ada.rt) == 0.75 and float(ada.p) == 0.5
