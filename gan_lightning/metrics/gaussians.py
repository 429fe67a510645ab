"""Gaussian feature statistics: the Fréchet distance between two Gaussians, and per-class running sums (mean and
covariance of each class, accumulated in float64 as torchmetrics' FID does) for intra-class FID."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """FID between N(mu1, sigma1) and N(mu2, sigma2), torchmetrics' formula (its `FrechetInceptionDistance`)."""
    trace_sqrt = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


class ClassGaussians:
    """Per-class feature sums of `num_classes` classes, in float64 as torchmetrics' FID keeps them: each class's
    mean and covariance, for intra-class FID."""

    def __init__(self, num_classes: int, num_features: int, device: torch.device | str = "cpu") -> None:
        self.sum = torch.zeros(num_classes, num_features, dtype=torch.float64, device=device)
        self.cov_sum = torch.zeros(num_classes, num_features, num_features, dtype=torch.float64, device=device)
        self.num = torch.zeros(num_classes, dtype=torch.long, device=device)

    @property
    def num_classes(self) -> int:
        """How many classes the sums keep."""
        return len(self.num)

    def add(self, features: Tensor, labels: Tensor) -> None:
        """Add features (B, D) of images of classes `labels` (B,)."""
        features, labels = features.to(self.sum), labels.to(self.sum.device)
        self.sum.index_add_(0, labels, features)
        self.num += torch.bincount(labels, minlength=self.num_classes)
        for c in labels.unique().tolist():
            f = features[labels == c]  # (n_c, D)
            self.cov_sum[c] += f.T @ f

    def gaussian(self, c: int) -> tuple[Tensor, Tensor]:
        """Class c's mean (D,) and unbiased covariance (D, D)."""
        n = int(self.num[c])
        mean = self.sum[c] / n
        return mean, (self.cov_sum[c] - n * torch.outer(mean, mean)) / (n - 1)

    def state(self) -> dict[str, Tensor]:
        """The sums, cacheable."""
        return {"class_sum": self.sum, "class_cov_sum": self.cov_sum, "class_num": self.num}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: torch.device | str) -> ClassGaussians:
        """Sums saved by `state()`."""
        out = cls.__new__(cls)
        out.sum, out.cov_sum, out.num = (state[k].to(device) for k in ("class_sum", "class_cov_sum", "class_num"))
        return out

    def to(self, device: torch.device | str) -> ClassGaussians:
        """These sums on `device`."""
        return ClassGaussians.from_state(self.state(), device)
