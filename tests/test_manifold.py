"""Precision/recall and density/coverage: hand-worked values, chunking, known-answer distributions, states and DDP."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gan_lightning.metrics.manifold import DensityCoverage, PrecisionRecall, knn_radii, prdc

Tensor = torch.Tensor

# 1-D points used by the hand-worked tests below
REAL_1D = torch.tensor([[0.0], [1.0], [4.0], [-6.0]])
FAKE_1D = torch.tensor([[0.5], [2.0], [10.0], [11.0]])


def brute_force(real: Tensor, fake: Tensor, k: int) -> dict[str, float]:
    """All four metrics from full float64 distance matrices: StyleGAN2-ADA's ≤ for precision/recall, Naeem et al.'s
    prdc.py (strict <) for density/coverage."""
    real, fake = real.double(), fake.double()
    # k+1-th smallest of a row that contains the point itself at distance 0 = k-th nearest other point
    r_real = torch.cdist(real, real).sort(dim=1).values[:, k]  # (N,)
    r_fake = torch.cdist(fake, fake).sort(dim=1).values[:, k]  # (M,)
    d = torch.cdist(real, fake)  # (N, M)
    return {
        "precision": (d <= r_real[:, None]).any(dim=0).double().mean().item(),
        "recall": (d <= r_fake[None, :]).any(dim=1).double().mean().item(),
        "density": (d < r_real[:, None]).sum(dim=0).double().mean().item() / k,
        "coverage": (d.min(dim=1).values < r_real).double().mean().item(),
    }


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run on one intra-op thread: on a busy shared CPU, thread hand-offs make each tiny cdist call ~30 ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussians(n: int, dim: int = 16, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two independent (n, dim) draws from the standard normal."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)


# ---------------------------------------------------------------------------------------------- hand-worked
def test_hand_worked_k1():
    # r_real (k=1): 0->1, 1->1, 4->3, -6->6;  r_fake: 0.5->1.5, 2->1.5, 10->1, 11->1
    # precision: 0.5 (in ball of 0) and 2 (in balls of 1 and 4) yes; 10, 11 in no real ball     -> 2/4
    # recall: 0 and 1 lie within 1.5 of fake 0.5; 4 (2 from fake 2 > 1.5) and -6 do not         -> 2/4
    # density: fake 0.5 in balls of 0, 1; fake 2 in the ball of 4 (of 1: a tie, d = 1 = r, is outside) -> 3/(1*4)
    # coverage: nearest fakes of 0, 1, 4 at 0.5, 0.5, 2 are within 1, 1, 3; -6 has 6.5 > 6       -> 3/4
    expected = {"precision": 0.5, "recall": 0.5, "density": 0.75, "coverage": 0.75}
    assert prdc(REAL_1D, FAKE_1D, k_pr=1, k_dc=1) == expected


def test_hand_worked_k2():
    # r_real (k=2): 0->4, 1->3, 4->4, -6->7;  r_fake: 0.5->9.5, 2->8, 10->8, 11->9
    # precision: 0.5, 2 inside ball of 0; 10 (6 from 4 > 4) and 11 in none                        -> 2/4
    # recall: every real is within 9.5 of fake 0.5 (-6 at 6.5)                                      -> 1
    # density: fake 0.5 in all four balls (-6: 6.5 < 7); fake 2 in balls of 0, 1, 4 (-6: 8 > 7)  -> 7/(2*4)
    # coverage: nearest fakes at 0.5, 0.5, 2, 6.5 are within 4, 3, 4, 7                           -> 1
    expected = {"precision": 0.5, "recall": 1.0, "density": 0.875, "coverage": 1.0}
    assert prdc(REAL_1D, FAKE_1D, k_pr=2, k_dc=2) == expected


def test_metric_classes_match_hand_worked_values():
    pr, dc = PrecisionRecall(k=1), DensityCoverage(k=1)
    for metric in (pr, dc):
        metric.update(REAL_1D[:3], real=True)  # batches of any size accumulate
        metric.update(REAL_1D[3:], real=True)
        metric.update(FAKE_1D, real=False)
    assert pr.compute() == {"precision": 0.5, "recall": 0.5}
    assert dc.compute() == {"density": 0.75, "coverage": 0.75}


def test_knn_radii_exclude_self_but_count_duplicates():
    x = torch.tensor([[0.0], [0.0], [3.0], [7.0]])
    radii = knn_radii(x, (1, 2))
    assert radii[1].tolist() == [0.0, 0.0, 3.0, 4.0]
    assert radii[2].tolist() == [3.0, 3.0, 3.0, 7.0]


# ---------------------------------------------------------------------------------------------- chunking
@pytest.mark.parametrize("k", [1, 3, 5])
def test_chunked_equals_brute_force(k):
    g = torch.Generator().manual_seed(k)
    real, fake = torch.randn(83, 6, generator=g), torch.randn(61, 6, generator=g) * 1.3 + 0.4
    expected = brute_force(real, fake, k)
    for chunk_size in (7, 1024):  # 7 splits both sets into uneven chunks, 1024 is a single chunk
        got = prdc(real, fake, k_pr=k, k_dc=k, chunk_size=chunk_size)
        assert got.keys() == expected.keys()
        for name in got:
            assert got[name] == pytest.approx(expected[name], abs=1e-9), (name, chunk_size)


def test_too_few_samples_raise():
    real, fake = gaussians(4, dim=2)
    with pytest.raises(ValueError, match="more than k=5 real"):
        prdc(real, torch.randn(10, 2), k_pr=3, k_dc=5)
    with pytest.raises(ValueError, match="more than k=3 fake"):
        prdc(torch.randn(10, 2), fake[:3], k_pr=3, k_dc=None)
    metric = PrecisionRecall(k=3)
    metric.update(real, real=True)
    metric.update(fake[:3], real=False)
    with pytest.raises(ValueError, match="more than k=3 fake"):
        metric.compute()
    with pytest.raises(ValueError, match="real and fake"), pytest.warns(UserWarning, match="before the ``update``"):
        PrecisionRecall().compute()


# ---------------------------------------------------------------------------------------------- known answers
@pytest.fixture(scope="module")
def same_gaussian() -> dict[str, float]:
    """prdc of two independent 2000-sample draws from N(0, I_16)."""
    return prdc(*gaussians(2000))


def test_real_vs_real_is_near_ideal(same_gaussian):
    # k=3 precision/recall of identical distributions sit well below 1 in 16 dims (~0.78-0.80 over seeds, the
    # k-NN balls underestimate the support) while coverage is ~0.97 and density ~1 by construction.
    m = same_gaussian
    assert 0.7 < m["precision"] < 0.9 and 0.7 < m["recall"] < 0.9, m
    assert m["coverage"] > 0.93, m
    assert 0.85 < m["density"] < 1.15, m


def test_copies_of_the_reference_score_density_one_as_naeem_et_al():
    # a fake that copies real x sits exactly on the boundary of every ball whose k-th neighbour is x: Naeem et al.'s
    # strict test leaves it out there, so copies of the whole reference score density 1 exactly (<= would give 1 + 1/k)
    real = gaussians(300)[0]
    m = prdc(real, real.clone(), k_pr=3, k_dc=5)
    assert m == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}
    # in any order and at more rows and features, where the matmul's rounding depends on which side the rows are
    g = torch.Generator().manual_seed(1)
    real = torch.randn(3000, 64, generator=g)
    shuffled = real[torch.randperm(3000, generator=g)].clone()
    assert prdc(real, shuffled, k_pr=3, k_dc=5) == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


def test_shifted_fakes_lose_precision(same_gaussian):
    real, fake = gaussians(2000)
    shifted = prdc(real, fake + 2.0, k_pr=3, k_dc=None)  # 2 std in each of 16 dims: 8 std away in total
    assert same_gaussian["precision"] > 0.7
    assert shifted["precision"] < 0.2 and shifted["recall"] < 0.2, shifted


def test_collapsed_fakes_lose_recall_and_coverage():
    # ten well-separated clusters of reals; the fakes all come from the first cluster
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(10, 16, generator=g) * 5
    real = centers[torch.randint(0, 10, (2000,), generator=g)] + torch.randn(2000, 16, generator=g)
    fake = centers[0] + torch.randn(2000, 16, generator=g)
    m = prdc(real, fake)
    assert m["recall"] < 0.15 and m["coverage"] < 0.15, m
    assert m["precision"] > 0.7, m  # the fakes are realistic, just not diverse
    # fakes at a single point: nothing but that point is covered
    point = prdc(real, real[:1] + 0.01 * torch.randn(500, 16, generator=g))
    assert point["recall"] < 0.05 and point["coverage"] < 0.05, point


# ---------------------------------------------------------------------------------------------- states
@pytest.mark.parametrize("cls", [PrecisionRecall, DensityCoverage])
def test_reset_keeps_real_features_only_when_asked(cls):
    real, fake = gaussians(50, dim=4)
    keep, clear = cls(reset_real_features=False), cls()
    for metric in (keep, clear):
        metric.update(real, real=True)
        metric.update(fake, real=False)
        first = metric.compute()
        metric.reset()
        assert metric.fake_features == []
    assert clear.real_features == []
    torch.testing.assert_close(torch.cat(keep.real_features), real)
    keep.update(fake, real=False)  # a new evaluation only feeds fakes
    assert keep.compute() == first


def test_max_samples_drops_the_excess():
    metric = DensityCoverage(k=2, max_samples=10)
    x = torch.arange(24, dtype=torch.float32).reshape(12, 2)
    metric.update(x[:6], real=True)
    with pytest.warns(UserWarning, match="max_samples=10 real"):
        metric.update(x[6:], real=True)
    metric.update(x[:4], real=True)  # already full: dropped, no second warning
    metric.update(x, real=False)
    assert torch.equal(torch.cat(metric.real_features), x[:10])
    assert torch.equal(torch.cat(metric.fake_features), x[:10])
    assert metric.compute() == prdc(x[:10], x[:10], k_pr=None, k_dc=2)


def test_update_rejects_bad_shapes():
    metric = PrecisionRecall()
    with pytest.raises(ValueError, match=r"\(B, F\)"):
        metric.update(torch.zeros(4), real=True)
    metric.update(torch.zeros(4, 3), real=True)
    with pytest.raises(ValueError, match="feature dim 5"):
        metric.update(torch.zeros(4, 5), real=False)


# ---------------------------------------------------------------------------------------------- DDP
def _ddp_worker(rank: int, tmp: str, real: Tensor, fake: Tensor) -> None:
    """One gloo rank: feed an uneven share of the data, compute, reset, feed fakes again, compute."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=2)
    try:
        # rank 0 takes the first 37 reals and 20 fakes, rank 1 the rest: gathering must handle uneven sizes, and
        # cat in rank order restores the single-process row order
        real_part = real[:37] if rank == 0 else real[37:]
        fake_part = fake[:20] if rank == 0 else fake[20:]
        pr, dc = PrecisionRecall(k=3, reset_real_features=False), DensityCoverage(k=5, reset_real_features=False)
        for metric in (pr, dc):
            metric.update(real_part, real=True)  # once: the reals must survive the reset below
        results = []
        for _ in range(2):
            for metric in (pr, dc):
                metric.update(fake_part[:7], real=False)
                metric.update(fake_part[7:], real=False)
            results.append({**pr.compute(), **dc.compute()})
            for metric in (pr, dc):
                metric.reset()
        torch.save(results, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_gathers_features_across_two_gloo_ranks(tmp_path):
    real, fake = gaussians(60, dim=5, seed=3)
    fake = fake[:45] * 1.2
    expected = prdc(real, fake, k_pr=3, k_dc=5)
    # fork, not spawn: a spawned child would re-import gan_lightning (and with it Lightning), ~5 s per rank
    mp.start_processes(_ddp_worker, args=(str(tmp_path), real, fake), nprocs=2, join=True, start_method="fork")
    for rank in (0, 1):
        # second round: reals kept through reset on each rank, gathered again with the new fakes
        assert torch.load(tmp_path / f"rank{rank}.pt") == [expected, expected], rank
    # half of the data alone gives other numbers, so the test would notice a missing gather
    assert prdc(real[:37], fake[:20], k_pr=3, k_dc=5) != expected
