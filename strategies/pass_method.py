"""PASS registered as a class-incremental method of the suite: Avalanche ``Naive`` with a temperature CE and the
plugins of ``strategies.pass_plugins``.  Hyper-parameters from the official code (``main.py`` defaults): temperature
0.1, prototype-augmentation weight 10, feature-distillation weight 10, radius from phase 0, prototype samples per
step = batch size (64); the training recipe (Adam 1e-3, wd 2e-4, batch 64, 101 epochs, StepLR(45, 0.1)) is the
``paper`` profile's.  Phase 0 (rotation-augmented CE only) is cached as family ``pass`` and shared by PASS, SSRE and
their RGAL variants.
"""
from __future__ import annotations

import torch
from avalanche.training import Naive

from benchmark.methods import CILMethod, make_suite_plugin, placeholder_optimizer, quiet_evaluator, register_method
from strategies.pass_plugins import (FeatureCapturePlugin, FeatureDistillationPlugin, OldModelHolder,
                                     PrototypeAugmentationPlugin, PrototypeUpdatePlugin, RotationPlugin, TemperatureCE)
from strategies.prototypes import PrototypeBank

PASS_DEFAULTS = {"temperature": 0.1, "proto_weight": 10.0, "kd_weight": 10.0, "proto_samples": None,
                 "recompute_radius": False}


@register_method("pass", published="PASS", defaults=PASS_DEFAULTS,
                 description="PASS: rotation labels, prototype augmentation, feature distillation (official code)")
class PASS(CILMethod):
    phase0_family = "pass"
    outputs_per_class = 4

    def __init__(self, ctx, extra_plugins=()):
        super().__init__(ctx)
        prm, net, sc = ctx.params, ctx.model, ctx.scenario
        batch = ctx.recipe_for(1).batch_size
        self.bank = PrototypeBank(recompute_radius=prm["recompute_radius"])
        self.old = OldModelHolder()
        self.capture = FeatureCapturePlugin(net.backbone)
        self.proto_gen = torch.Generator()
        self.proto_aug = PrototypeAugmentationPlugin(self.bank, net.head, prm["proto_weight"], prm["temperature"],
                                                     prm["proto_samples"] or batch, generator=self.proto_gen)
        self.kd = FeatureDistillationPlugin(self.capture, self.old, prm["kd_weight"])
        self.suite_plugin = make_suite_plugin(ctx, seen_classes=lambda k: 4 * sc.seen_after(k))
        update = PrototypeUpdatePlugin(self.bank, self.old, net, ctx.recipe_for(0).batch_size, sc.spec.augment,
                                       lambda: ctx.seed * 1000 + self.suite_plugin.phase + 500, ctx.device)
        self.strategy = Naive(model=net, optimizer=placeholder_optimizer(net), criterion=TemperatureCE(prm["temperature"]),
                              train_mb_size=batch, device=ctx.device,
                              plugins=[RotationPlugin(), self.capture, self.proto_aug, self.kd, *extra_plugins,
                                       update, self.suite_plugin], evaluator=quiet_evaluator())

    def train_phase(self, k, experience, epochs):
        self.proto_gen.manual_seed(self.ctx.seed * 1000 + k + 700)
        super().train_phase(k, experience, epochs)

    def scores(self, x):
        return {self.name: self.model(x)[:, ::4]}

    def state_dict(self):
        return {"bank": self.bank.state_dict(),
                "old_model": None if self.old.model is None else self.old.model.state_dict()}

    def load_state_dict(self, st):
        self.bank.load_state_dict(st["bank"])
        if st["old_model"] is not None:
            self.old.update(self.model)
            self.old.model.load_state_dict(st["old_model"])


@register_method("pass+rgal-g", published="PASS+RGAL L'_g only",
                 defaults={**PASS_DEFAULTS, "rgal_steps": 10, "rgal_lr": 1e-3, "rgal_optimizer": "adam",
                           "rgal_adv": 1.0, "rgal_ntri": 1.0, "rgal_oh": 1.0, "rgal_sampler": "focal"},
                 description="PASS + RGAL prototype optimisation only (L'_g; Tables 16-17 ablation)")
class PASSRGALG(PASS):
    def __init__(self, ctx):
        super().__init__(ctx)
        from benchmark.methods import put_last
        from strategies.rgal.prototype_optimization import PrototypeOptimizationPlugin

        prm = ctx.params
        self.rgal_gen = torch.Generator()
        self.rgal_g = PrototypeOptimizationPlugin(
            self.proto_aug, self.old, ctx.model.head, lambda: self.bank.radius, label_scale=4,
            steps=prm["rgal_steps"], lr=prm["rgal_lr"], optimizer=prm["rgal_optimizer"], w_adv=prm["rgal_adv"],
            w_ntri=prm["rgal_ntri"], w_oh=prm["rgal_oh"], sampler=prm["rgal_sampler"], generator=self.rgal_gen)
        self.strategy.plugins.append(self.rgal_g)
        put_last(self.strategy, self.suite_plugin)

    def train_phase(self, k, experience, epochs):
        self.rgal_gen.manual_seed(self.ctx.seed * 1000 + k + 900)
        super().train_phase(k, experience, epochs)

    def extra_results(self):
        return {"prototype_movement_per_phase": list(self.rgal_g.movement)}

    def state_dict(self):
        return {**super().state_dict(), "movement": list(self.rgal_g.movement)}

    def load_state_dict(self, st):
        super().load_state_dict(st)
        self.rgal_g.movement = list(st["movement"])
