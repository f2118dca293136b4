"""Losses of the data-free quantization methods, as small pure functions (official code: xushoukai/GDFQ
``trainer.py``, zysxmu/IntraQ ``data_generate/distill_data.py`` and ``trainer_direct.py``).

* ``bns_loss`` -- GDFQ's / IntraQ's BatchNorm-statistics term: over the teacher's BN layers, the mean of
  ``MSE(mu(x), running_mean) + MSE(var(x), running_var)`` with the batch mean and *biased* variance of each BN input
  (``nn.MSELoss``: a mean over channels; the sum over layers divided by their number).  Not the DeepInversion /
  CMI norm form of ``strategies.dfkd.losses.bn_loss``.
* ``quantized_kd_loss`` -- the quantized student's loss ``alpha * T^2 * KL(S/T || T/T) + CE(S, y)``.  GDFQ's
  ``nn.KLDivLoss()`` ran with PyTorch 1.2's default reduction, the mean over all B x C elements
  (``reduction="elementwise"``, i.e. the batch-mean KL / C), alpha 1; IntraQ's ``KLDivLoss(reduction='batchmean')``,
  alpha 20.  Both at T = 20.
* ``soft_targets`` / ``soft_inception_loss`` -- IntraQ's soft inception loss: for each image, with probability 0.5
  a target probability ``t ~ U(target_low, 1)`` for its class, else 1, drawn once per batch; the loss is
  ``mean_i (softmax(x_i)[y_i] - t_i)^2`` (an MSE on the class's probability, no temperature).
* ``marginal_distance_loss`` -- IntraQ's marginal distance constraint: with ``d = 1 - cos(f, c_y)`` between an image's
  pooled teacher feature and its class centre, ``sum(relu(lower - d) * m) / (sum(m) + 1e-6) + sum(relu(d - upper) *
  m) / (sum(m) + 1e-6)``, ``m`` 1 where the class has a centre yet (CIFAR-100: lower 0.02, upper 1.0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BNMomentsHook:
    """Forward hook on a teacher ``BatchNorm2d``: the batch mean and biased variance of its input (float32)."""

    def __init__(self, module: nn.BatchNorm2d):
        self.module, self.moments = module, None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        x = inputs[0].float()
        self.moments = (x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False))

    def remove(self) -> None:
        self.handle.remove()


def moment_hooks(model: nn.Module) -> list[BNMomentsHook]:
    return [BNMomentsHook(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def bns_loss(hooks: list[BNMomentsHook]) -> torch.Tensor:
    """GDFQ / IntraQ's BN-statistics loss over the hooked layers' latest forward."""
    terms = [F.mse_loss(mu, h.module.running_mean) + F.mse_loss(var, h.module.running_var)
             for h in hooks if h.moments is not None for mu, var in [h.moments]]
    return torch.stack(terms).mean() if terms else torch.tensor(0.0)


def quantized_kd_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, labels: torch.Tensor, temperature: float,
                      alpha: float, reduction: str = "batchmean") -> torch.Tensor:
    """``alpha * T^2 * KL + CE``; ``reduction``: ``"batchmean"`` (IntraQ) or ``"elementwise"`` (GDFQ, PyTorch 1.2's
    ``KLDivLoss()`` default: the mean over every element)."""
    t = temperature
    kl = F.kl_div(F.log_softmax(s_logits / t, 1), F.softmax(t_logits / t, 1), reduction="batchmean")
    if reduction == "elementwise":  # written out: torch warns that its "mean" will become "batchmean"
        kl = kl / s_logits.shape[1]
    return kl * alpha * t * t + F.cross_entropy(s_logits, labels)


def soft_targets(n: int, target_low: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """IntraQ's per-image target probability of its class: ``U(target_low, 1)`` for a random half, else 1."""
    soft = torch.rand(n, generator=generator) < 0.5
    draw = target_low + (1 - target_low) * torch.rand(n, generator=generator)
    return torch.where(soft, draw, torch.ones(n))


def soft_inception_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    p = F.softmax(logits.float(), 1).gather(1, labels.view(-1, 1)).squeeze(1)
    return (p - targets.to(p.device)).pow(2).mean()


def marginal_distance_loss(features: torch.Tensor, centres: torch.Tensor, has_centre: torch.Tensor, lower: float,
                           upper: float) -> torch.Tensor:
    """``features`` (B, D), ``centres`` (B, D): each image's class centre (any vector where ``has_centre`` is 0)."""
    d = 1 - F.cosine_similarity(features.float(), centres.float(), dim=1)
    m = has_centre.float()
    return ((F.relu(lower - d) * m).sum() + (F.relu(d - upper) * m).sum()) / (m.sum() + 1e-6)
