"""Mode statistics of generated samples' class probabilities: covered modes, class balance, an Inception-Score
analogue (MNIST), and the 1000 modes of Stacked MNIST."""

from __future__ import annotations

import torch

Tensor = torch.Tensor

# A sample counts towards a mode only when the classifier is this sure of its class: blurry in-between digits
# must not make a collapsed generator look diverse.
CONFIDENCE = 0.9
# ...and a class is a covered mode when it receives at least this fraction of all samples confidently.
MIN_MODE_FRACTION = 0.02
CLASS_STATISTICS = ("modes", "class_kl", "inception_score")
STACKED_STATISTICS = ("modes", "mode_kl")


def class_statistics(
    probs: Tensor, confidence: float = CONFIDENCE, min_mode_fraction: float = MIN_MODE_FRACTION
) -> dict[str, float]:
    """`modes`, `class_kl` and `inception_score` of class probabilities (N, K).

    - modes: classes that receive at least `min_mode_fraction` of all N samples with max probability
      >= `confidence` (unrecognisable samples cover no mode);
    - class_kl: KL(histogram of predicted classes || uniform), 0 for balanced classes, log K for one class;
    - inception_score: exp(E_x KL(p(y|x) || p(y))), from 1 (every sample gets the same prediction) to K.
    """
    probs = probs.double()
    n, k = probs.shape
    top, pred = probs.max(dim=1)
    confident = torch.bincount(pred[top >= confidence], minlength=k)  # (K,)
    hist = torch.bincount(pred, minlength=k).double() / n  # (K,)
    marginal = probs.mean(dim=0, keepdim=True)  # (1, K)
    kl = torch.special.xlogy(probs, probs).sum(1) - (probs * marginal.clamp_min(1e-30).log()).sum(1)  # (N,)
    return {
        "modes": int((confident >= min_mode_fraction * n).sum()),
        "class_kl": float(torch.special.xlogy(hist, hist * k).sum()),
        "inception_score": float(kl.mean().exp()),
    }


def stacked_mode_statistics(probs: Tensor) -> dict[str, float]:
    """`modes` and `mode_kl` of per-channel digit probabilities (N, 3, K), as the Stacked MNIST papers count them.

    Each channel's argmax digit makes a 3-digit code (one of K**3 = 1000 modes); `modes` is the number of codes
    with at least one sample, `mode_kl` the KL divergence of the code histogram from uniform. Their floor on real
    data depends on N: see docs/evaluation.md's table.
    """
    n, c, k = probs.shape
    digits = probs.argmax(dim=2)  # (N, 3)
    codes = (digits * k ** torch.arange(c - 1, -1, -1, device=digits.device)).sum(1)  # (N,) first channel major
    hist = torch.bincount(codes, minlength=k**c).double() / n  # (K**3,)
    return {"modes": int((hist > 0).sum()), "mode_kl": float(torch.special.xlogy(hist, hist * k**c).sum())}
