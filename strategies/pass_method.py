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

from benchmark.errors import BenchError
from benchmark.models.base import load_state
from benchmark.seeds import derive_seed
from benchmark.methods import CILMethod, make_suite_plugin, placeholder_optimizer, quiet_evaluator, register_method
from strategies.pass_plugins import (FeatureCapturePlugin, FeatureDistillationPlugin, OldModelHolder,
                                     PrototypeAugmentationPlugin, PrototypeUpdatePlugin, RotationPlugin, TemperatureCE)
from strategies.prototypes import PrototypeBank

# Wall-time estimate only (``register_method``'s ``cost``), fitted to this suite's own CPU cells rather than counted in
# passes: the rotation makes a batch of 64 images 256 samples, which a reduced backbone trains more efficiently per
# sample than a batch of 64, so PASS's phase 0 costs 2.8 plain passes an image, not 4 (idle 2-core runs: 7.9-8.2 min
# for 50 CIFAR-100 classes, the cpu profile's 3 rotated epochs).  Later phases: fitted to the idle 5- and 20-phase
# cells of results/cil-pass-family-cpu; ``python benchmarks/check_estimates.py results/cil-pass-family-cpu`` prints
# the refit over all its cells (pass 2.5, pass+rgal 5.7, pass+rgal-g 2.5, ssre 0.6, ssre+rgal 1.6; some 10-phase
# cells shared the cores).
PASS_PHASE0_COST = 2.8

PASS_DEFAULTS = {"temperature": 0.1, "proto_weight": 10.0, "kd_weight": 10.0, "proto_samples": None,
                 "recompute_radius": False}


@register_method("pass", published="PASS", defaults=PASS_DEFAULTS, recipe_group="pass", cost=(PASS_PHASE0_COST, 2.5),
                 description="PASS: rotation labels, prototype augmentation, feature distillation (official code)")
class PASS(CILMethod):
    phase0_family = "pass"
    # PASS's phase 0 is CE(logits / T, 4y + k): another temperature trains another phase-0 model
    phase0_params = {"temperature": PASS_DEFAULTS["temperature"]}
    outputs_per_class = 4

    def __init__(self, ctx, extra_plugins=()):
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
        update = PrototypeUpdatePlugin(self.bank, self.old, net, ctx.recipe_for(0).batch_size, sc.spec.augment,
                                       lambda: derive_seed(ctx.seed, "prototype_features", self.suite_plugin.phase),
                                       ctx.device)
        self.strategy = Naive(model=net, optimizer=placeholder_optimizer(net),
                              criterion=TemperatureCE(prm["temperature"]), train_mb_size=batch, device=ctx.device,
                              plugins=[RotationPlugin(), self.capture, self.proto_aug, self.kd, *extra_plugins,
                                       update, self.suite_plugin], evaluator=quiet_evaluator())

        self.suite_plugin.generators["prototypes"] = self.proto_gen

    def train_phase(self, k, experience, epochs):
        self.proto_gen.manual_seed(derive_seed(self.ctx.seed, "prototype_noise", k))
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
            load_state(self.old.model, st["old_model"])


RGAL_G_DEFAULTS = {"rgal_steps": 10, "rgal_lr": 1e-3, "rgal_optimizer": "adam", "rgal_adv": 1.0, "rgal_ntri": 1.0,
                   "rgal_oh": 1.0, "rgal_sampler": "focal", "rgal_focal_lower": 0.5, "rgal_focal_upper": 1.0,
                   # added in session 6 (key-neutral: cells at these defaults keep their keys)
                   "rgal_schedule": "step", "rgal_pool_per_class": 20, "rgal_margin": 0.2, "rgal_squared": False,
                   "rgal_sample_on": "logits", "rgal_distance_cutoff": 0.5, "rgal_nonzero_cutoff": 1.4}
RGAL_S_DEFAULTS = {"triplet_weight": 0.1, "triplet_margin": 0.2, "triplet_squared": False,
                   "triplet_sampler": "distance", "triplet_embedding": "feature", "triplet_sample_on": "logits",
                   "triplet_rotated_as_classes": False, "triplet_prototypes_as_negatives": False,
                   "paired_positive": "class", "paired_anchor_fraction": 1.0,
                   # added in session 6 (key-neutral)
                   "triplet_distance_cutoff": 0.5, "triplet_nonzero_cutoff": 1.4, "triplet_focal_lower": 0.5,
                   "triplet_focal_upper": 1.0}
RGAL_KEY_NEUTRAL = ("rgal_schedule", "rgal_pool_per_class", "rgal_margin", "rgal_squared", "rgal_sample_on",
                    "rgal_distance_cutoff", "rgal_nonzero_cutoff", "triplet_distance_cutoff", "triplet_nonzero_cutoff",
                    "triplet_focal_lower", "triplet_focal_upper")

RGAL_CHOICES = {"rgal_optimizer": ("adam", "sgd"), "rgal_sampler": ("focal", "distance", "random"),
                "rgal_schedule": ("step", "phase", "epoch"), "rgal_sample_on": ("logits", "embedding"),
                "triplet_sampler": ("distance", "focal", "random"), "triplet_embedding": ("feature", "logits", "both"),
                "triplet_sample_on": ("logits", "embedding"), "paired_positive": ("class", "image")}


def _applies(prm: dict, name: str, applies: bool, when: str) -> None:
    """A parameter set away from its default where it has no effect would only make a new cell with the default's
    numbers: one-line error instead."""
    default = {**RGAL_G_DEFAULTS, **RGAL_S_DEFAULTS}[name]
    if not applies and prm[name] != default:
        raise BenchError(f"{name}={prm[name]} has no effect here: it applies only {when}")


def _applies_sampler(prm: dict, prefix: str) -> None:
    sampler = prm[f"{prefix}_sampler"]
    for name in ("focal_lower", "focal_upper"):
        _applies(prm, f"{prefix}_{name}", sampler == "focal", f"with {prefix}_sampler focal")
    for name in ("distance_cutoff", "nonzero_cutoff"):
        _applies(prm, f"{prefix}_{name}", sampler == "distance", f"with {prefix}_sampler distance")
    _applies(prm, f"{prefix}_sample_on", sampler != "random", f"with {prefix}_sampler focal or distance (random "
             "negatives ignore distances)")


def _applies_triplet(prm: dict, prefix: str, weight: str, names: tuple[str, ...]) -> None:
    """With the triplet term's weight at 0 its form and its sampler's settings shape nothing (the sampler itself is
    left alone: it names a method, e.g. ``pass+rgal-random``)."""
    for name in names + ("margin", "squared", "sample_on", "focal_lower", "focal_upper",
                         "distance_cutoff", "nonzero_cutoff"):
        _applies(prm, f"{prefix}_{name}", prm[weight] != 0, f"with {weight} != 0")


def check_rgal_g(prm: dict) -> None:
    """L'_g's parameters that would not act (one-line errors)."""
    _applies(prm, "rgal_pool_per_class", prm["rgal_schedule"] != "step", "with rgal_schedule phase or epoch")
    _applies_triplet(prm, "rgal", "rgal_ntri", ())
    _applies_sampler(prm, "rgal")


def check_rgal_s(prm: dict, stride: int) -> None:
    """L'_s's parameters that would not act (``stride`` 1: batches without rotations, e.g. SSRE's later phases)."""
    _applies(prm, "triplet_rotated_as_classes", stride > 1, "to rotated batches (PASS's)")
    _applies_triplet(prm, "triplet", "triplet_weight", ("embedding", "rotated_as_classes", "prototypes_as_negatives"))
    _applies_sampler(prm, "triplet")


def sampler_kw(prm: dict, prefix: str, sampler: str) -> dict:
    """The negative sampler's window from a method's parameters: focal ``(lower, upper)`` on the normalised
    distance, distance-weighted ``(cutoff, nonzero_loss_cutoff)``; the random sampler has none."""
    if sampler == "focal":
        return {"lower": prm[f"{prefix}_focal_lower"], "upper": prm[f"{prefix}_focal_upper"]}
    if sampler == "distance":
        return {"cutoff": prm[f"{prefix}_distance_cutoff"], "nonzero_loss_cutoff": prm[f"{prefix}_nonzero_cutoff"]}
    return {}


def add_rgal_g(method: PASS, prm: dict, label_scale: int = 4):
    """RGAL L'_g: the prototype samples are optimised before the prototype loss (every step's draw, or a pool built
    before each phase / epoch: ``rgal_schedule``)."""
    check_rgal_g(prm)
    from strategies.rgal.prototype_optimization import PrototypeOptimizationPlugin

    method.rgal_gen = torch.Generator()
    method.suite_plugin.generators["rgal_g"] = method.rgal_gen
    kw = {"sampler_kw": sampler_kw(prm, "rgal", prm["rgal_sampler"]), "margin": prm["rgal_margin"],
          "squared": prm["rgal_squared"]}
    if prm["rgal_pool_per_class"] < 1:
        raise BenchError(f"rgal_pool_per_class must be at least 1, not {prm['rgal_pool_per_class']}")
    method.rgal_g = PrototypeOptimizationPlugin(
        method.bank, method.old, lambda e: method.model.head(e), label_scale=label_scale,
        schedule=prm["rgal_schedule"], pool_per_class=prm["rgal_pool_per_class"], seed=method.ctx.seed,
        epoch_fn=lambda: method.suite_plugin.epoch, steps=prm["rgal_steps"], lr=prm["rgal_lr"],
        optimizer=prm["rgal_optimizer"], w_adv=prm["rgal_adv"], w_ntri=prm["rgal_ntri"], w_oh=prm["rgal_oh"],
        sampler=prm["rgal_sampler"], generator=method.rgal_gen, triplet_kw=kw, sample_on=prm["rgal_sample_on"])
    method.suite_plugin.stateful["rgal_g"] = method.rgal_g
    return method.rgal_g


def add_rgal_s(method: PASS, prm: dict, stride: int = 4, label_scale: int = 4):
    """RGAL L'_s: ``weight * L_tri`` on the unrotated embeddings of paired-sampled batches."""
    check_rgal_s(prm, stride)
    from strategies.rgal.paired_sampling import PairedSamplingPlugin
    from strategies.rgal.triplet_plugin import TripletLossPlugin

    method.triplet_gen = torch.Generator()
    method.suite_plugin.generators["rgal_s"] = method.triplet_gen
    method.rgal_s = TripletLossPlugin(
        method.capture, weight=prm["triplet_weight"], stride=stride, label_scale=label_scale,
        rotated_as_classes=prm["triplet_rotated_as_classes"], embedding=prm["triplet_embedding"],
        sample_on=prm["triplet_sample_on"], sampler=prm["triplet_sampler"], margin=prm["triplet_margin"],
        squared=prm["triplet_squared"], head=lambda e: method.model.head(e), bank=method.bank,
        prototypes_as_negatives=prm["triplet_prototypes_as_negatives"], generator=method.triplet_gen,
        sampler_kw=sampler_kw(prm, "triplet", prm["triplet_sampler"]))
    return [method.rgal_s, PairedSamplingPlugin(prm["paired_positive"], anchor_fraction=prm["paired_anchor_fraction"])]


class PASSWithRGAL(PASS):
    """PASS plus either or both RGAL plugins (``use_g``, ``use_s``)."""

    use_g = use_s = True

    def __init__(self, ctx):
        super().__init__(ctx)
        from benchmark.methods import put_last

        prm = ctx.params
        if self.use_g:
            self.strategy.plugins.append(add_rgal_g(self, prm))
        if self.use_s:
            self.strategy.plugins.extend(add_rgal_s(self, prm))
        put_last(self.strategy, self.suite_plugin)

    def train_phase(self, k, experience, epochs):
        if self.use_g:
            self.rgal_gen.manual_seed(derive_seed(self.ctx.seed, "rgal_prototypes", k))
        if self.use_s:
            self.triplet_gen.manual_seed(derive_seed(self.ctx.seed, "rgal_triplets", k))
        super().train_phase(k, experience, epochs)

    def extra_results(self):
        return {"prototype_movement_per_phase": list(self.rgal_g.movement)} if self.use_g else {}

    def state_dict(self):
        return {**super().state_dict(), "movement": list(self.rgal_g.movement) if self.use_g else []}

    def load_state_dict(self, st):
        super().load_state_dict(st)
        if self.use_g:
            self.rgal_g.movement = list(st["movement"])


@register_method("pass+rgal", published="PASS+RGAL", defaults={**PASS_DEFAULTS, **RGAL_G_DEFAULTS, **RGAL_S_DEFAULTS},
                 recipe_group="pass", cost=(PASS_PHASE0_COST, 5.4), choices=RGAL_CHOICES, key_neutral=RGAL_KEY_NEUTRAL,
                 description="PASS + RGAL: prototype optimisation (L'_g) and triplet loss with paired sampling (L'_s)")
class PASSRGAL(PASSWithRGAL):
    pass


@register_method("pass+rgal-g", published="PASS+RGAL L'_g only", defaults={**PASS_DEFAULTS, **RGAL_G_DEFAULTS},
                 recipe_group="pass", cost=(PASS_PHASE0_COST, 2.5), choices=RGAL_CHOICES, key_neutral=RGAL_KEY_NEUTRAL,
                 description="PASS + RGAL prototype optimisation only (L'_g; Tables 16-17 ablation)")
class PASSRGALG(PASSWithRGAL):
    use_s = False


@register_method("pass+rgal-s", defaults={**PASS_DEFAULTS, **RGAL_S_DEFAULTS}, recipe_group="pass",
                 cost=(PASS_PHASE0_COST, 5.4), choices=RGAL_CHOICES, key_neutral=RGAL_KEY_NEUTRAL,
                 description="PASS + RGAL triplet loss with paired sampling only (L'_s; ablation, not published)")
class PASSRGALS(PASSWithRGAL):
    use_g = False


@register_method("pass+rgal-random", defaults={**PASS_DEFAULTS, **RGAL_G_DEFAULTS, **RGAL_S_DEFAULTS,
                                               "rgal_sampler": "random", "triplet_sampler": "random"},
                 recipe_group="pass", cost=(PASS_PHASE0_COST, 5.4), choices=RGAL_CHOICES, key_neutral=RGAL_KEY_NEUTRAL,
                 description="PASS + RGAL with uniform negative sampling in L'_g and L'_s (sampler ablation)")
class PASSRGALRandom(PASSWithRGAL):
    pass
