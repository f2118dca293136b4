"""PASS registered as a class-incremental method of the suite: Avalanche ``Naive`` with a temperature CE and the
plugins of ``strategies.pass_plugins``, and its RGAL variants (``pass+rgal``, ``pass+rgal-g``, ``pass+rgal-s``,
``pass+rgal-random``: the same method with RGAL's parts attached by ``strategies.rgal.attach.RGALMixin``).
Hyper-parameters from the official code (``main.py`` defaults): temperature 0.1, prototype-augmentation weight 10,
feature-distillation weight 10, radius from phase 0, prototype samples per step = batch size (64); the training
recipe (Adam 1e-3, wd 2e-4, batch 64, 101 epochs, StepLR(45, 0.1)) is the ``paper`` profile's.  Phase 0
(rotation-augmented CE only) is cached as family ``pass`` and shared by PASS, SSRE and their RGAL variants.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from avalanche.training import Naive

from benchmark.hparams import hp
from benchmark.models.base import load_state
from benchmark.seeds import derive_seed
from benchmark.methods import CILMethod, make_suite_plugin, placeholder_optimizer, quiet_evaluator, register_method
from strategies.pass_plugins import (FeatureCapturePlugin, FeatureDistillationPlugin, OldModelHolder,
                                     PrototypeAugmentationPlugin, PrototypeUpdatePlugin, RotationPlugin, TemperatureCE)
from strategies.prototypes import PrototypeBank
from strategies.rgal.attach import RGALMixin
from strategies.rgal.config import RGALPrototypeParams, RGALTripletParams

# Wall-time estimate only (``register_method``'s ``cost``), fitted to this suite's own CPU cells rather than counted in
# passes: the rotation makes a batch of 64 images 256 samples, which a reduced backbone trains more efficiently per
# sample than a batch of 64, so PASS's phase 0 costs 2.8 plain passes an image, not 4 (idle 2-core runs: 7.9-8.2 min
# for 50 CIFAR-100 classes, the cpu profile's 3 rotated epochs).  Later phases: fitted to the idle 5- and 20-phase
# cells of results/cil-pass-family-cpu; ``python benchmarks/check_estimates.py results/cil-pass-family-cpu`` prints
# the refit over all its cells (pass 2.5, pass+rgal 5.7, pass+rgal-g 2.5, ssre 0.6, ssre+rgal 1.6; some 10-phase
# cells shared the cores).
PASS_PHASE0_COST = 2.8


@dataclass(frozen=True)
class PASSParams:
    """PASS's loss: CE(logits / T, 4y + k) + proto_weight * L_proto + kd_weight * L_kd (PASS Eq. 6, ``main.py``)."""

    temperature: float = hp(0.1, "softmax temperature of the CE and of the prototype loss", "PASS main.py --temp 0.1")
    proto_weight: float = hp(10.0, "weight of the prototype-augmentation loss", "PASS main.py --protoAug_weight 10")
    kd_weight: float = hp(10.0, "weight of the feature-distillation loss", "PASS main.py --kd_weight 10")
    proto_samples: int | None = hp(None, "prototype samples per step (null: the batch size, as the official code)",
                                   "PASS PASS.py: as many as the batch")
    recompute_radius: bool = hp(False, "recompute the radius after every phase (official: from phase 0 only)",
                                "PASS PASS.py protoSave: radius only when current_task == 0")


@register_method("pass", published="PASS", params=PASSParams, recipe_group="pass", cost=(PASS_PHASE0_COST, 2.5),
                 description="PASS: rotation labels, prototype augmentation, feature distillation (official code)")
class PASS(RGALMixin, CILMethod):
    phase0_family = "pass"
    # PASS's phase 0 is CE(logits / T, 4y + k): another temperature trains another phase-0 model
    phase0_params = {"temperature": PASSParams.temperature}
    outputs_per_class = 4

    def __init__(self, ctx):
        super().__init__(ctx)
        prm, net, sc = ctx.params, ctx.model, ctx.scenario
        batch = ctx.recipe_for(1).batch_size
        self.bank = PrototypeBank(recompute_radius=prm["recompute_radius"], noise=True)
        self.old = OldModelHolder()
        self.capture = FeatureCapturePlugin(net.backbone)
        self.proto_gen = torch.Generator()
        self.proto_aug = PrototypeAugmentationPlugin(self.bank, net.head, prm["proto_weight"], prm["temperature"],
                                                     prm["proto_samples"] or batch, generator=self.proto_gen)
        self.kd = FeatureDistillationPlugin(self.capture, self.old, prm["kd_weight"])
        self.suite_plugin = make_suite_plugin(ctx, seen_classes=lambda k: 4 * sc.seen_after(k))
        self.suite_plugin.generators["prototypes"] = self.proto_gen
        update = PrototypeUpdatePlugin(self.bank, self.old, net, ctx.recipe_for(0).batch_size, sc.spec.augment,
                                       lambda: derive_seed(ctx.seed, "prototype_features", self.suite_plugin.phase),
                                       ctx.device)
        self.strategy = Naive(model=net, optimizer=placeholder_optimizer(net),
                              criterion=TemperatureCE(prm["temperature"]), train_mb_size=batch, device=ctx.device,
                              plugins=[RotationPlugin(), self.capture, self.proto_aug, self.kd, update,
                                       *self.attach_rgal(prm), self.suite_plugin], evaluator=quiet_evaluator())

    def train_phase(self, k, experience, epochs):
        self.proto_gen.manual_seed(derive_seed(self.ctx.seed, "prototype_noise", k))
        self.seed_rgal(k)
        super().train_phase(k, experience, epochs)

    def scores(self, x):
        return {self.name: self.model(x)[:, ::4]}

    def extra_results(self):
        return self.rgal_results()

    def state_dict(self):
        st = {"bank": self.bank.state_dict(),
              "old_model": None if self.old.model is None else self.old.model.state_dict()}
        return {**st, **self.rgal_state()} if self.use_g or self.use_s else st

    def load_state_dict(self, st):
        self.bank.load_state_dict(st["bank"])
        if st["old_model"] is not None:
            self.old.update(self.model)
            load_state(self.old.model, st["old_model"])
        self.load_rgal_state(st)


_WITH_RGAL = (PASSParams, RGALPrototypeParams, RGALTripletParams)


@register_method("pass+rgal", published="PASS+RGAL", params=_WITH_RGAL, recipe_group="pass",
                 cost=(PASS_PHASE0_COST, 5.4), rgal_baseline="pass",
                 description="PASS + RGAL: prototype optimisation (L'_g) and triplet loss with paired sampling (L'_s)")
class PASSRGAL(PASS):
    use_g = use_s = True


@register_method("pass+rgal-g", published="PASS+RGAL L'_g only", params=(PASSParams, RGALPrototypeParams),
                 recipe_group="pass", cost=(PASS_PHASE0_COST, 2.5), rgal_baseline="pass",
                 description="PASS + RGAL prototype optimisation only (L'_g; Tables 16-17 ablation)")
class PASSRGALG(PASS):
    use_g = True


@register_method("pass+rgal-s", params=(PASSParams, RGALTripletParams), recipe_group="pass",
                 cost=(PASS_PHASE0_COST, 5.4), rgal_baseline="pass",
                 description="PASS + RGAL triplet loss with paired sampling only (L'_s; ablation, not published)")
class PASSRGALS(PASS):
    use_s = True


@register_method("pass+rgal-random", params=_WITH_RGAL,
                 defaults={"rgal_sampler": "random", "triplet_sampler": "random"}, recipe_group="pass",
                 cost=(PASS_PHASE0_COST, 5.4), rgal_baseline="pass",
                 description="PASS + RGAL with uniform negative sampling in L'_g and L'_s (sampler ablation)")
class PASSRGALRandom(PASS):
    use_g = use_s = True
