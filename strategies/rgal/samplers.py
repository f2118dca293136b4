"""Negative samplers for RGAL's triplet losses (RGAL paper Sec. 3.3-3.4; released code ``losses.py``).

All functions are pure: embeddings and labels in, index tensors out.  Negatives are drawn per anchor from a weight
row over the batch:

* ``distance_weighted`` (Wu et al. 2017, the released ``DistanceWeighted``): on L2-normalised n-dimensional
  vectors the density of pairwise distances is ``f(d) ∝ d^(n-2) (1 - d^2/4)^((n-3)/2)``; a negative is drawn with
  weight ``1/f(d)``, distances clamped below at 0.5, weight 0 at distance >= 1.4.
* ``focal_weighted`` (the released ``BalancedWeighted``, the paper's focal sampling): the same weights without the
  clamp, restricted to ``lower < d < upper`` (0.5 and 1.0 by default: the released code and the paper's Tables 8-9).
* ``random``: uniform over the negatives.

As in the released code: positives are all ordered same-label pairs (self-pairs excluded); an anchor with no valid
negative falls back to uniform over its negatives; NaN weights become 0.  One deliberate difference: the released
code subtracts the row maximum of the log-weights over *all* columns before exponentiating; here the maximum is taken
over the valid negatives.  The two agree whenever no excluded column dominates the row, and differ in two cases
(``results/fidelity``, rows R8 and R9):

* a pair at distance 2 (log 0): the released row becomes NaN and ``torch.multinomial`` fails; here it samples;
* a positive or an out-of-window negative much closer than the window (with n-dimensional embeddings its log-weight
  ``(2 - n) log d`` dwarfs theirs: 100 classes, a positive at distance 0.02): the released window weights underflow
  to 0 and the row falls back to *uniform* over all negatives; here the focal window is kept.  The released
  behaviour is a floating-point accident that silently turns focal sampling into random sampling for exactly the
  anchors whose positives are close; the paper's Sec. 3.4 describes the window, so the suite keeps it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``x`` (0 on the diagonal)."""
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp(min=1e-12)
    d2.fill_diagonal_(0)
    return d2.sqrt()


def positive_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (anchor, positive) with the same label, self-pairs excluded."""
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    a, p = same.nonzero(as_tuple=True)
    return a, p


def _inverse_density_log_weight(dist: torch.Tensor, n: int) -> torch.Tensor:
    return (2.0 - n) * dist.log() - ((n - 3.0) / 2.0) * (1.0 - 0.25 * dist * dist).clamp(min=1e-12).log()


def _normalise_rows(logw: torch.Tensor, valid: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    logw = logw.masked_fill(~valid, float("-inf"))
    rowmax = logw.max(1, keepdim=True).values
    w = (logw - torch.where(torch.isfinite(rowmax), rowmax, torch.zeros_like(rowmax))).exp()
    w = torch.where(valid, w, torch.zeros_like(w))
    empty = w.sum(1, keepdim=True) == 0
    w = torch.where(empty & neg, torch.ones_like(w), w)  # no valid negative: uniform over the negatives
    w = w / w.sum(1, keepdim=True)
    return torch.nan_to_num(w, nan=0.0)


@torch.no_grad()
def distance_weighted(embeddings: torch.Tensor, labels: torch.Tensor, cutoff: float = 0.5,
                      nonzero_loss_cutoff: float = 1.4) -> torch.Tensor:
    """(N, N) negative-sampling weights, each anchor's row normalised (rows without negatives are 0)."""
    x = F.normalize(embeddings.float(), dim=1)
    dist = pairwise_distances(x).clamp(min=cutoff)
    neg = labels[:, None] != labels[None, :]
    valid = neg & (dist < nonzero_loss_cutoff)
    return _normalise_rows(_inverse_density_log_weight(dist, x.shape[1]), valid, neg)


@torch.no_grad()
def focal_weighted(embeddings: torch.Tensor, labels: torch.Tensor, lower: float = 0.5,
                   upper: float = 1.0) -> torch.Tensor:
    x = F.normalize(embeddings.float(), dim=1)
    dist = pairwise_distances(x)
    neg = labels[:, None] != labels[None, :]
    valid = neg & (dist > lower) & (dist < upper)
    return _normalise_rows(_inverse_density_log_weight(dist, x.shape[1]), valid, neg)


@torch.no_grad()
def random_weights(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    neg = (labels[:, None] != labels[None, :]).float()
    return torch.nan_to_num(neg / neg.sum(1, keepdim=True), nan=0.0)


SAMPLERS = {"distance": distance_weighted, "focal": focal_weighted, "random": random_weights}


def sample_triplets(embeddings: torch.Tensor, labels: torch.Tensor, sampler: str = "distance",
                    generator: torch.Generator | None = None, **kw):
    """(anchor, positive, negative) indices, or ``None`` when the batch has no usable triplet."""
    a, p = positive_pairs(labels)
    if len(a) == 0:
        return None
    w = SAMPLERS[sampler](embeddings, labels, **kw)[a]
    keep = w.sum(1) > 0
    if not keep.any():
        return None
    a, p, w = a[keep], p[keep], w[keep]
    n = torch.multinomial(w, 1, generator=generator).squeeze(1)
    return a, p, n
