"""GDFQ (Xu et al., ECCV 2020; official code xushoukai/GDFQ ``main.py`` / ``trainer.py``), with and without RGAL.

Every iteration (``synthesize`` then one student step, the official order):

* generator step: ``z ~ N(0, I)`` (B x 100), labels uniform, ``x = G(z, y)`` (the label-conditional generator,
  ``benchmark.models.generators.GDFQGenerator``, in train mode), ``L_G = CE(T(x), y) + 0.1 * L_BNS`` over all of the
  teacher's BatchNorm layers (``strategies.dfq.losses.bns_loss``), Adam (lr 1e-3, betas 0.5 / 0.999), its learning
  rate decayed with the student's (official ``lrPolicy_G`` multi_step at the same epochs); trained in every epoch,
  the warm-up ones included;
* student step (from epoch ``warmup_epochs`` on): the quantized student on ``x`` (detached), ``alpha * T^2 * KL +
  CE(S(x), y)`` against the teacher's logits of the generator step (T 20, alpha 1, the KL reduced over every element
  as PyTorch 1.2's ``KLDivLoss()`` did); in the warm-up epochs the student only sees ``x`` (``calibration_images``), which
  moves its activation ranges.

``ConditionalGeneratorStep`` is that generator step alone: IntraQ calibrates its ranges with it (batch 16).

``gdfq+rgal`` (RGAL Sec. 5.2, Eq. 16-17; ``strategies.dfq.rgal_terms``): the generator loss adds ``adv * (-L_adv) +
tri_g * L_ntri`` against the quantized student, the student loss adds ``L_tri``; each part switchable.

Departures from the official code: none in the losses and schedule; the cell evaluates every ``eval_every`` epochs
and reports the last epoch's accuracy beside the best one (the official log reports the best over epochs, a test-set
selection; the tables show both).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.dfq_methods import DFQMethod, register_dfq_method
from benchmark.hparams import hp
from benchmark.models.generators import GENERATORS
from strategies.dfq.losses import bns_loss, moment_hooks, quantized_kd_loss
from strategies.dfq.rgal_terms import RGALQuantParams, RGALQuantTerms
from strategies.rgal.relation import RGALRelationParams


@dataclass(frozen=True)
class QuantKDParams:
    """The quantized student's loss (official ``loss_fn_kd``)."""

    temperature: float = hp(20.0, "KD temperature", "GDFQ / IntraQ hocon: temperature 20")
    alpha: float = hp(1.0, "KD weight (times T^2)", "GDFQ hocon: alpha 1; IntraQ: 20")
    kl_reduction: str = hp("elementwise", "KL reduction: over every element (PyTorch 1.2's KLDivLoss() default) "
                           "or per image", "GDFQ: elementwise; IntraQ: batchmean", choices=("elementwise", "batchmean"))


@dataclass(frozen=True)
class GeneratorParams:
    """GDFQ's conditional generator and its loss."""

    nz: int = hp(100, "generator latent size", "GDFQ hocon: latent_dim 100", low=1)
    ngf: int = hp(64, "generator width (channels of its last stage; the first has twice as many)",
                  "GDFQ main.py: 128 / 64 channels", low=1)
    lr_g: float = hp(1e-3, "generator Adam learning rate", "GDFQ hocon: lr_G 0.001")
    g_betas: tuple[float, float] = hp([0.5, 0.999], "generator Adam betas", "GDFQ hocon: b1 0.5, b2 0.999")
    bns: float = hp(0.1, "weight of the BN-statistics term in the generator loss", "GDFQ trainer.py: 0.1")
    generator: str = hp("gdfq", "generator architecture: the label embedding times z (CIFAR) or class-conditional "
                        "BatchNorms (ImageNet)", "GDFQ main.py: Generator / Generator_imagenet",
                        choices=("gdfq", "gdfq-imagenet"), key_neutral=True)


class ConditionalGeneratorStep:
    """GDFQ's generator and one step of it: ``step(n)`` -> (images, labels, teacher logits, figures)."""

    def __init__(self, method: DFQMethod, p: dict):
        ctx = method.ctx
        c, h, _ = ctx.image_shape
        self.m, self.p = method, p
        self.generator = GENERATORS[p["generator"]](nz=int(p["nz"]), ngf=int(p["ngf"]), img_size=h, nc=c,
                                                    mean=ctx.mean, std=ctx.std, n_classes=ctx.n_classes).to(ctx.device)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=p["lr_g"], betas=tuple(p["g_betas"]))
        self.hooks = moment_hooks(ctx.teacher)

    def step(self, n: int, extra=None):
        """``extra(x, t_logits)`` -> (loss, figures): more terms of the generator loss (RGAL's)."""
        m = self.m
        self.generator.train()
        z = m.randn(n, int(self.p["nz"]))
        y = torch.randint(m.ctx.n_classes, (n,), generator=m.gen, device=m.gen.device).to(m.device)
        x = self.generator(z, y)
        t_logits = m.teacher(x)
        ce, bns = F.cross_entropy(t_logits, y), bns_loss(self.hooks).to(x.device)
        loss = ce + self.p["bns"] * bns
        figures = {"ce": ce.item(), "bns": bns.item()}
        if extra is not None:
            more, more_figures = extra(x, t_logits)
            loss, figures = loss + more, {**figures, **more_figures}
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return x.detach(), y, t_logits.detach(), {"loss_g": loss.item(), **figures}

    def decay(self, lr_factor: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = self.p["lr_g"] * lr_factor

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt.load_state_dict(state["opt"])


def student_objective(method: DFQMethod, x: torch.Tensor, y: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    """The quantized student's loss on ``x`` (GDFQ's and IntraQ's): ``alpha T^2 KL + CE(S(x), y)``, plus RGAL's
    ``L_tri`` for a method with RGAL terms; its parts go to ``method.student_terms`` for the logs."""
    p = method.p
    s_emb = method.student.backbone(x)
    s_logits = method.student.head(s_emb)
    loss = quantized_kd_loss(s_logits, t_logits, y, p["temperature"], p["alpha"], p["kl_reduction"])
    method.student_terms = {"kd_ce": loss.detach()}
    if method.terms:
        tri = method.terms.student(s_emb, s_logits, t_logits, y)
        loss = loss + tri
        method.student_terms["tri"] = tri.detach()
    return loss


@dataclass(frozen=True)
class GDFQRGALParams:
    """Where GDFQ+RGAL's generator terms act (GDFQ's generator also trains in the warm-up, whose images calibrate
    the activation ranges; the paper is silent on the warm-up)."""

    rgal_warmup: bool = hp(True, "RGAL's generator terms in the warm-up epochs too (off: the warm-up is GDFQ's, and "
                           "the ranges calibrate on GDFQ's images)", "suite choice: RGAL Sec. 5.2 is silent",
                           key_neutral=True)


_GDFQ = dict(params=(QuantKDParams, GeneratorParams), published="GDFQ",
             description="GDFQ (Xu et al.): label-conditional generator (CE + BN statistics), quantized student "
                         "with KD + CE on its samples")


@register_dfq_method("gdfq", family="gdfq", **_GDFQ)
class GDFQ(DFQMethod):
    rgal = False

    def __init__(self, ctx):
        super().__init__(ctx)
        self.g = ConditionalGeneratorStep(self, self.p)
        self.terms = RGALQuantTerms(self) if self.rgal else None
        self.batch = None

    def synthesize(self, rgal: bool = True) -> dict:
        extra = self.terms.synthesis if self.terms and rgal else None
        x, y, t_logits, figures = self.g.step(self.ctx.recipe.synthesis_batch, extra)
        self.batch = (x, y, t_logits)
        return figures

    def calibration_images(self) -> torch.Tensor:
        self.synthesize(rgal=self.p.get("rgal_warmup", False))  # the generator trains in the warm-up epochs too
        return self.batch[0]

    def student_loss(self):
        x, y, t_logits = self.batch
        return student_objective(self, x, y, t_logits), len(y)

    def end_epoch(self, lr_factor: float) -> None:
        self.g.decay(lr_factor)

    def state_dict(self) -> dict:
        return {"g": self.g.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.g.load_state_dict(state["g"])


@register_dfq_method("gdfq+rgal", family="gdfq", rgal_baseline="gdfq",
                     **{**_GDFQ, "params": (*_GDFQ["params"], RGALQuantParams, GDFQRGALParams, RGALRelationParams),
                        "published": "GDFQ+RGAL",
                        "description": "GDFQ + RGAL: -L_adv + L_ntri in the generator loss, L_tri in the student's"})
class GDFQRGAL(GDFQ):
    rgal = True
