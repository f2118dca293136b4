"""Profiles: the training recipe shared by every class-incremental method of a profile (same backbone and
schedule for every row of a table), and what each profile shrinks relative to ``paper``.

``paper`` is the official PASS recipe (``main.py`` defaults: ResNet-18, Adam lr 1e-3, weight decay 2e-4, batch 64,
101 epochs in every phase, StepLR(45, 0.1)), applied to every method so that rows are comparable.  ``cpu`` keeps
the losses, optimiser and the shape of the schedule (one decay by 10 at 45 % of the epochs) and shrinks the
backbone and the epochs to fit CONVENTIONS.md's budget (one CIFAR-100 10-phase cell <= 45 min on 2 cores).  Measured here
(``python benchmarks/throughput.py``: side-by-side runs, batch 64, channels_last): ResNet-20 about 430 training
images/s, reduced ResNet-18 210-260 (two runs), so ResNet-20 buys 1.6-2x the epochs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

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
    method_params: dict = field(default_factory=dict)  # method -> hyper-parameters that differ in this profile

    def recipe_for(self, phase: int) -> PhaseRecipe:
        return self.base if phase == 0 else self.inc

    def with_overrides(self, epochs=None, batch_size=None, lr=None) -> "Profile":
        def ov(r: PhaseRecipe) -> PhaseRecipe:
            kw = {}
            if epochs is not None:
                kw["epochs"] = epochs
                kw["lr_step"] = max(1, round(r.lr_step * epochs / r.epochs)) if r.lr_step else 0
            if batch_size is not None:
                kw["batch_size"] = batch_size
            if lr is not None:
                kw["lr"] = lr
            return replace(r, **kw)

        return replace(self, base=ov(self.base), inc=ov(self.inc))

    def as_dict(self) -> dict:
        return {"model": self.model, "base": asdict(self.base), "inc": asdict(self.inc)}


def _adam(epochs, batch, step, channels_last):
    return PhaseRecipe(epochs=epochs, lr=1e-3, optimizer="adam", weight_decay=2e-4, batch_size=batch, lr_step=step,
                       channels_last=channels_last)


for _p in [
    Profile("paper", "resnet18", _adam(101, 64, 45, False), _adam(101, 64, 45, False),
            "none: published PASS recipe (ResNet-18, 101 epochs per phase, batch 64); for GPUs"),
    Profile("cpu", "resnet20", _adam(20, 64, 9, True), _adam(8, 64, 4, True),
            "CIFAR ResNet-20 (64-d embedding, channels_last) instead of ResNet-18 (1.6-2x the throughput of a "
            "reduced ResNet-18 here); 20 epochs in phase 0 and 8 in later phases instead of 101 (one StepLR decay "
            "at 45 % of the epochs kept)"),
    Profile("mini", "resnet20", _adam(3, 32, 0, True), _adam(1, 32, 0, True),
            "embedded demo: ResNet-20, 3 epochs in phase 0 and 1 later, batch 32, on 20 training images per class "
            "(a pipeline demo: accuracies are far below any published number); iCaRL keeps 2 exemplars per class, "
            "the same 4 % of a class's training images as 20 of CIFAR-100's 500",
            method_params={"icarl": {"memory_per_class": 2}}),
    Profile("smoke", "resnet20", _adam(1, 32, 0, False), _adam(1, 32, 0, False),
            "tests only: ResNet-20, one epoch per phase"),
]:
    PROFILES.register(_p.name, _p, description=_p.gap_to_paper)
