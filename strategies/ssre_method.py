"""SSRE (Zhu et al., CVPR 2022) registered as a class-incremental method: Avalanche ``Naive`` with the plugins of
``strategies.ssre_plugins`` and ``strategies.pass_plugins``, and ``ssre+rgal`` with RGAL's two plugins.

* Phase 0 is PASS's (rotation-augmented ``CE(logits / 0.1, 4y + k)``), loaded from the shared ``pass`` phase-0
  cache: the official SSRE code loads a released base checkpoint and the SSRE authors train their base as PASS.
* After phase 0 the network is re-parameterised (BatchNorm folded, zero 1x1 adapters beside every residual 3x3
  convolution, the classifier's unrotated rows ``::4`` kept); later phases train without rotation, only adapters and
  the whole classifier (official ``fix_backbone_adapter``), with
  ``mean(CE(logits / 0.1, y) * (1 - s)) + sum_i s_i ||f_i - f_old_i|| + 10 * CE(fc(proto) / 0.1, c)``, 128 (batch
  size) prototypes a step drawn uniformly from the old classes without noise; adapters merged after each phase.
* The ``paper`` recipe of later phases is the official script's: Adam lr 2e-4, weight decay 5e-4, batch 128, 60
  epochs, StepLR(45, 0.1) (profile group ``ssre``).
* Prototypes: PASS's ``protoSave`` (class means over the augmented training loader in eval mode, full batches).
  The official SSRE code computes no radius; the bank still keeps PASS's phase-0 radius, used only by ``ssre+rgal``:
  as the specification specifies, SSRE+RGAL draws *augmented* prototypes ``p + N(0, I) r`` as PASS does, and optimises them
  with L'_g (``proto_noise`` is the option; SSRE alone uses the plain means).
"""
from __future__ import annotations

import torch
from avalanche.training import Naive

from dataclasses import dataclass

from benchmark.errors import BenchError
from benchmark.hparams import hp
from benchmark.models.base import load_state
from benchmark.seeds import derive_seed
from benchmark.methods import (CILMethod, make_suite_plugin, placeholder_optimizer, put_last, quiet_evaluator,
                               register_method)
from strategies.pass_method import PASS, PASS_PHASE0_COST
from strategies.pass_plugins import (FeatureCapturePlugin, OldModelHolder, PrototypeAugmentationPlugin,
                                     PrototypeUpdatePlugin, RotationPlugin)
from strategies.prototypes import PrototypeBank
from strategies.rgal.attach import RGALMixin
from strategies.rgal.config import RGALPrototypeParams, RGALTripletParams
from strategies.ssre_plugins import (PrototypeSelection, ReparamPlugin, SelectionDistillationPlugin,
                                     SelectionWeightedCE)



@dataclass(frozen=True)
class SSREParams:
    """SSRE's later-phase loss: mean(CE(logits / T, y) * (1 - s)) + kd_weight * sum_i s_i ||f_i - f_old_i||
    + proto_weight * CE(fc(proto) / T, c) (official ``utils/Trainer_cvpr.py``, the later phases' loss)."""

    temperature: float = hp(0.1, "softmax temperature of the CE and of the prototype loss",
                            "SSRE Trainer_cvpr.py: output / 0.1")
    proto_weight: float = hp(10.0, "weight of the prototype loss", "SSRE Trainer_cvpr.py: 10 * loss_protoAug")
    kd_weight: float = hp(1.0, "weight of the selective feature distillation", "SSRE Trainer_cvpr.py: + loss_kd")
    proto_samples: int | None = hp(None, "prototype samples per step (null: the batch size, as the official code)",
                                   "SSRE Trainer_cvpr.py: range(batch_size)")
    proto_noise: bool = hp(False, "draw prototypes with PASS's noise p + N(0, I) r (official SSRE: plain means)",
                           "SSRE Trainer_cvpr.py: plain means; ssre+rgal: PASS's augmented prototypes")
    recompute_radius: bool = hp(False, "with proto_noise: recompute the radius after every phase",
                                "PASS PASS.py protoSave: radius from phase 0 only")


@register_method("ssre", published="SSRE", params=SSREParams, recipe_group="ssre", cost=(PASS_PHASE0_COST, 0.6),
                 description="SSRE: PASS phase 0, BN folding + re-parameterised adapters, prototype selection "
                             "(official code)")
class SSRE(RGALMixin, CILMethod):
    phase0_family = "pass"
    outputs_per_class = 4  # phase 0 is PASS's rotation head; cut to one row per class after it
    phase0_params = PASS.phase0_params  # SSRE's phase 0 is PASS's, at SSRE's own temperature

    def __init__(self, ctx):
        prm = ctx.params
        if prm["recompute_radius"] and not prm["proto_noise"]:
            raise BenchError("recompute_radius=true has no effect here: SSRE's prototypes carry no noise, so the "
                             "radius is used only with proto_noise=true")
        super().__init__(ctx)
        prm, net, sc = ctx.params, ctx.model, ctx.scenario
        self.bank = PrototypeBank(recompute_radius=prm["recompute_radius"], noise=prm["proto_noise"])
        self.old = OldModelHolder()
        self.capture = FeatureCapturePlugin(net.backbone)
        self.selection = PrototypeSelection(self.capture, self.bank)
        self.proto_gen = torch.Generator()
        self.proto_aug = PrototypeAugmentationPlugin(
            self.bank, lambda e: self.model.head(e), prm["proto_weight"], prm["temperature"],
            prm["proto_samples"] or ctx.recipe_for(1).batch_size, label_scale=1, generator=self.proto_gen)
        self.reparam = ReparamPlugin(net, on_convert=self._after_convert)
        self.suite_plugin = make_suite_plugin(
            ctx, seen_classes=lambda k: (1 if self.reparam.converted else 4) * sc.seen_after(k),
            params_for=lambda s: [p for p in s.model.parameters() if p.requires_grad])
        self.suite_plugin.generators["prototypes"] = self.proto_gen
        update = PrototypeUpdatePlugin(self.bank, self.old, net,
                                       lambda: ctx.recipe_for(self.suite_plugin.phase).batch_size, sc.spec.augment,
                                       lambda: derive_seed(ctx.seed, "prototype_features", self.suite_plugin.phase),
                                       ctx.device)
        rotation = RotationPlugin(active=lambda: not self.reparam.converted)
        # L'_g between the previous and the current classifier, both one row per class after phase 0
        extra = self.attach_rgal(prm, stride=1, label_scale=1)
        self.strategy = Naive(
            model=net, optimizer=placeholder_optimizer(net),
            criterion=SelectionWeightedCE(self.selection, prm["temperature"]),
            train_mb_size=ctx.recipe_for(0).batch_size, device=ctx.device,
            plugins=[rotation, self.capture, self.proto_aug,
                     SelectionDistillationPlugin(self.selection, self.capture, self.old, prm["kd_weight"]),
                     *extra, self.reparam, update, self.suite_plugin],
            evaluator=quiet_evaluator())
        put_last(self.strategy, self.suite_plugin)

    def _after_convert(self):
        self.model.to(self.ctx.device)

    def train_phase(self, k, experience, epochs):
        self.strategy.train_mb_size = self.ctx.recipe_for(k).batch_size
        self.proto_gen.manual_seed(derive_seed(self.ctx.seed, "prototype_noise", k))
        self.seed_rgal(k)
        super().train_phase(k, experience, epochs)

    def scores(self, x):
        out = self.model(x)
        return {self.name: out if self.reparam.converted else out[:, ::4]}

    def extra_results(self):
        return self.rgal_results()

    def state_dict(self):
        return {"converted": self.reparam.converted, "bank": self.bank.state_dict(),
                "old_model": None if self.old.model is None else self.old.model.state_dict(), **self.rgal_state()}

    def load_state_dict(self, st):
        """Called before the runner loads the model's weights: restores the network's structure first."""
        if st["converted"] and not self.reparam.converted:
            self.reparam.convert()
        self.bank.load_state_dict(st["bank"])
        if st["old_model"] is not None:
            self.old.update(self.model)
            load_state(self.old.model, st["old_model"])
        self.load_rgal_state(st)


@register_method("ssre+rgal", published="SSRE+RGAL", params=(SSREParams, RGALPrototypeParams, RGALTripletParams),
                 defaults={"proto_noise": True}, recipe_group="ssre", cost=(PASS_PHASE0_COST, 1.5),
                 rgal_baseline="ssre",
                 description="SSRE + RGAL: augmented prototypes optimised by L'_g, triplet loss with paired sampling")
class SSRERGAL(SSRE):
    use_g = use_s = True
