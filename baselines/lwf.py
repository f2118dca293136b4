"""Learning without Forgetting (Li & Hoiem 2016) on Avalanche's ``LwFPlugin``.

Hyper-parameters from FACIL's defaults: lambda 1 (``kd_weight``; Avalanche's ``alpha``), temperature 2.  Two fixes
to Avalanche 0.6.0's
``LearningWithoutForgetting``, both documented here because they change numbers:
* its KL term lacks Hinton's T^2 factor (which keeps the gradient scale of the soft targets independent of T);
  it is restored;
* it calls the previous model in whatever mode the copy was made in (train mode), so the frozen teacher used batch
  statistics and updated its BatchNorm running means on every step; the copy is put in eval mode.
Against FACIL (the reference implementation; ``results/fidelity/lwf.json``) the suite keeps on purpose: one head
over every seen class with CE over all of them and every row trained (the suite's class-incremental protocol), and
no 1e-5 smoothing of the soft targets (docs/official-code-cil-baselines.md, "Departures from FACIL kept on purpose").
"""
from __future__ import annotations


from avalanche.training.plugins import LwFPlugin
from avalanche.training.regularization import LearningWithoutForgetting

from dataclasses import dataclass

from baselines.finetune import Finetune
from benchmark.hparams import hp
from benchmark.methods import register_method
from benchmark.models.base import frozen_copy


class LwFWithT2(LearningWithoutForgetting):
    def _distillation_loss(self, out, prev_out, active_units):
        return super()._distillation_loss(out, prev_out, active_units) * self.temperature ** 2

    def post_adapt(self, agent, exp):
        super().post_adapt(agent, exp)
        self.prev_model.eval()
        for p in self.prev_model.parameters():
            p.requires_grad_(False)


class SuiteLwFPlugin(LwFPlugin):
    loss_name = "lwf_kd"  # its term in the experiment logs (benchmark.loss_terms)

    def __init__(self, alpha=1.0, temperature=2.0):
        super().__init__(alpha, temperature)
        self.lwf = LwFWithT2(alpha, temperature)


@dataclass(frozen=True)
class LwFParams:
    """CE + kd_weight * T^2 KL(softmax(z_old / T) || softmax(z / T)) over the old classes (Li & Hoiem Eq. 2-3)."""

    kd_weight: float = hp(1.0, "weight of the distillation term", "FACIL lwf.py --lamb 1; Avalanche LwFPlugin alpha",
                          key_name="alpha")
    temperature: float = hp(2.0, "softmax temperature of the distillation term", "Li & Hoiem Sec. 3: T = 2")


@register_method("lwf", cost=(1.0, 1.33), params=LwFParams,
                 description="LwF (Avalanche LwFPlugin, T^2 restored), FACIL defaults lambda 1, T 2; no published "
                             "row (the papers tabulate LwF-MC)")
class LwF(Finetune):
    phase0_family = "ce"

    def __init__(self, ctx):
        self.lwf_plugin = SuiteLwFPlugin(ctx.params["kd_weight"], ctx.params["temperature"])
        super().__init__(ctx, plugins=[self.lwf_plugin])

    def state_dict(self):
        lw = self.lwf_plugin.lwf
        return {"expcount": lw.expcount,
                "prev_model": None if lw.prev_model is None else lw.prev_model.state_dict(),
                "prev_classes": {int(t): sorted(int(c) for c in cs) for t, cs in lw.prev_classes_by_task.items()}}

    def load_state_dict(self, st):
        lw = self.lwf_plugin.lwf
        lw.expcount = st["expcount"]
        lw.prev_model = None
        if st["prev_model"] is not None:
            lw.prev_model = frozen_copy(self.model, st["prev_model"])
        lw.prev_classes_by_task.clear()
        for t, cs in st["prev_classes"].items():
            lw.prev_classes_by_task[int(t)] = set(cs)
        # the copied head keeps the number of classes active when it was saved
        if lw.prev_model is not None and lw.prev_classes_by_task:
            lw.prev_model.set_active_classes(max(max(c) for c in lw.prev_classes_by_task.values()) + 1)


