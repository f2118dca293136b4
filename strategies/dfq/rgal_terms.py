"""RGAL's terms in data-free quantization (RGAL paper Sec. 5.2, Eq. 16-17, Table 12-13), for GDFQ's generator and
IntraQ's pixel optimisation alike, built from ``strategies.rgal.relation`` (no second copy of a loss).

Reading of Eq. 16-17.  The paper writes "the generator or image synthesis optimizer is trained with L'_s = -L_adv +
L_ntri (16), while the student is trained with L'_a = L_adv + L_tri + L_oh (17)"; Table 13 calls the synthesis part
L'_g and the student part L'_s (its rows: IntraQ, +L'_g, +L'_g+L'_s), as Sec. 5.3 does.  The roles are what
matters and are unambiguous: the synthesis side gets ``-L_adv + L_ntri``, the quantized student's side ``L_tri``.
Its ``L_adv`` and ``L_oh`` are the KD and CE terms GDFQ's and IntraQ's student losses already have
(``strategies.dfq.losses.quantized_kd_loss``), so only ``L_tri`` is added there.  Switches, named after Table 13:
``rgal_synthesis`` (L'_g) and ``rgal_student`` (L'_s).

* Synthesis: ``adv * L_adv' + tri_g * L_ntri`` with ``L_adv'`` CMI's masked ``-KL(T || S)`` (the released RGAL
  synthesiser's adversarial term, ``strategies.dfkd.losses.masked_adversarial_loss``; weight 1, as Eq. 16 and the
  released README's ``--adv 1.0``) and ``L_ntri`` the reversed triplet on the quantized student's feature, labels the
  teacher's argmax.  The student is queried with frozen parameters and frozen activation ranges
  (``benchmark.quantization.tracking_paused``: in the warm-up the ranges follow the student's own calibration
  batches only).
* Student: ``triplet_weight * L_tri`` on the student's embedding, distance-weighted negatives on its logits, labels
  the teacher's argmax (``s_labels="pool"``: the labels the images were made for).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.hparams import hp
from benchmark.quantization import tracking_paused
from strategies.dfkd.losses import masked_adversarial_loss
from strategies.dfkd.pool_kd import frozen
from strategies.rgal.relation import student_relation_loss, synthesis_feature, synthesis_relation_loss


@dataclass(frozen=True)
class RGALQuantParams:
    rgal_synthesis: bool = hp(True, "L'_g: -L_adv + L_ntri in the synthesis loss", "RGAL Eq. 16, Table 13's L'_g")
    rgal_student: bool = hp(True, "L'_s: L_tri in the quantized student's loss", "RGAL Eq. 17, Table 13's L'_s")
    adv: float = hp(1.0, "weight of the adversarial term -L_adv in the synthesis loss",
                    "RGAL Eq. 16: 1; released README --adv 1.0")


class RGALQuantTerms:
    """The two sides for one method instance (its student, parameters and generator)."""

    def __init__(self, method, student_side: bool = True):
        """``student_side`` False: a method without L'_s (``intraq+rgal-g``), which declares none of its parameters."""
        self.m, self.p, self.student_side = method, method.p, student_side

    def synthesis(self, x: torch.Tensor, t_logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``adv * L_adv' + tri_g * L_ntri`` of synthetic images ``x`` ([0, 1]-space, differentiable)."""
        if not self.p["rgal_synthesis"]:
            return x.sum() * 0.0, {}
        student = self.m.student
        with frozen(student), tracking_paused(student):
            s_emb, s_blocks = student.backbone(x, return_blocks=True)
            s_logits = student.head(s_emb)
        adv = masked_adversarial_loss(s_logits, t_logits)
        ntri = synthesis_relation_loss(self.p, synthesis_feature(self.p, s_emb, s_blocks), t_logits.argmax(1),
                                       t_logits, s_logits, self.m.gen)
        return self.p["adv"] * adv + self.p["tri_g"] * ntri, {"adv": adv.item(), "ntri": ntri.item()}

    def student(self, s_emb, s_logits, t_logits, labels) -> torch.Tensor:
        """``triplet_weight * L_tri`` of a student batch (0 when ``rgal_student`` is off, or for a method without the
        student side)."""
        if not self.student_side or not self.p["rgal_student"]:
            return s_logits.sum() * 0.0
        y = t_logits.argmax(1) if self.p["s_labels"] == "teacher" else labels
        return student_relation_loss(self.p, s_emb, y, s_logits, self.m.gen)
