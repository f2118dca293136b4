"""iCaRL (Rebuffi et al. 2017) with Avalanche's ``ICaRL`` strategy: herding exemplar selection, sigmoid BCE with
old-model targets (``baselines.icarl_loss``), nearest-mean-of-exemplars classification.

Memory per CONVENTIONS.md: 20 exemplars per class, growing with the classes (``fixed_memory=False``); with
``memory_total`` set, a fixed budget divided among the seen classes.  One training gives two rows: ``icarl-cnn``
(the network's classifier) and ``icarl-ncm`` (Avalanche's nearest-mean classifier over L2-normalised embeddings
of the exemplars and their flips).
"""
from __future__ import annotations

import torch
from avalanche.training import ICaRL as AvalancheICaRL
from avalanche.training.losses import ICaRLLossPlugin

from baselines.icarl_loss import SuiteICaRLLoss
from benchmark.methods import (EXEMPLAR_DEFAULTS, CILMethod, ExemplarParams, exemplar_memory_note, make_suite_plugin,
                               placeholder_optimizer, put_last, quiet_evaluator, register_method)


# cost: fitted to the committed cpu cells that loaded phase 0 (benchmarks/check_estimates.py, 3 cells)
@register_method("icarl", cost=(1.0, 1.73), published={"icarl-cnn": "iCaRL-CNN", "icarl-ncm": "iCaRL-NCM"},
                 memory=exemplar_memory_note(EXEMPLAR_DEFAULTS), rows=["icarl-cnn", "icarl-ncm"],
                 params=ExemplarParams,
                 description="iCaRL (Avalanche ICaRL): herding, rows icarl-cnn and icarl-ncm")
class ICaRL(CILMethod):
    phase0_family = "bce"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.memory_note = exemplar_memory_note(ctx.params)
        total = ctx.params.get("memory_total")
        self.suite_plugin = make_suite_plugin(ctx)
        net = ctx.model
        self.strategy = AvalancheICaRL(
            feature_extractor=net.backbone, classifier=net.head, optimizer=placeholder_optimizer(net),
            memory_size=int(total or ctx.params["memory_per_class"]), buffer_transform=None, fixed_memory=bool(total),
            train_mb_size=ctx.recipe_for(0).batch_size, eval_mb_size=256, device=ctx.device,
            plugins=[self.suite_plugin], evaluator=quiet_evaluator())
        # swap Avalanche's loss plugin for the fixed one (see baselines/icarl_loss.py)
        self.loss = SuiteICaRLLoss()
        self.strategy.plugins = [self.loss if isinstance(p, ICaRLLossPlugin) else p for p in self.strategy.plugins]
        self.strategy._criterion = self.loss
        put_last(self.strategy, self.suite_plugin)
        self.icarl_plugin = next(p for p in self.strategy.plugins if type(p).__name__ == "_ICaRLPlugin")
        # Avalanche learns these sizes from the first training minibatch; a phase 0 loaded from the cache has none
        self.icarl_plugin.embedding_size = net.embed_dim
        self.icarl_plugin.output_size = net.num_classes
        self.icarl_plugin.input_size = ctx.scenario.data.x_train.shape[1:]

    def scores(self, x):
        emb = self.model.backbone(x)
        return {"icarl-cnn": self.model.head(emb), "icarl-ncm": self.strategy.model.eval_classifier(emb)}

    def state_dict(self):
        p = self.icarl_plugin
        means = p.class_means
        return {
            "loss": self.loss.state_dict(),
            "x_memory": [x.cpu() for x in p.x_memory], "y_memory": [[int(v) for v in y] for y in p.y_memory],
            "order": [o.cpu() for o in p.order], "observed_classes": [int(c) for c in p.observed_classes],
            "class_means": {int(c): m.cpu() for c, m in means.items()},
            "embedding_size": p.embedding_size, "output_size": p.output_size,
            "input_size": None if p.input_size is None else list(p.input_size),
        }

    def load_state_dict(self, st):
        dev = self.ctx.device
        self.loss.load_state_dict(st["loss"], self.strategy.model)
        p = self.icarl_plugin
        p.x_memory = [x.to(dev) for x in st["x_memory"]]
        p.y_memory = [list(y) for y in st["y_memory"]]
        p.order = list(st["order"])
        p.observed_classes = list(st["observed_classes"])
        p.class_means = {int(c): m.to(dev) for c, m in st["class_means"].items()}
        p.embedding_size, p.output_size = st["embedding_size"], st["output_size"]
        p.input_size = None if st["input_size"] is None else torch.Size(st["input_size"])
        if p.class_means:
            self.strategy.model.eval_classifier.replace_class_means_dict(p.class_means)
