"""SSRE's incremental-phase losses (Zhu et al., CVPR 2022) as composable pieces, faithful to the official code
(zhukaii/SSRE ``Trainer_cvpr.py``, ``_compute_loss``):

* ``PrototypeSelection`` -- ``s = max_c cos(f, proto_c)`` over the old classes' prototypes, with ``f`` the current
  model's embedding of each training image (not detached: the official code lets the gradient flow through ``s``).
* ``SelectionWeightedCE`` -- the criterion ``mean(CE(logits / 0.1, y) * (1 - s))``; plain ``CE(logits / T, y)``
  while there are no old prototypes (phase 0).
* ``SelectionDistillationPlugin`` -- ``weight * sum_i s_i ||f_i - f_old_i||_2`` (per-sample L2 norm of the
  embedding difference to the frozen previous model, weighted by ``s`` and *summed* over the batch; weight 1).
* The prototype term ``10 * CE(fc(proto) / 0.1, c)`` is PASS's ``PrototypeAugmentationPlugin`` on a bank without noise
  (``PrototypeBank(noise=False)``) and ``n`` = batch size (128), labels scaled by 1.
* ``ReparamPlugin`` -- structural re-parameterisation (``strategies.reparam``): at the end of phase 0 the network
  becomes SSRE's (BatchNorm folded, zero adapters, unrotated classifier rows; the previous-model copy is made from
  it); after every later phase the adapters are merged into their kernels and reset to zero.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from strategies.reparam import merge_adapters, to_ssre


class PrototypeSelection:
    """Per-sample ``s`` for the current step, computed once from the captured embedding and the bank."""

    def __init__(self, capture, bank):
        self.capture, self.bank = capture, bank
        self._key, self._s = None, None

    def s(self) -> torch.Tensor | None:
        f = self.capture.features
        if f is None or len(self.bank) == 0:
            return None
        if self._key is not f:
            protos, _ = self.bank.matrix(device=f.device)
            cos = F.normalize(f, dim=1) @ F.normalize(protos, dim=1).t()
            self._key, self._s = f, cos.max(1).values
        return self._s


class SelectionWeightedCE(torch.nn.Module):
    def __init__(self, selection: PrototypeSelection, temperature: float = 0.1):
        super().__init__()
        self.selection, self.t = selection, temperature

    def forward(self, logits, y):
        s = self.selection.s()
        if s is None:
            return F.cross_entropy(logits / self.t, y)
        return (F.cross_entropy(logits / self.t, y, reduction="none") * (1 - s)).mean()


class SelectionDistillationPlugin(SupervisedPlugin):
    loss_name = "selective_kd"  # its term in the experiment logs (benchmark.loss_terms)

    def __init__(self, selection: PrototypeSelection, capture, old, weight: float = 1.0):
        super().__init__()
        self.selection, self.capture, self.old, self.weight = selection, capture, old, weight

    def before_backward(self, strategy, **kwargs):
        s = self.selection.s()
        if self.old.model is None or s is None:
            return
        with torch.no_grad():
            f_old = self.old.model.backbone(strategy.mb_x)
        dist = (self.capture.features - f_old).norm(p=2, dim=1)
        strategy.loss = strategy.loss + self.weight * (dist * s).sum()


class ReparamPlugin(SupervisedPlugin):
    """Converts the network to SSRE's after phase 0 and merges the adapters after every later phase.  Must run
    before the prototype update (which copies the previous model)."""

    def __init__(self, net, on_convert=None):
        super().__init__()
        self.net, self.on_convert = net, on_convert
        self.converted = False

    def convert(self):
        to_ssre(self.net)
        self.converted = True
        if self.on_convert:
            self.on_convert()

    def after_training_exp(self, strategy, **kwargs):
        if not self.converted:
            self.convert()
        else:
            merge_adapters(self.net)
