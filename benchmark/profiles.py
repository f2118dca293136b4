"""Profiles: the training recipe shared by every class-incremental method of a profile (same backbone and
schedule for every row of a table), and what each profile shrinks relative to ``paper``.

``paper`` is the official PASS recipe (``main.py`` defaults: ResNet-18, Adam lr 1e-3, weight decay 2e-4, batch 64,
101 epochs in every phase, StepLR(45, 0.1)), applied to every method so that rows are comparable, except where a
method's own official code trains otherwise and the published row comes from it: SSRE's later phases, UCIR, EEIL and
MUC (each on its own SGD recipe, ``group_recipes``); LwM has no official code (FACIL's validation-driven schedule is
not reproduced) and keeps the shared recipe.  ``cpu`` keeps
the losses, optimiser and the shape of the schedule (one decay by 10 at 45 % of the epochs) and shrinks the
backbone and the epochs to fit CONVENTIONS.md's budget (one CIFAR-100 10-phase cell <= 45 min on 2 cores).  Measured
here (``python benchmarks/throughput.py``: side-by-side runs, batch 64, channels_last): ResNet-20 about 430 training
images/s, reduced ResNet-18 210-260 (two runs), so ResNet-20 buys 1.6-2x the epochs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from benchmark.registry import Registry
from benchmark.training import PhaseRecipe

PROFILES = Registry("profile")


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    base: PhaseRecipe  # phase 0
    inc: PhaseRecipe  # phases 1..T
    gap_to_paper: str
    # method -> hyper-parameters that differ in this profile; "*" -> for every method that has them
    method_params: dict = field(default_factory=dict)
    # recipe group (a method's ``recipe_group``, e.g. "pass", "ssre") -> {"base": PhaseRecipe, "inc": PhaseRecipe}
    # for method families whose official recipe differs from the shared one (SSRE's later phases) or whose cost per
    # epoch does (PASS's rotation makes every image four samples)
    group_recipes: dict = field(default_factory=dict)
    # (training, test) images kept of each class (the first ones in stored order), None: all.  mini trains on what
    # the embedded cifar100-mini holds (20 / 5) on any scenario; smoke on 5 / 2, so that a smoke run of a large
    # scenario takes a minute or two (10-phase Tiny-ImageNet: finetune 54 s, pass 157 s; on every image 18.7 and
    # ~41 min: 64x64 images train at ~45 images/s on 2 cores); --per-class overrides it
    per_class: tuple | None = None

    def recipe_for(self, phase: int) -> PhaseRecipe:
        return self.base if phase == 0 else self.inc

    def recipes(self, group: str | None = None) -> tuple[PhaseRecipe, PhaseRecipe]:
        """(phase-0 recipe, later-phase recipe) of a method's recipe group (the shared one if it has none)."""
        g = self.group_recipes.get(group, {}) if group else {}
        return g.get("base", self.base), g.get("inc", self.inc)

    def with_overrides(self, epochs=None, batch_size=None, lr=None, inc_epochs=None, precision=None) -> "Profile":
        """The profile with CLI overrides applied.  ``epochs`` sets every phase's epochs; ``inc_epochs`` sets the
        later phases' (over ``epochs``) and leaves phase 0 alone, so the cached phase-0 model is reused.  The schedule
        keeps its shape: step sizes and milestones scale with the epochs.  ``precision`` is the resolved one
        (``benchmark.precision.resolve_precision``) and sets every recipe's, the profile's own included."""
        def ov(r: PhaseRecipe, ep) -> PhaseRecipe:
            kw = {}
            if ep is not None:
                kw["epochs"] = ep
                kw["lr_step"] = max(1, round(r.lr_step * ep / r.epochs)) if r.lr_step else 0
                kw["lr_milestones"] = tuple(sorted({max(1, round(m * ep / r.epochs)) for m in r.lr_milestones}))
            if batch_size is not None:
                kw["batch_size"] = batch_size
            if lr is not None:
                kw["lr"] = lr
            if precision is not None:
                kw["precision"] = precision
            return replace(r, **kw)

        later = epochs if inc_epochs is None else inc_epochs
        groups = {g: {k: ov(r, later if k == "inc" else epochs) for k, r in rs.items()}
                  for g, rs in self.group_recipes.items()}
        return replace(self, base=ov(self.base, epochs), inc=ov(self.inc, later), group_recipes=groups)

    def as_dict(self) -> dict:
        return {"model": self.model, "base": self.base.as_dict(), "inc": self.inc.as_dict()}


def _adam(epochs, batch, step, channels_last, lr=1e-3, wd=2e-4):
    return PhaseRecipe(epochs=epochs, lr=lr, optimizer="adam", weight_decay=wd, batch_size=batch, lr_step=step,
                       channels_last=channels_last)


def _sgd(epochs, batch, wd, milestones=(), step=0):
    return PhaseRecipe(epochs=epochs, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=wd, batch_size=batch,
                       lr_step=step, lr_milestones=tuple(milestones))


# The exemplar / side-classifier baselines (UCIR, MUC, EEIL) in ``paper``: each method's own official recipe (every
# phase).
_UCIR_PAPER = _sgd(160, 128, 5e-4, (80, 120))  # LUCIR class_incremental_cosine_cifar100.py
_MUC_PAPER = _sgd(200, 128, 5e-4, (120, 160, 180))  # MUC cifar100_MUC_LwF.py (epochs hard-coded to 200)
_EEIL_PAPER = _sgd(40, 128, 1e-4, step=10)  # EEIL experiment_cifar.m: 0.1 / 0.01 / 0.001 / 0.0001, 10 epochs each


def _ssre_inc(epochs, batch, step, channels_last):
    """SSRE's later phases (official script): Adam lr 2e-4, weight decay 5e-4, batch 128, StepLR(45) of 60 epochs."""
    return _adam(epochs, batch, step, channels_last, lr=2e-4, wd=5e-4)


# cpu profile, PASS family: rotation turns every image into 4 samples (an epoch costs 4 plain epochs), so phase 0
# gets 3 rotated epochs (decay after 2).  Later phases: 5 epochs at batch 16 (official: 64) with the decay before the
# last one.  Why (measured on phase 1 of CIFAR-100/10 from the cached phase 0, ``python
# benchmarks/new_class_diagnostic.py --method pass --batch-size B --epochs E --lr-step S``): PASS's new-class CE
# competes with 10 x prototype CE + 10 x the un-averaged feature distance, and it needs optimiser *steps* to win.
# With 4 epochs at batch 64 decayed after 2 (the 45 % shape) the new groups' accuracy right after their phase was
# 0.00 at every phase; with 5 epochs at batch 64 seed-0 PASS had new_accuracy 2.4 % over 10 phases.  Side by side:
# acc[1][0] / acc[1][1] / seconds = 0.287 / 0.142 / 166 (batch 32, 5 epochs), 0.275 / 0.230 / 280 (batch 32, 8
# epochs), 0.277 / 0.196 / 162 (batch 16, 5 epochs): an epoch costs the same at batch 16 and 32 on this CPU, so
# batch 16 buys 4x the official steps per epoch (5 epochs x 4 = 1/5 of the official 101 x 1 steps) for free.  Budget
# (45 min a cell, phase 0 included): ~620 s phase 0 + 9 x ~165 s.
# RGAL's paired sampling would double an epoch; the cpu profile draws half of the samples as anchors
# (``paired_anchor_fraction`` 0.5, for every method with paired sampling), so PASS+RGAL trains on PASS's compute
# (the paper profile keeps the released code's every-sample-an-anchor epoch).
# SSRE's later phases train without rotation, only adapters and classifier, at lr 2e-4 (official: 60 epochs at batch
# 128, decay after 45).  SSRE's CE is weighted by 1 - max cos(f, old prototypes), ~0.05 with ResNet-20's dense 64-d
# features after a short phase 0 (measured 0.048), so it needs many steps: acc[1][1] was 0.018 after 25 epochs at
# batch 128; at batch 32 (``--method ssre --batch-size 32 --epochs 20 --lr-step 15``) it is 0.00 / 0.08 / 0.13 /
# 0.144 after 5 / 10 / 13 / 15 epochs and flat after the decay (0.148 after 20), 13 s an epoch, acc[1][0] steady at
# 0.29-0.30 (only the adapters move).  So: 16 epochs at batch 32, decay before the last (~205 s a phase).
_CPU_PASS_BASE = _adam(3, 64, 2, True)


for _p in [
    Profile("paper", "resnet18", _adam(101, 64, 45, False), _adam(101, 64, 45, False),
            "none: published PASS recipe (ResNet-18, 101 epochs per phase, batch 64); UCIR, EEIL and MUC on their "
            "own official recipes (SGD 0.1); for GPUs",
            method_params={"eeil": {"bft_epochs": 30, "bft_lr_factor": 0.1, "bft_lr_step": 10}},
            group_recipes={"ssre": {"inc": _ssre_inc(60, 128, 45, False)},
                           "ucir": {"base": _UCIR_PAPER, "inc": _UCIR_PAPER},
                           "muc": {"base": _MUC_PAPER, "inc": _MUC_PAPER},
                           "eeil": {"base": _EEIL_PAPER, "inc": _EEIL_PAPER}}),
    Profile("cpu", "resnet20", _adam(20, 64, 9, True), _adam(8, 64, 4, True),
            "CIFAR ResNet-20 (64-d embedding, channels_last) instead of ResNet-18 (1.6-2x the throughput of a "
            "reduced ResNet-18 here); 20 epochs in phase 0 and 8 in later phases instead of 101 (one StepLR decay "
            "at 45 % of the epochs kept); PASS family (rotation: 4 samples per image): 3 epochs in phase 0 (decay "
            "after 2), 5 later at batch 16 (decay after 4) instead of 101 at batch 64, so 16 prototype samples a step "
            "instead of 64 (official: as many as the batch), RGAL's paired epochs draw half of the samples as "
            "anchors (PASS's compute); SSRE's later phases 16 epochs at batch 32 (decay after 15, 32 prototypes a "
            "step) instead of 60 at batch 128; UCIR, EEIL, "
            "MUC on the shared Adam recipe instead of their own SGD ones; EEIL's balanced "
            "fine-tuning 4 epochs at 0.1 of the learning rate instead of 30 (official); MUC's side classifiers "
            "trained on the features of 2 augmented "
            "views instead of fresh augmentation in each of their 80 epochs",
            method_params={"eeil": {"bft_epochs": 4, "bft_lr_factor": 0.1}, "muc": {"stage3_views": 2},
                           "*": {"paired_anchor_fraction": 0.5}},
            group_recipes={"pass": {"base": _CPU_PASS_BASE, "inc": _adam(5, 16, 4, True)},
                           "ssre": {"base": _CPU_PASS_BASE, "inc": _ssre_inc(16, 32, 15, True)}}),
    Profile("mini", "resnet20", _adam(3, 32, 0, True), _adam(1, 32, 0, True),
            "embedded demo: ResNet-20, 3 epochs in phase 0 and 1 later, batch 32, on 20 training and 5 test images "
            "per class (all of the embedded cifar100-mini, the first ones of a larger scenario): a pipeline demo, "
            "accuracies far below any published number; exemplar methods (iCaRL, UCIR, EEIL) "
            "keep 2 exemplars per class, the same 4 % of a class's training images as 20 of CIFAR-100's 500",
            method_params={"icarl": {"memory_per_class": 2}, "ucir": {"memory_per_class": 2},
                           "eeil": {"memory_per_class": 2, "bft_epochs": 1},
                           "muc": {"stage3_epochs": 8, "stage3_views": 1}},
            group_recipes={"ssre": {"inc": _ssre_inc(1, 32, 0, True)}}, per_class=(20, 5)),
    Profile("smoke", "resnet20", _adam(1, 32, 0, False), _adam(1, 32, 0, False),
            "tests only: ResNet-20, one epoch per phase, on at most 5 training and 2 test images per class (the "
            "first ones; --per-class all keeps every image)",
            method_params={"eeil": {"bft_epochs": 1}, "muc": {"stage3_epochs": 2, "stage3_views": 1}},
            group_recipes={"ssre": {"inc": _ssre_inc(1, 32, 0, False)}}, per_class=(5, 2)),
]:
    PROFILES.register(_p.name, _p, description=_p.gap_to_paper)
