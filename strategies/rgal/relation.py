"""RGAL's relation terms for the data-free tasks -- distillation (``strategies.dfkd.rgal``) and any other task whose
images are synthesised against a teacher and learned by a student (RGAL paper Algorithm 1, Eq. 3 and 5; Sec. 5.2's
quantization uses the same two terms): one declared parameter set, ``RGALRelationParams``, and the two losses.

* Synthesis side, ``synthesis_relation_loss``: L_ntri (Eq. 3), the reversed triplet hinge on the student's feature of
  the synthetic batch, labels the teacher's argmax, negatives drawn by ``rgal_sampler`` (focal weighted sampling,
  Sec. 3.4) on ``rgal_sample_on`` (the teacher's logits, where the released code mines); ``variant="released"`` adds
  the unswapped hinge as well, as the released ``datafree/synthesis/triplet.py`` does.  Its weight is ``tri_g``.
* Student side, ``student_relation_loss``: L_tri (Eq. 5) on the student's embedding with distance-weighted negatives
  on the student's logits, weighted by ``triplet_weight``.

Names follow the class-incremental RGAL (``strategies.rgal.config``): ``rgal_*`` the synthesis side, ``triplet_*``
the student side; the two sides share one sampler window, one margin and one distance form here, so those carry no
side prefix.  Defaults are the released code's (Sharpiless/RGAL ``main.py``: ``tri_g`` 0.1, ``tri_s`` 0.1, margin
0.2, distance not squared).  ``key_name``: the names the committed distillation cells recorded.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.hparams import hp
from strategies.rgal.config import SAMPLERS, sampler_window
from strategies.rgal.losses import sampled_triplet_loss


@dataclass(frozen=True)
class RGALRelationParams:
    """L_ntri on the synthesis side, L_tri on the student side (Eq. 3, 5)."""

    tri_g: float = hp(0.1, "weight of L_ntri in the synthesis loss", "released main.py: 0.1")
    rgal_sampler: str = hp("focal", "negative sampler of L_ntri", "RGAL Sec. 3.4: focal", choices=SAMPLERS,
                           key_name="g_sampler")
    rgal_sample_on: str = hp("teacher_logits", "what L_ntri's sampler measures distances on",
                             "released code: the teacher's logits",
                             choices=("teacher_logits", "student_logits", "embedding"), key_name="g_sample_on")
    variant: str = hp("paper", "L_ntri as the paper writes it, or with the released code's extra unswapped hinge",
                      "RGAL Eq. 3 / released triplet.py", choices=("paper", "released"))
    g_feature: str = hp("block", "L_ntri's feature: the last block pooled, or the pooled embedding",
                        "released code: s_layers[2:4]", choices=("block", "embedding"))
    triplet_weight: float = hp(0.1, "weight of L_tri in the student's loss", "released main.py: 0.1",
                               key_name="tri_s")
    triplet_sampler: str = hp("distance", "negative sampler of L_tri", "released code: distance weighted",
                              choices=("distance", "focal", "random"), key_name="s_sampler")
    s_labels: str = hp("teacher", "L_tri's labels: the teacher's argmax of the augmented batch, or the labels "
                       "stored with the synthetic image", "released main.py: the teacher's",
                       choices=("teacher", "pool"))
    focal_lower: float = hp(0.5, "focal sampler (either side): lower end of the window", "released code: 0.5")
    focal_upper: float = hp(1.0, "focal sampler (either side): upper end of the window", "released code: 1.0")
    distance_cutoff: float = hp(0.5, "distance sampler (either side): distances below are clipped to this",
                                "Wu et al. 2017, released code 0.5", key_name="dw_cutoff")
    nonzero_cutoff: float = hp(1.4, "distance sampler (either side): negatives farther get weight 0",
                               "Wu et al. 2017, released code 1.4", key_name="dw_nonzero_cutoff")
    margin: float = hp(0.2, "margin of both triplet hinges", "released code: 0.2")
    squared: bool = hp(False, "squared distances in both hinges (the paper's form)", "released code: not squared")


def _window(p: dict, sampler: str) -> dict:
    return sampler_window(sampler, (p["focal_lower"], p["focal_upper"]), (p["distance_cutoff"], p["nonzero_cutoff"]))


def synthesis_feature(p: dict, emb: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    """L_ntri's feature of the student (``g_feature``): its last block's output pooled (before a final BN-ReLU of
    a WRN, the released code's ``s_layers[2:4]``), or its pooled embedding."""
    if p["g_feature"] == "embedding":
        return emb
    return torch.nn.functional.adaptive_avg_pool2d(blocks[-1].float(), 1).flatten(1)


def synthesis_relation_loss(p: dict, feat: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor,
                            student_logits: torch.Tensor, generator=None) -> torch.Tensor:
    """L_ntri (unweighted) of a synthetic batch: ``feat`` the student's feature (``g_feature``), ``labels`` the
    teacher's argmax; ``p`` holds ``RGALRelationParams``' fields."""
    on = {"teacher_logits": teacher_logits, "student_logits": student_logits, "embedding": feat}[p["rgal_sample_on"]]
    return sampled_triplet_loss(feat, labels, sample_on=on, sampler=p["rgal_sampler"],
                                reverse=p["variant"] == "paper", generator=generator,
                                sampler_kw=_window(p, p["rgal_sampler"]), margin=p["margin"], squared=p["squared"])


def student_relation_loss(p: dict, emb: torch.Tensor, labels: torch.Tensor, student_logits: torch.Tensor,
                          generator=None) -> torch.Tensor:
    """``triplet_weight * L_tri`` of a student batch: ``emb`` the student's embedding, negatives drawn on its
    logits; ``labels`` as ``s_labels`` says (the caller picks them)."""
    return p["triplet_weight"] * sampled_triplet_loss(
        emb, labels, sample_on=student_logits, sampler=p["triplet_sampler"], generator=generator,
        sampler_kw=_window(p, p["triplet_sampler"]), margin=p["margin"], squared=p["squared"])
