"""iCaRL's / LwF-MC's classification-and-distillation loss (Rebuffi et al. 2017, Sec. 2.2) on Avalanche's
``ICaRLLossPlugin``: sigmoid binary cross-entropy over all seen classes, where the targets of the old classes are
the previous model's sigmoid outputs.

Fix to Avalanche 0.6.0, documented because it changes numbers: its old model is a deep copy kept in train mode
(so its BatchNorm used batch statistics and drifted on every step); here the old model runs in eval mode and its
logits come from its trained classifier (for iCaRL's ``TrainEvalModel`` eval mode would otherwise switch to the
nearest-mean classifier).
"""
from __future__ import annotations


import torch
from avalanche.training.losses import ICaRLLossPlugin

from benchmark.models.base import SlicedLinear, frozen_copy


def set_active(model, n: int) -> None:
    """The copied old model keeps its classifier's ``active`` (not in state_dict): set it to the old classes."""
    for m in model.modules():
        if isinstance(m, SlicedLinear):
            m.active = n


def old_logits(model, x):
    if hasattr(model, "train_classifier"):  # avalanche TrainEvalModel
        return model.train_classifier(model.feature_extractor(x))
    return model(x)


class SuiteICaRLLoss(ICaRLLossPlugin):
    def before_forward(self, strategy, **kwargs):
        if self.old_model is not None:
            self.old_model.eval()
            with torch.no_grad():
                self.old_logits = old_logits(self.old_model, strategy.mb_x)

    def after_training_exp(self, strategy, **kwargs):
        super().after_training_exp(strategy, **kwargs)
        set_active(self.old_model, max(self.old_classes) + 1)
        self.old_model.eval()
        for p in self.old_model.parameters():
            p.requires_grad_(False)

    def state_dict(self):
        return {"old_classes": [int(c) for c in self.old_classes],
                "old_model": None if self.old_model is None else self.old_model.state_dict()}

    def load_state_dict(self, st, model):
        self.old_classes = list(st["old_classes"])
        self.old_model = None
        if st["old_model"] is not None:
            self.old_model = frozen_copy(model, st["old_model"])
            set_active(self.old_model, max(self.old_classes) + 1)
