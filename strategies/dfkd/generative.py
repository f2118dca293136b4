"""Generator-based data-free baselines as CMI's ``GenerativeSynthesizer`` runs them (zju-vipa/CMI ``datafree_kd.py``,
``datafree/synthesis/generative.py``): DAFL, ZSKT, DFQ and DFAD differ only in loss weights, generator and the
student's criterion.

* A persistent generator (default PyTorch initialisation; never reset) with Adam(``lr_g``, betas (0.5, 0.999)).
  DAFL / ZSKT / DFQ use CMI's larger generator (4 ngf in the first stage); DFAD its own (``DFADGenerator``: Tanh then
  a non-affine BatchNorm).
* Generator step (nothing is augmented; student in eval mode, ``g_student_mode="eval"``, as CMI's acbbea6 runs
  it; DFAD's official ``DFAD_cifar.py`` keeps the student in train mode throughout, so its generator attacks the
  batch-statistics student the student step fits and the generated batches update the student's BN running
  statistics: ``g_student_mode="train"``.  The two differ only for students with BatchNorm, not on LeNet-5):
  ``oh * CE(t, argmax t) + act * (-mean|f_T|) + adv * (-crit(s, t)) + balance * sum p_mean log p_mean + bn * L_bn``
  with ``f_T`` the teacher's activation features (``Backbone.activation_features``: the pooled embedding; on LeNet-5
  conv3's 120-d output, DAFL's ``feature``), ``crit`` the KL divergence at T = 1 (CMI overwrites ``--T`` to 1 for
  these methods) or, for DFAD, the mean absolute error between logits.  The adversarial term is *not* masked here
  (CMI masks it only in CMI / RGAL).
* Student step: fresh ``z``, ``x = G(z)`` without gradients, ``crit(S(x), T(x))``.
* Order of a round (``step_order``): the generator step, then the student steps (``"synthesis_first"``, default:
  CMI's ``datafree_kd.py`` runs every synthesiser so, and the suite runs DAFL / ZSKT / DFQ / DFAD in that one loop);
  DFAD's official ``DFAD_cifar.py`` ``train()`` takes the 5 student steps first, then the generator step
  (``"student_first"``).  Over a whole run the two plays differ by one generator step (synthesis first: the first
  generator step attacks the untrained student); the fidelity harness measures it (docs/official-code-dfkd.md, D2).
* The generator's learning rate stays at ``lr_g`` (CMI's synthesiser never decays it; ``g_schedule="constant"``);
  DFAD's ``DFAD_cifar.py`` steps one MultiStepLR on both optimisers, so ``g_schedule="student"`` decays it by the
  student's schedule factor after every epoch.

Weights (the specification's table, from CMI's scripts): DAFL oh 1, act 1e-3, balance 20, z 512-d; ZSKT adv 1; DFQ adv 1,
bn 1, oh 1, balance 20, 10 student steps per generator step; DFAD adv 1 with L1 for both players.  CMI's DAFL script
at commit 9e79fa9 (``scripts/dafl/dafl_cifar10_wrn402_wrn161.sh``: ``--method dafl``, oh 1, act 0.001, balance 20)
agrees with these defaults (an older commit's script ran ``--method zskt`` with act 0.1; docs/official-code-dfkd.md).
"""
from __future__ import annotations

import torch

from benchmark.models.generators import GENERATORS
from benchmark.dfkd_methods import DFKDMethod, register_dfkd_method
from strategies.dfkd.pool_kd import frozen
from strategies.dfkd.losses import (activation_loss, balance_loss, bn_hooks, bn_loss, kd_loss, l1_logits,
                                    one_hot_loss)
from strategies.dfkd.params import GenerativeParams, InversionWeights, KDParams, LatentParams, RoundParams


class GenerativeMethod(DFKDMethod):
    """A persistent generator played against the student (min-max), with prior terms on the teacher's outputs."""

    @property
    def student_first(self) -> bool:
        return self.p["step_order"] == "student_first"

    generator_kind = "cmi-large"

    def __init__(self, ctx):
        super().__init__(ctx)
        c, h, _ = ctx.image_shape
        self.nz = int(self.p["nz"])
        self.generator = GENERATORS[self.p["generator"] or self.generator_kind](
            nz=self.nz, ngf=ctx.recipe.ngf, img_size=h, nc=c, mean=ctx.mean, std=ctx.std).to(self.device)
        self.generator.train()
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.p["lr_g"], betas=tuple(self.p["g_betas"]))
        self.hooks = bn_hooks(self.teacher) if self.p["bn"] > 0 else []

    def criterion(self, s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
        if self.p["criterion"] == "l1":
            return l1_logits(s_logits, t_logits)
        return kd_loss(s_logits, t_logits, self.p["temperature"])

    def sample(self, n: int) -> torch.Tensor:
        return self.generator(self.randn(n, self.nz))

    def generator_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        p = self.p
        t_logits, t_feat = self.teacher.forward_activations(x)
        loss = torch.zeros((), device=self.device)
        parts = {}
        if p.get("oh", 0):
            parts["oh"] = one_hot_loss(t_logits)
        if p.get("act", 0):
            parts["act"] = activation_loss(t_feat)
        if p.get("balance", 0):
            parts["balance"] = balance_loss(t_logits)
        if p.get("bn", 0) and self.hooks:
            parts["bn"] = bn_loss(self.hooks).to(self.device)
        if p.get("adv", 0):
            parts["adv"] = -self.criterion(self.student(x), t_logits)
        for k, v in parts.items():
            loss = loss + p[k] * v
        return loss, {k: v.item() for k, v in parts.items()}

    def synthesize(self) -> dict:
        out = {}
        # no gradients for the student's weights; eval or train mode (module docstring)
        with frozen(self.student, mode_eval=self.p["g_student_mode"] == "eval"):
            for _ in range(self.g_steps):
                x = self.sample(self.ctx.recipe.synthesis_batch)
                loss, out = self.generator_loss(x)
                self.opt_g.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_g.step()
                out["loss_g"] = loss.item()
        return out

    def student_loss(self):
        with torch.no_grad():
            x = self.sample(self.student_batch)
            t = self.teacher(x)
        return self.criterion(self.student(x), t), len(x)

    @torch.no_grad()
    def analysis_images(self, n: int) -> torch.Tensor | None:
        return self.sample(n).clamp(0, 1)

    def end_epoch(self, lr_factor: float) -> None:
        # g_schedule "student": the generator's Adam decays with the student's SGD, as DFAD's official
        # DFAD_cifar.py steps MultiStepLR on both optimisers (and its derivatives step one schedule on both);
        # "constant" (default): CMI's GenerativeSynthesizer, which never decays the generator.  The lr lives in
        # opt_g's state, so a resumed cell continues with the decayed value.
        if self.p["g_schedule"] == "student":
            for group in self.opt_g.param_groups:
                group["lr"] = self.p["lr_g"] * lr_factor

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "opt_g": self.opt_g.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])


# every generator-based method: one generator step and 5 student steps a round, batch 256, z 256-d, KL at T = 1
# (CMI overwrites --T to 1 for them); the terms' weights are each method's (CMI's scripts, module docstring)
GENERATIVE = (RoundParams, LatentParams, InversionWeights, GenerativeParams, KDParams)


@register_dfkd_method("dafl", published="DAFL", params=GENERATIVE,
                      defaults={"oh": 1.0, "act": 1e-3, "balance": 20.0, "nz": 512},
                      description="DAFL (Chen et al. 2019): one-hot + activation + information-entropy priors, "
                                  "no adversarial term; CMI's generative recipe")
class DAFL(GenerativeMethod):
    pass


@register_dfkd_method("zskt", published="ZSKT", params=GENERATIVE, defaults={"adv": 1.0},
                      description="ZSKT (Micaelli & Storkey 2019) as CMI runs it: adversarial KL at T=1")
class ZSKT(GenerativeMethod):
    pass


@register_dfkd_method("dfq", published="DFQ", params=GENERATIVE,
                      defaults={"kd_steps": 10, "adv": 1.0, "bn": 1.0, "oh": 1.0, "balance": 20.0},
                      description="DFQ (Choi et al. 2020, adversarial KD for quantisation): adversarial KL + BN "
                                  "statistics + one-hot + balance, 10 student steps per generator step")
class DFQ(GenerativeMethod):
    pass


@register_dfkd_method("dfad", published="DFAD", params=GENERATIVE, defaults={"adv": 1.0, "criterion": "l1"},
                      description="DFAD (Fang et al. 2019): L1 between logits for both players, DFAD generator")
class DFAD(GenerativeMethod):
    generator_kind = "dfad"
