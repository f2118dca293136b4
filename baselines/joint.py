"""Joint training (upper bound): one offline training on all classes of the scenario at once (Avalanche's
``JointTraining``, phase-0 recipe), evaluated with the same metrics: after "phase" k the same model classifies the
test samples of the classes seen up to k among those classes.  Nothing is forgotten: its ``forgetting_max`` is only
what a group loses when more classes compete for its images (5.7-6.0 % in the cpu CIFAR-100 10-phase cells, seeds 0-2),
and it is not a continual learner: its row in every table and plot says so (``benchmark.reports.row_label``), and its
result notes too."""
from __future__ import annotations

from avalanche.training import JointTraining
from torch.nn import CrossEntropyLoss

from benchmark.methods import CILMethod, make_suite_plugin, placeholder_optimizer, quiet_evaluator, register_method


@register_method("joint", published="", description="joint training on all classes (offline upper bound)")
class Joint(CILMethod):
    phase0_family = None
    offline = True

    def __init__(self, ctx):
        super().__init__(ctx)
        n_all = ctx.scenario.n_used_classes
        self.suite_plugin = make_suite_plugin(ctx, seen_classes=lambda k: n_all)
        self.strategy = JointTraining(model=ctx.model, optimizer=placeholder_optimizer(ctx.model),
                                      criterion=CrossEntropyLoss(), train_mb_size=ctx.recipe_for(0).batch_size,
                                      device=ctx.device, plugins=[self.suite_plugin], evaluator=quiet_evaluator())

    def train_phase(self, k, experience, epochs):
        if k > 0:
            return  # already trained on everything in phase 0
        self.suite_plugin.phase = 0
        self.strategy.train_epochs = epochs
        self.strategy.train(list(self.ctx.scenario.benchmark.train_stream), eval_streams=[])
