"""LeCam regularization: the term and the anchors against hand-computed values, the start iteration, gradients in
the D phase only, options, DDP agreement and checkpointed anchors (exact resume with ADA: tests/test_ada.py)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import GAN
from gan_lightning.models.heads import CriticOutput
from gan_lightning.regularizers import REGULARIZERS, PhaseContext, build_regularizers
from gan_lightning.regularizers.lecam import LeCam
from gan_lightning.training.objectives import Batch

from conftest import cpu_trainer


def outputs(real: list[float], fake: list[float], grad: bool = False, step: int = 0, phase: str = "d") -> PhaseContext:
    r, f = torch.tensor(real, requires_grad=grad), torch.tensor(fake, requires_grad=grad)
    return PhaseContext(phase, step, real_out=CriticOutput(r, None), fake_out=CriticOutput(f, None))


def update(lecam: LeCam, out: PhaseContext, step: int):
    """One whole D update: the term, then the anchors' one move."""
    out.step = step
    term = lecam.d_term(out)
    lecam.end_update(step)
    return term


def test_term_and_anchors_match_hand_computed_values():
    lecam = LeCam(0.5, decay=0.75)
    # D update 0: the anchors take the batch means (real 2, fake -1), then
    # E[(real - -1)^2] = (4 + 16) / 2 = 10 and E[(fake - 2)^2] = (16 + 4) / 2 = 10
    term = update(lecam, outputs([1.0, 3.0], [-2.0, 0.0]), 0)
    assert (float(lecam.alpha_real), float(lecam.alpha_fake)) == (2.0, -1.0)
    assert float(term.stats["lecam"]) == 20.0 and float(term.loss) == 10.0
    # D update 1 (means 1, 1): alpha_real = 0.75 * 2 + 0.25 * 1 = 1.75, alpha_fake = 0.75 * -1 + 0.25 * 1 = -0.5;
    # E[(real + 0.5)^2] = (0.25 + 6.25) / 2 = 3.25, E[(fake - 1.75)^2] = (3.0625 + 0.0625) / 2 = 1.5625
    term = update(lecam, outputs([0.0, 2.0], [0.0, 2.0]), 1)
    assert (float(lecam.alpha_real), float(lecam.alpha_fake)) == (1.75, -0.5)
    assert float(term.stats["lecam"]) == 4.8125 and float(term.loss) == 0.5 * 4.8125
    assert (float(term.stats["lecam_alpha_real"]), float(term.stats["lecam_alpha_fake"])) == (1.75, -0.5)


def test_one_sided_form_only_penalises_a_d_more_confident_than_the_anchors():
    lecam = LeCam(1.0, decay=0.75, one_sided=True)
    update(lecam, outputs([1.0, 3.0], [-2.0, 0.0]), 0)
    # anchors 1.75 / -0.5 as above; relu(real + 0.5) = 0.5, 2.5; relu(1.75 - fake) = 1.75, 0 (fake 2 is above)
    term = update(lecam, outputs([0.0, 2.0], [0.0, 2.0]), 1)
    assert float(term.loss) == (0.25 + 6.25) / 2 + (3.0625 + 0.0) / 2


def test_before_start_the_anchors_track_the_latest_means_and_no_term_is_added():
    lecam = LeCam(1.0, decay=0.5, start=2)
    for step, (real, fake) in enumerate([([1.0], [-1.0]), ([4.0], [-4.0])]):
        term = update(lecam, outputs(real, fake), step)
        assert term.loss is None and (float(lecam.alpha_real), float(lecam.alpha_fake)) == (real[0], fake[0])
    term = update(lecam, outputs([2.0], [0.0]), 2)  # from `start` on: the moving average, and the term
    assert (float(lecam.alpha_real), float(lecam.alpha_fake)) == (3.0, -2.0)
    assert float(term.loss) == (2.0 + 2.0) ** 2 + (0.0 - 3.0) ** 2


def test_gradient_reaches_both_logits_in_the_d_phase_and_the_g_phase_has_no_term():
    lecam = LeCam(0.5, decay=0.75)
    update(lecam, outputs([1.0, 3.0], [-2.0, 0.0]), 0)
    out = outputs([0.0, 2.0], [0.0, 2.0], grad=True)
    update(lecam, out, 1).loss.backward()
    # d/dreal 0.5 * mean((real - alpha_fake)^2) = 0.5 * 2 * (real + 0.5) / 2; fake likewise around alpha_real 1.75
    assert torch.equal(out.real_logits.grad, torch.tensor([0.25, 1.25]))
    assert torch.equal(out.fake_logits.grad, torch.tensor([-0.875, 0.125]))
    term = lecam.g_term(outputs([0.0], [0.0], grad=True, step=1, phase="g"))
    assert term.loss is None and term.stats == {}


def test_micro_batches_move_the_anchors_once_by_the_whole_updates_means():
    """--accumulate: the anchors move once per D update whatever N is; each micro-batch's term uses its own means."""
    whole, split = LeCam(1.0, decay=0.5), LeCam(1.0, decay=0.5)
    update(whole, outputs([1.0, 3.0], [-2.0, 0.0]), 0)
    update(split, outputs([1.0, 3.0], [-2.0, 0.0]), 0)
    update(whole, outputs([0.0, 2.0, 4.0, 6.0], [1.0, 1.0, 3.0, 3.0]), 1)  # means 3, 2
    for half in (outputs([0.0, 2.0], [1.0, 1.0], step=1), outputs([4.0, 6.0], [3.0, 3.0], step=1)):
        split.d_term(half)
    split.end_update(1)
    # 0.5 * 2 + 0.5 * 3 = 2.5 and 0.5 * -1 + 0.5 * 2 = 0.5: one move, not two
    assert (float(whole.alpha_real), float(whole.alpha_fake)) == (float(split.alpha_real), float(split.alpha_fake))
    assert (float(split.alpha_real), float(split.alpha_fake)) == (2.5, 0.5)


def test_lecam_switched_on_late_starts_from_the_latest_means_not_zero():
    lecam = LeCam(1.0, decay=0.99)  # fresh, as when a resume at D update 500 switches it on
    term = update(lecam, outputs([5.0, 5.0], [-5.0, -5.0]), 500)
    assert (float(lecam.alpha_real), float(lecam.alpha_fake)) == (5.0, -5.0) and float(term.loss) == 200.0
    update(lecam, outputs([3.0], [-3.0]), 501)  # from then on the moving average
    assert float(lecam.alpha_real) == pytest.approx(0.99 * 5 + 0.01 * 3)


def twins(**options) -> tuple[GAN, GAN]:
    torch.manual_seed(0)
    plain = GAN("mlp", latent_dim=8, **options)
    torch.manual_seed(0)
    return plain, GAN("mlp", latent_dim=8, lecam=0.5, **options)


def test_the_objective_adds_the_weighted_term_in_the_d_phase_only():
    plain, lecam = twins()
    real = Batch(torch.rand(8, 1, 28, 28) * 2 - 1)
    latents = plain.latents.draw(8, torch.Generator().manual_seed(1), torch.device("cpu"))
    d = [gan.objective.d_loss(gan.generator, gan.discriminator, real, latents, torch.Generator().manual_seed(2))
         for gan in (plain, lecam)]  # fmt: skip
    assert float(d[1].stats["lecam"]) > 0
    torch.testing.assert_close(d[1].loss, d[0].loss + 0.5 * d[1].stats["lecam"])
    grads = [torch.autograd.grad(x.loss, list(gan.discriminator.parameters()))
             for x, gan in zip(d, (plain, lecam), strict=True)]  # fmt: skip
    assert any(not torch.equal(a, b) for a, b in zip(*grads, strict=True))  # the term reaches D's weights
    g = [gan.objective.g_loss(gan.generator, gan.discriminator, real, latents, torch.Generator().manual_seed(2))
         for gan in (plain, lecam)]  # fmt: skip
    assert torch.equal(g[0].loss, g[1].loss) and g[0].stats.keys() == g[1].stats.keys()


def test_options_switch_it_on_and_its_anchors_round_trip_through_a_checkpoint(tmp_path):
    assert "lecam" in REGULARIZERS and {"lecam", "lecam_decay", "lecam_start", "lecam_one_sided"} <= set(
        GAN.declared_options().names()
    )
    defaults = GAN.declared_options().defaults()
    assert build_regularizers(defaults) == []
    (built,) = build_regularizers({**defaults, "lecam": 0.3, "lecam_decay": 0.9, "lecam_start": 5})
    assert (type(built), built.weight, built.decay, built.start, built.one_sided) == (LeCam, 0.3, 0.9, 5, False)
    _, gan = twins(lecam_decay=0.5)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1), batch_size=8))
    (trained,) = gan.objective.regularizers.values()
    assert float(trained.alpha_real) != 0 and float(trained.alpha_fake) != 0
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    (loaded,) = GAN.load_from_checkpoint(tmp_path / "gan.ckpt").objective.regularizers.values()
    assert (type(loaded), loaded.weight, loaded.decay) == (LeCam, 0.5, 0.5)
    assert torch.equal(loaded.alpha_real, trained.alpha_real) and torch.equal(loaded.alpha_fake, trained.alpha_fake)


def _anchors_on_rank(rank: int, world: int, init: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        lecam = LeCam(1.0, decay=0.5)
        # rank means: real 1 and 3, fake -1 and -3: both ranks anchor on the means over all ranks
        update(lecam, outputs([1.0, 1.0], [-1.0, -1.0]) if rank == 0 else outputs([2.0, 4.0], [-3.0, -3.0]), 0)
        assert (float(lecam.alpha_real), float(lecam.alpha_fake)) == (2.0, -2.0)
    finally:
        dist.destroy_process_group()


def test_ranks_all_reduce_the_means_and_agree_on_the_anchors(tmp_path):
    mp.spawn(_anchors_on_rank, args=(2, f"file://{tmp_path / 'rendezvous'}"), nprocs=2)


def test_switching_another_regularizer_on_at_a_resume_keeps_lecams_anchors(tmp_path):
    """Regularizers are keyed by name: bCR, sorted before LeCam, switched on at a resume takes no key of LeCam's."""
    gan = GAN("mlp", latent_dim=8, lecam=0.1)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(32, 1, 28, 28) * 2 - 1), batch_size=16))
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    ckpt = torch.load(tmp_path / "gan.ckpt", map_location="cpu", weights_only=True)
    anchors = ckpt["state_dict"]["objective.regularizers.lecam.alpha_real"]
    assert anchors != 0
    resumed = GAN("mlp", latent_dim=8, lecam=0.1, bcr_real=1.0)
    assert list(resumed.objective.regularizers) == ["bcr", "lecam"]
    resumed.on_load_checkpoint(ckpt)  # what Lightning calls before loading the state, as a resume does
    resumed.load_state_dict(ckpt["state_dict"])
    assert torch.equal(resumed.objective.regularizers["lecam"].alpha_real, anchors)
