"""Loss terms of the LwF-style baselines that use them in the same form:

* ``soft_cross_entropy`` -- soft-target distillation without the T^2 factor, shared by EEIL and MUC: ``-mean_b
  sum_c softmax(z_old / T)_c log softmax(z / T)_c`` (EEIL's official ``vl_nnsoftmaxdiff``, applied per old class
  group; MUC's official LwF variant, on the main head and on the side heads).  LwF's own term (Avalanche, KL with
  T^2) lives in ``lwf.py``.
* ``scoped_cross_entropy`` -- the classification term of MUC and LwM without exemplars: over the current phase's
  classes only (LwF's new-task loss, MUC's official code, FACIL's current head) or over every seen class."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch mean of the cross-entropy between ``softmax(old_logits / T)`` and ``softmax(logits / T)`` (no T^2)."""
    target = F.softmax(old_logits / temperature, 1)
    return -(target * F.log_softmax(logits / temperature, 1)).sum(1).mean()


def scoped_cross_entropy(logits: torch.Tensor, y: torch.Tensor, group: tuple[int, int], scope: str) -> torch.Tensor:
    """``scope="new"``: CE over the current phase's classes ``[lo, hi)`` (labels shifted by ``lo``); ``"seen"``: over
    all of ``logits``' classes."""
    if scope == "new":
        lo, hi = group
        return F.cross_entropy(logits[:, lo:hi], y - lo)
    return F.cross_entropy(logits, y)
