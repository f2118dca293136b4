"""RGAL's triplet losses (RGAL paper Eq. 3 and 5) on sampled index triplets.

* ``triplet_loss`` (L_tri, Eq. 5).  Default as the released code (``TriLoss``), which produced the published
  numbers: L2-normalised embeddings, non-squared Euclidean distance, margin 0.2 -- ``F.triplet_margin_loss`` with
  p = 2, mean over triplets.  ``squared=True`` is the paper's form ``[||a-p||^2 - ||a-n||^2 + tau]_+``.
* ``reversed_triplet_loss`` (L_ntri, Eq. 3): the positive and the negative swapped inside the hinge,
  ``[d(a, n) - d(a, p) + m]_+``, which pushes same-class samples apart and pulls different-class ones together.  It is
  not the negation of L_tri (the released code instead adds the unswapped L_tri on the generator side: see
  ``--rgal-variant released`` in the distillation task).
* Triplets with a member whose embedding is (near) zero are left out of the normalised losses (``DEGENERATE_NORM``;
  a suite safeguard for quantized students, not in the released code; no effect on float networks' features).
* ``sampled_triplet_loss``: draw triplets with a sampler on one tensor (by default the logits, as the released code)
  and apply the loss to another (the embedding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from strategies.rgal.samplers import sample_triplets


# an embedding shorter than this has no direction: L2-normalising it multiplies its gradient by up to 1 / 1e-12
DEGENERATE_NORM = 1e-6


def triplet_loss(emb: torch.Tensor, a, p, n, margin: float = 0.2, normalize: bool = True,
                 squared: bool = False) -> torch.Tensor:
    if normalize:
        # Triplets with a (near-)zero embedding are left out: its direction is undefined, and ``F.normalize``'s
        # gradient there is ~1e12 x the upstream one.  A float network's pooled ReLU features are never that short;
        # a low-bit student's can be all zero (every activation in the quantizer's zero bin, e.g. before its ranges
        # are calibrated), and such gradients would swamp an Adam optimiser's moments (results/README.md,
        # "unbounded triplet").
        ok = emb.detach().norm(dim=1) > DEGENERATE_NORM
        keep = ok[a] & ok[p] & ok[n]
        if not bool(keep.all()):
            if not bool(keep.any()):
                return emb.sum() * 0.0
            a, p, n = a[keep], p[keep], n[keep]
        emb = F.normalize(emb, dim=1)
    if squared:
        dap = (emb[a] - emb[p]).pow(2).sum(1)
        dan = (emb[a] - emb[n]).pow(2).sum(1)
        return F.relu(dap - dan + margin).mean()
    return F.triplet_margin_loss(emb[a], emb[p], emb[n], margin=margin, p=2)


def reversed_triplet_loss(emb: torch.Tensor, a, p, n, **kw) -> torch.Tensor:
    return triplet_loss(emb, a, n, p, **kw)


def sampled_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, sample_on: torch.Tensor | None = None,
                         sampler: str = "distance", reverse: bool = False, generator=None, sampler_kw=None,
                         **loss_kw) -> torch.Tensor:
    """Triplet loss of ``emb`` with negatives drawn on ``sample_on`` (default ``emb``); 0 without triplets."""
    idx = sample_triplets(emb.detach() if sample_on is None else sample_on.detach(), labels, sampler, generator,
                          **(sampler_kw or {}))
    if idx is None:
        return emb.sum() * 0.0
    fn = reversed_triplet_loss if reverse else triplet_loss
    return fn(emb, *idx, **loss_kw)
