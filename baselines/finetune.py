"""Fine-tuning (lower bound): Avalanche's ``Naive`` strategy, cross-entropy over the seen classes, no protection
against forgetting."""
from __future__ import annotations

from avalanche.training import Naive
from torch.nn import CrossEntropyLoss

from benchmark.methods import CILMethod, make_suite_plugin, placeholder_optimizer, quiet_evaluator, register_method


@register_method("finetune", published="", description="fine-tuning, lower bound (Avalanche Naive)")
class Finetune(CILMethod):
    phase0_family = "ce"

    def __init__(self, ctx, plugins=()):
        super().__init__(ctx)
        self.suite_plugin = make_suite_plugin(ctx)
        self.strategy = Naive(model=ctx.model, optimizer=placeholder_optimizer(ctx.model), criterion=CrossEntropyLoss(),
                              train_mb_size=ctx.recipe_for(0).batch_size, device=ctx.device,
                              plugins=[*plugins, self.suite_plugin], evaluator=quiet_evaluator())
