"""LwF-MC, the multi-class LwF of the iCaRL paper (Rebuffi et al. 2017): iCaRL's sigmoid binary cross-entropy
with the previous model's sigmoid outputs as old-class targets, without exemplars, classified by the network's
own outputs.  Shares phase 0 (sigmoid BCE) with iCaRL."""
from __future__ import annotations

from avalanche.training import Naive

from baselines.icarl_loss import SuiteICaRLLoss
from benchmark.methods import CILMethod, make_suite_plugin, placeholder_optimizer, quiet_evaluator, register_method


@register_method("lwf-mc", published="LwF-MC", cost=(1.0, 1.33),
                 description="LwF-MC (iCaRL paper): sigmoid BCE + old-model targets")
class LwFMC(CILMethod):
    phase0_family = "bce"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.loss = SuiteICaRLLoss()
        self.suite_plugin = make_suite_plugin(ctx)
        self.strategy = Naive(model=ctx.model, optimizer=placeholder_optimizer(ctx.model), criterion=self.loss,
                              train_mb_size=ctx.recipe_for(0).batch_size, device=ctx.device,
                              plugins=[self.loss, self.suite_plugin], evaluator=quiet_evaluator())

    def state_dict(self):
        return {"loss": self.loss.state_dict()}

    def load_state_dict(self, st):
        self.loss.load_state_dict(st["loss"], self.model)
