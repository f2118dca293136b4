"""Profiles of the data-free distillation task: the teacher recipe, the default teacher / student pair and the
distillation schedule of every scenario, per profile (CONVENTIONS.md: ``paper``, ``cpu``, ``mini``, ``smoke``).

Sources.  ``paper``, CIFAR: the reference recipes of the specification are CMI's published scripts (zju-vipa/CMI
``scripts/*.sh``): 200 epochs of 400 student steps, synthesis batch 256, student SGD lr 0.1, momentum 0.9, weight
decay 1e-4, cosine schedule over the epochs, generator width ngf 64; the teacher as the specification states (SGD lr 0.1,
momentum 0.9, weight decay 5e-4, cosine, 200 epochs; crop + flip).  ``paper``, MNIST: DFAD's official MNIST script
(VainF/Data-Free-Adversarial-Distillation ``DFAD_mnist.py``: 40 epochs of 50 iterations, each 5 student steps and one
generator step, i.e. 250 student steps an epoch (``ep_steps``), batch 512, student SGD lr 0.01, momentum 0.9, weight
decay 1e-4, no schedule; teacher SGD lr 0.01, momentum 0.9, weight decay 1e-4,
batch 256, 10 epochs) for every method, so that the MNIST table compares methods under one schedule.

A method's own numbers of generator and student steps (``g_steps``, ``kd_steps``) and its student batch are method
hyper-parameters (``strategies/dfkd``); a profile may override them (``method_params``) where it shrinks compute.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from benchmark.errors import BenchError


@dataclass(frozen=True)
class TeacherRecipe:
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | none
    channels_last: bool = False
    max_steps_per_epoch: int = 0  # 0: whole epochs; >0 caps an epoch (smoke / mini teachers only)
    precision: str = "fp32"  # fp32 | bf16 (benchmark.precision): the resolved one

    def as_dict(self) -> dict:
        return recipe_dict(self)


@dataclass(frozen=True)
class DistillRecipe:
    epochs: int
    ep_steps: int  # student steps per epoch (CMI's ``--ep_steps``)
    synthesis_batch: int
    lr: float  # student SGD
    weight_decay: float
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine (over the epochs, CMI acbbea) | none (DFAD MNIST)
    ngf: int = 64  # generator width
    eval_every: int = 1  # epochs between test-set evaluations (always after the last)
    channels_last: bool = False
    analysis_samples: int = 256  # synthetic (and real) samples of the final diversity / t-SNE analysis
    precision: str = "fp32"  # fp32 | bf16 (benchmark.precision): the resolved one

    def as_dict(self) -> dict:
        return recipe_dict(self)


def recipe_dict(recipe) -> dict:
    """A recipe as it enters a cell's configuration (and key): ``precision`` only when not float32, so the keys of
    the cells and teachers made before the field existed stay what they were."""
    d = asdict(recipe)
    if d.get("precision") == "fp32":
        d.pop("precision")
    return d


@dataclass(frozen=True)
class DFKDProfile:
    name: str
    dataset: str
    teacher: str
    student: str
    teacher_recipe: TeacherRecipe
    distill: DistillRecipe
    gap_to_paper: str
    method_params: dict = field(default_factory=dict)  # method -> overrides of its defaults in this profile
    # method -> distillation epochs where a method's cost lets it take more (or fewer) than ``distill.epochs``
    # inside the profile's time budget (``cpu``: CONVENTIONS' 45 minutes per method); ``--epochs`` overrides all
    method_epochs: dict = field(default_factory=dict)

    def distill_for(self, method: str) -> DistillRecipe:
        """The distillation recipe of ``method``: ``distill`` with the method's own epoch count, if it has one."""
        epochs = self.method_epochs.get(method)
        return replace(self.distill, epochs=epochs) if epochs else self.distill

    def params_for(self, method: str, defaults: dict) -> dict:
        """A method's hyper-parameters under this profile: its own ``defaults`` with the profile's overrides (scope
        ``*`` for every method, then the method's own) of the keys it has."""
        params = dict(defaults)
        for scope in ("*", method):
            params.update({k: v for k, v in self.method_params.get(scope, {}).items() if k in params})
        return params

    def with_overrides(self, epochs=None, batch_size=None, lr=None, precision=None) -> "DFKDProfile":
        """``precision``: the resolved one; sets the teacher's and the distillation's."""
        kw = {k: v for k, v in (("epochs", epochs), ("lr", lr), ("precision", precision)) if v is not None}
        prof = replace(self, distill=replace(self.distill, **kw)) if kw else self
        if precision is not None:
            prof = replace(prof, teacher_recipe=replace(prof.teacher_recipe, precision=precision))
        if epochs is not None:  # the user's epoch count is every method's
            prof = replace(prof, method_epochs={})
        if batch_size is not None:  # the student batch is a method parameter
            mp = {m: dict(p) for m, p in self.method_params.items()}
            mp["*"] = {**mp.get("*", {}), "student_batch": batch_size}
            prof = replace(prof, method_params=mp)
        return prof


_CIFAR_T = TeacherRecipe(200, 0.1, 128, 5e-4)
_CIFAR_D = DistillRecipe(200, 400, 256, 0.1, 1e-4)
_MNIST_T = TeacherRecipe(10, 0.01, 256, 1e-4, schedule="none")
_MNIST_D = DistillRecipe(40, 250, 512, 0.01, 1e-4, schedule="none")  # 50 DFAD iterations x 5 student steps
# DFAD's MNIST script: nz 100 and Adam's default betas for the generator (CMI's recipe elsewhere: nz 256, (0.5, 0.999))
_DFAD_MNIST = {"nz": 100, "g_betas": [0.9, 0.999]}

_PROFILES: dict[tuple[str, str], DFKDProfile] = {}


def _add(p: DFKDProfile):
    _PROFILES[(p.name, p.dataset)] = p


for _ds in ("cifar10", "cifar100"):
    _add(DFKDProfile("paper", _ds, "wrn40_2", "wrn16_1", _CIFAR_T, _CIFAR_D,
                     "none: CMI's published recipe (200 epochs x 400 steps, synthesis batch 256, ngf 64); for GPUs"))
_add(DFKDProfile("paper", "mnist", "lenet5", "lenet5_half", _MNIST_T, _MNIST_D,
                 "none: DFAD's official MNIST recipe (40 epochs x 50 iterations of 5 student steps, batch 512, SGD "
                 "0.01) for every method; LeNet-5 has no BatchNorm, so DFQ, DeepInversion, CMI and RGAL have no "
                 "BN-statistics term here",
                 method_params={"*": {"student_batch": 512}, "dfad": _DFAD_MNIST, "dfad+ar+vi": _DFAD_MNIST}))

# cpu: sized by measured throughput (benchmarks/dfkd_throughput.py for the methods); see README "Profiles".  The
# CIFAR teacher: WRN-16-2 trains at ~280-296 images/s here (2 cores, batch 128, channels_last; ``python
# benchmarks/throughput.py --models wrn16_2 --batch-size 128``), so 14 epochs of 50,000 images take ~40-42 min,
# inside the 45-minute teacher budget (30 epochs would take ~90); measured run: 2594 s, partly beside tests, 89.61 %
_add(DFKDProfile(
    "cpu", "mnist", "lenet5", "lenet5_half", _MNIST_T,
    replace(_MNIST_D, epochs=20, synthesis_batch=256, ngf=16),
    "MNIST: 20 epochs of 250 student steps instead of 40, batch 256 instead of 512, generator width ngf 16 instead "
    "of 64 "
    "(the 32x32 generator costs ~200x LeNet-5's forward pass); pool methods synthesise 1/4 of their published "
    "generator steps per round; student batch 256 for every method; LeNet-5 has no BatchNorm, so DFQ, DeepInversion, "
    "CMI and RGAL have no BN-statistics term here",
    method_params={"*": {"student_batch": 256}, "cmi": {"g_steps": 50}, "deepinversion": {"g_steps": 250},
                   "rgal": {"g_steps": 100}, "dfad": _DFAD_MNIST, "dfad+ar+vi": _DFAD_MNIST}))
# Distillation epochs fill the 45-minute budget per method (CONVENTIONS), from the first CIFAR-10 sweep at 12 epochs
# for every method (results/README.md, dfkd-cifar10-cpu-12ep): RGAL 23.3 min, CMI 20.8, the generator-based methods
# 10.7-11.1, KD with real data 6.8.  So 22 epochs for the pool methods (~43 and ~39 min), 40 for the generator-based
# ones (~37 min; their student steps cost a generator forward each, no synthesis rounds) and for KD with real data
# (the reference row gets the most steps any method gets), 14 for DeepInversion (250 pixel steps through teacher and
# student a round, ~2.5 min, plus 100 student steps: ~43 min by --dry-run's estimate, not measured on CIFAR).
_CPU_CIFAR_EPOCHS = {m: 40 for m in ("kd-real", "dafl", "zskt", "dfq", "dfad", "dfad+ar+vi")}
_CPU_CIFAR_EPOCHS["deepinversion"] = 14
_add(DFKDProfile(
    "cpu", "cifar10", "wrn16_2", "wrn16_1", replace(_CIFAR_T, epochs=14, channels_last=True),
    replace(_CIFAR_D, epochs=22, ep_steps=100, synthesis_batch=128, ngf=32, channels_last=True),
    "CIFAR-10: teacher WRN-16-2 (14 epochs) instead of WRN-40-2 (200) to fit 45 min; epochs of 100 student steps "
    "instead of 200 x 400, as many as fit 45 min per method: 22 for RGAL and CMI, 40 for KD with real data and the "
    "generator-based methods, 14 for DeepInversion; synthesis batch 128 instead of 256; generator width ngf 32 "
    "instead of 64; pool methods synthesise 1/4 of their published generator steps per round; student batch 128 for "
    "every method (the generator-based ones publish 256)",
    method_params={"*": {"student_batch": 128}, "cmi": {"g_steps": 50}, "deepinversion": {"g_steps": 250},
                   "rgal": {"g_steps": 100}}, method_epochs=_CPU_CIFAR_EPOCHS))
_add(DFKDProfile(
    "cpu", "cifar100", "wrn16_2", "wrn16_1", replace(_CIFAR_T, epochs=14, channels_last=True),
    replace(_CIFAR_D, epochs=22, ep_steps=100, synthesis_batch=128, ngf=32, channels_last=True),
    "CIFAR-100: as the CIFAR-10 cpu profile (WRN-16-2 teacher, epochs of 100 steps: 22 for the pool methods, 40 for "
    "KD with real data and the generator-based ones, 14 for DeepInversion; batch 128, ngf 32)",
    method_params={"*": {"student_batch": 128}, "cmi": {"g_steps": 50}, "deepinversion": {"g_steps": 250},
                   "rgal": {"g_steps": 100}}, method_epochs=_CPU_CIFAR_EPOCHS))

_SMALL = {"*": {"student_batch": 32}, "cmi": {"g_steps": 2, "bank_size": 256, "n_neg": 64},
          "deepinversion": {"g_steps": 2}, "rgal": {"g_steps": 2}}
for _ds, _t, _s in (("mnist", "lenet5", "lenet5_half"), ("cifar10", "wrn16_1", "wrn16_1"),
                    ("cifar100", "wrn16_1", "wrn16_1")):
    _add(DFKDProfile("mini", _ds, _t, _s, replace(_MNIST_T if _ds == "mnist" else _CIFAR_T, epochs=1, batch_size=128),
                     DistillRecipe(2, 10, 32, 0.05 if _ds != "mnist" else 0.01, 1e-4, ngf=8),
                     "demo: 1 teacher epoch, 2 distillation epochs of 10 steps, batch 32, ngf 8", method_params=_SMALL))
    _add(DFKDProfile("smoke", _ds, _t, _s, replace(_MNIST_T if _ds == "mnist" else _CIFAR_T, epochs=1, batch_size=128,
                                                   max_steps_per_epoch=60, lr=0.05),
                     DistillRecipe(2, 4, 16, 0.05 if _ds != "mnist" else 0.01, 1e-4, ngf=8, analysis_samples=32),
                     "tests only: teacher 60 steps of batch 128, 2 distillation epochs of 4 steps, batch 16, ngf 8",
                     method_params={**_SMALL, "*": {"student_batch": 16}}))


def dfkd_profile(name: str, dataset: str) -> DFKDProfile:
    if (name, dataset) not in _PROFILES:
        have = sorted({d for (p, d) in _PROFILES if p == name})
        if not have:
            raise BenchError(f"unknown profile {name!r} for --task dfkd; choose one of: paper, cpu, mini, smoke")
        raise BenchError(f"--task dfkd has no {name!r} profile for scenario {dataset!r}; choose one of: "
                         f"{', '.join(have)}")
    return _PROFILES[(name, dataset)]


def dfkd_scenarios() -> list[str]:
    return sorted({d for (_, d) in _PROFILES})
