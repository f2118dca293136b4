"""Reference rows of the distillation tables: the teacher, and the student distilled with the real training data
(plain KD), as upper bounds.

* ``teacher``: the teacher's own test accuracy; nothing is trained.
* ``kd-real``: the student trained on the real training set (augmented as the teacher was) with Hinton's KD only,
  ``KL(p_T || p_S)`` at ``temperature`` T (4 by default) scaled by T^2, on the same schedule as the data-free methods
  (epochs x ``ep_steps`` SGD steps, the same optimiser and learning-rate schedule), so that its row measures what the
  synthetic data cost.  Published "KD" rows (activation-regularisation paper, Table 1) sit beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.dfkd_methods import DFKDMethod, register_dfkd_method
from benchmark.hparams import hp
from strategies.dfkd.losses import kd_loss
from strategies.dfkd.params import KDParams


@register_dfkd_method("teacher", published="Teacher", reference=True,
                      description="reference row: the teacher's test accuracy (trained once, cached)")
class Teacher(DFKDMethod):
    needs_student = False
    synthesizes = False


@dataclass(frozen=True)
class KDRealParams:
    student_batch: int = hp(128, "student batch size", "suite choice: the pool methods' batch", low=1)


@register_dfkd_method("kd-real", published="KD", reference=True, params=(KDParams, KDRealParams),
                      defaults={"temperature": 4.0},  # suite choice (module docstring)
                      description="reference row: plain KD on the real training data (upper bound)")
class KDReal(DFKDMethod):
    synthesizes = False

    def __init__(self, ctx):
        super().__init__(ctx)
        x, y = ctx.real_data
        self.x = x.to(self.device)

    def student_loss(self):
        idx = torch.randint(len(self.x), (self.student_batch,), generator=self.gen, device=self.gen.device)
        xb = self.augment_pool_batch(self.x[idx.to(self.device)])
        with torch.no_grad():
            t = self.teacher(xb)
        return kd_loss(self.student(xb), t, self.p["temperature"]), len(xb)
