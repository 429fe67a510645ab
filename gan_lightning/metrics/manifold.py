"""Manifold metrics over feature vectors: precision/recall (Kynkäänniemi et al. 2019) and density/coverage
(Naeem et al. 2020).

Each real sample i gets a ball of radius r_real_i = distance to its k-th nearest other real sample (r_fake_j likewise
among fakes). With N reals, M fakes and Euclidean distances d:

    precision = (1/M)  Σ_j 1[∃i: d(fake_j, real_i) ≤ r_real_i]      fakes inside the real manifold
    recall    = (1/N)  Σ_i 1[∃j: d(real_i, fake_j) ≤ r_fake_j]      reals inside the fake manifold
    density   = (1/kM) Σ_j Σ_i 1[d(fake_j, real_i) < r_real_i]      how many real balls hold each fake, over k
    coverage  = (1/N)  Σ_i 1[min_j d(real_i, fake_j) < r_real_i]    real balls that hold at least one fake

The ball tests follow each metric's reference: ≤ for precision/recall (StyleGAN2-ADA's `precision_recall.py`), < for
density/coverage (Naeem et al.'s `prdc`). The strict test matters for copies: a fake that copies a real sample lies
exactly on the boundary of every ball whose k-th neighbour is that sample, and ≤ would count it there too, raising a
memorising generator's density to 1 + 1/k instead of 1.

Distances are computed in float32 on row chunks of `torch.cdist`, so peak memory is O(chunk_size × max(N, M)) and
no N×M or N×N matrix ever exists. Features come from the caller (e.g. a classifier's penultimate layer); the
`Metric` classes only store them, `update(features, real=...)`, and gather them across DDP ranks.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

Tensor = torch.Tensor

DEFAULT_CHUNK_SIZE = 1024
DEFAULT_MAX_SAMPLES = 50_000
# The matmul form of cdist (as in sklearn's pairwise_distances, which the reference prdc uses) is what makes large
# feature dims affordable; forcing it, instead of torch's "if necessary" that switches on row counts, keeps one
# formula for every chunk size, so radii and ball tests are computed alike.
_CDIST_MODE = "use_mm_for_euclid_dist"


def _cdist(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances (A, F) x (B, F) -> (A, B)."""
    return torch.cdist(a, b, compute_mode=_CDIST_MODE)


def knn_radii(x: Tensor, ks: tuple[int, ...], chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[int, Tensor]:
    """Distance from each row of x (N, F) to its k-th nearest other row, for every k in ks: {k: (N,)}."""
    n = x.shape[0]
    kmax = max(ks)
    if n <= kmax:
        raise ValueError(f"need more than k={kmax} samples for k-nearest-neighbour radii, got {n}")
    radii = {k: x.new_empty(n) for k in ks}
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        d = _cdist(x[start:stop], x)  # (c, N)
        rows = torch.arange(stop - start, device=x.device)
        # a point is not its own neighbour; exact duplicates elsewhere still count at distance 0
        d[rows, rows + start] = float("inf")
        nearest = torch.topk(d, kmax, dim=1, largest=False, sorted=True).values  # (c, kmax), ascending
        for k in ks:
            radii[k][start:stop] = nearest[:, k - 1]
    return radii


def prdc(
    real: Tensor,
    fake: Tensor,
    k_pr: int | None = 3,
    k_dc: int | None = 5,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, float]:
    """Precision/recall (k_pr) and density/coverage (k_dc) of fake (M, F) against real (N, F); None skips a pair."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected real (N, F) and fake (M, F), got {tuple(real.shape)} and {tuple(fake.shape)}")
    if k_pr is None and k_dc is None:
        raise ValueError("nothing to compute: both k_pr and k_dc are None")
    for name, k in (("k_pr", k_pr), ("k_dc", k_dc)):
        if k is not None and k < 1:
            raise ValueError(f"{name} must be a positive integer, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    real = real.detach().float()
    fake = fake.detach().to(device=real.device, dtype=torch.float32)
    ks = tuple(k for k in (k_pr, k_dc) if k is not None)
    n, m = real.shape[0], fake.shape[0]
    for name, count in (("real", n), ("fake", m)):
        if count <= max(ks):
            raise ValueError(f"need more than k={max(ks)} {name} samples, got {count}")

    r_real = knn_radii(real, ks, chunk_size)
    r_fake = knn_radii(fake, (k_pr,), chunk_size)[k_pr] if k_pr is not None else None

    # pass 1 over fake rows: whether a real ball holds each fake (precision)
    in_pr_balls = torch.zeros(m, dtype=torch.bool, device=real.device)
    if k_pr is not None:
        for start in range(0, m, chunk_size):
            d = _cdist(fake[start : start + chunk_size], real)  # (c, N)
            in_pr_balls[start : start + chunk_size] = (d <= r_real[k_pr]).any(dim=1)

    # pass 2 over real rows: recall asks whether a fake ball holds the real, coverage whether its own ball holds a
    # fake, density how many fakes its ball holds. Density's strict test sits here, with the reals as rows as their
    # radii were computed: the same rounding, so a copy of a ball's k-th neighbour stays on its boundary (fake rows
    # round the matmul differently, and at 2048 features put 0.5% of copies back inside)
    recalled = torch.zeros(n, dtype=torch.bool, device=real.device)
    covered = torch.zeros(n, dtype=torch.bool, device=real.device)
    in_dc_balls = torch.zeros((), dtype=torch.long, device=real.device)  # (real ball, fake inside) pairs
    for start in range(0, n, chunk_size):
        d = _cdist(real[start : start + chunk_size], fake)  # (c, M)
        if r_fake is not None:
            recalled[start : start + chunk_size] = (d <= r_fake).any(dim=1)
        if k_dc is not None:
            inside = d < r_real[k_dc][start : start + chunk_size, None]  # (c, M)
            covered[start : start + chunk_size] = inside.any(dim=1)
            in_dc_balls += inside.sum()

    # integer counts divided in Python: exact ratios, no float32 mean rounding
    out: dict[str, float] = {}
    if k_pr is not None:
        out["precision"] = in_pr_balls.sum().item() / m
        out["recall"] = recalled.sum().item() / n
    if k_dc is not None:
        out["density"] = in_dc_balls.sum().item() / (k_dc * m)
        out["coverage"] = covered.sum().item() / n
    return out


class PRDC(Metric):
    """Precision/recall (k_pr) and density/coverage (k_dc) of fake against real features: one feature store and
    one pass of k-NN radii serve all four; `None` leaves a pair out. compute() -> dict.

    At most `max_samples` real and `max_samples` fake vectors are kept per process; rows beyond that in `update` are
    dropped (with one warning), so under DDP the gathered sets hold up to world_size × max_samples each. With
    `reset_real_features=False`, `reset()` keeps the real features, like torchmetrics' FID: extract reals once per
    run and only feed fakes at every evaluation.

    Under DDP, compute() gathers both sets from all ranks (torchmetrics pads and trims uneven per-rank sizes), so
    every rank gets the value over all samples; each rank must hold at least one real and one fake row by then.
    Features are stored as float32 on the metric's device.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    real_features: list[Tensor]
    fake_features: list[Tensor]

    def __init__(
        self,
        k_pr: int | None = 3,
        k_dc: int | None = 5,
        reset_real_features: bool = True,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        ks = [k for k in (k_pr, k_dc) if k is not None]
        if not ks:
            raise ValueError("nothing to compute: both k_pr and k_dc are None")
        for k in ks:
            if not isinstance(k, int) or k < 1:
                raise ValueError(f"k must be a positive integer, got {k!r}")
        if not isinstance(reset_real_features, bool):
            raise ValueError("reset_real_features must be a bool")
        self.k = max(ks)  # both sets need more than this many samples
        if max_samples <= self.k:
            raise ValueError(f"max_samples must exceed k={self.k}, got {max_samples}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.k_pr, self.k_dc = k_pr, k_dc
        self.reset_real_features = reset_real_features
        self.max_samples = max_samples
        self.chunk_size = chunk_size
        self._warned_cap = False
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    def stored(self, real: bool) -> int:
        """Rows stored so far in the real or fake set."""
        state = self.real_features if real else self.fake_features
        # a list between syncs; one gathered tensor while compute() holds the DDP-synced states
        return state.shape[0] if isinstance(state, Tensor) else sum(t.shape[0] for t in state)

    def update(self, features: Tensor, real: bool) -> None:
        """Add a batch of feature vectors (B, F) to the real or the fake set."""
        if features.ndim != 2:
            raise ValueError(f"expected features of shape (B, F), got {tuple(features.shape)}")
        stored = self.real_features or self.fake_features
        if stored and stored[0].shape[1] != features.shape[1]:
            raise ValueError(f"feature dim {features.shape[1]} differs from the stored {stored[0].shape[1]}")
        room = self.max_samples - self.stored(real)
        if features.shape[0] > room:
            if not self._warned_cap:
                warnings.warn(
                    f"{type(self).__name__}: more than max_samples={self.max_samples} "
                    f"{'real' if real else 'fake'} features; the extra rows are dropped",
                    stacklevel=2,
                )
                self._warned_cap = True
            features = features[: max(room, 0)]
        if features.shape[0] == 0:
            return
        # float32 like prdc(); storing the caller's half/double would only change memory, not the result
        features = features.detach().float()
        (self.real_features if real else self.fake_features).append(features)

    def _features(self) -> tuple[Tensor, Tensor]:
        """The (N, F) real and (M, F) fake features, gathered over ranks once compute() has synced."""
        if self.stored(True) == 0 or self.stored(False) == 0:
            raise ValueError(
                f"{type(self).__name__} needs both real and fake features; got "
                f"{self.stored(True)} real and {self.stored(False)} fake rows"
            )
        # after a DDP sync the states are already single tensors; dim_zero_cat accepts both forms
        return dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)

    def reset(self) -> None:
        """Clear the states; keep the real features when reset_real_features is False."""
        self._warned_cap = False
        if self.reset_real_features:
            super().reset()
            return
        real_features = list(self.real_features) if isinstance(self.real_features, list) else [self.real_features]
        super().reset()
        self.real_features = real_features

    def forward(self, features: Tensor, real: bool) -> None:  # type: ignore[override]
        """Same as update(): a k-NN manifold value of a single batch means nothing, so none is computed."""
        self.update(features, real)

    def compute(self) -> dict[str, float]:
        """The configured pairs of {"precision", "recall", "density", "coverage"} over all features seen."""
        real, fake = self._features()
        return prdc(real, fake, k_pr=self.k_pr, k_dc=self.k_dc, chunk_size=self.chunk_size)


class PrecisionRecall(PRDC):
    """Improved precision and recall (Kynkäänniemi et al. 2019) of fake against real features; compute() -> dict."""

    def __init__(self, k: int = 3, **kwargs: Any) -> None:
        super().__init__(k_pr=k, k_dc=None, **kwargs)


class DensityCoverage(PRDC):
    """Density and coverage (Naeem et al. 2020) of fake against real features; compute() -> dict."""

    def __init__(self, k: int = 5, **kwargs: Any) -> None:
        super().__init__(k_pr=None, k_dc=k, **kwargs)
