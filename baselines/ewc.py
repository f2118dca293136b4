"""Elastic Weight Consolidation (Kirkpatrick et al. 2017) with Avalanche's ``EWCPlugin``.

lambda 5000 as FACIL's default; Avalanche's ``separate`` mode (one quadratic penalty per past phase, Fisher from
squared minibatch gradients of the cross-entropy over the phase's training data).  Against FACIL (the reference
implementation; ``results/fidelity/ewc.json``) Avalanche's plugin differs, kept on purpose: no 1/2 in the penalty,
the Fisher averaged over every batch (the partial one included) in eval mode, the head penalised, one head trained
with CE over every seen class (docs/official-code-cil-baselines.md, "Departures from FACIL kept on purpose").
"""
from __future__ import annotations

from avalanche.training.plugins import EWCPlugin
from avalanche.training.utils import ParamData

from dataclasses import dataclass

from baselines.finetune import Finetune
from benchmark.hparams import hp
from benchmark.methods import register_method


@dataclass(frozen=True)
class EWCParams:
    """CE + penalty_weight * sum_i F_i (theta_i - theta*_i)^2 (Kirkpatrick et al. Eq. 3, Avalanche's form)."""

    penalty_weight: float = hp(5000.0, "weight of the quadratic penalty (lambda)", "FACIL ewc.py --lamb 5000",
                               key_name="ewc_lambda")
    mode: str = hp("separate", "one penalty per past phase (Avalanche's online mode needs a decay factor the suite "
                   "does not declare)", "Avalanche EWCPlugin mode", choices=("separate",))


# cost: fitted to the committed cpu cells that loaded phase 0 (benchmarks/check_estimates.py, 2 cells)
@register_method("ewc", cost=(1.0, 1.18), params=EWCParams,
                 description="EWC (Avalanche EWCPlugin), FACIL lambda 5000; no published row (RGAL names it in "
                             "its text only)")
class EWC(Finetune):
    phase0_family = "ce"

    def __init__(self, ctx):
        self.ewc_plugin = EWCPlugin(ctx.params["penalty_weight"], mode=ctx.params["mode"])
        super().__init__(ctx, plugins=[self.ewc_plugin])

    def state_dict(self):
        def dump(d):
            return {int(e): {n: p.data.cpu() for n, p in ps.items()} for e, ps in d.items()}

        return {"saved_params": dump(self.ewc_plugin.saved_params), "importances": dump(self.ewc_plugin.importances)}

    def load_state_dict(self, st):
        dev = self.ctx.device
        for name in ("saved_params", "importances"):
            target = getattr(self.ewc_plugin, name)
            target.clear()
            for e, ps in st[name].items():
                target[int(e)] = {n: ParamData(n, init_tensor=t.to(dev), device=dev) for n, t in ps.items()}
