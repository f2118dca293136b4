"""Profiles of the data-free quantization task (``--task dfq``, RGAL paper Sec. 5.2, Table 12): the teacher, its
recipe and the quantized student's schedule of each method family, per profile (CONVENTIONS.md: ``paper``, ``cpu``,
``mini``, ``smoke``).

``paper`` is the official code's recipe for ResNet-20 on CIFAR-100 (``cifar100_resnet20.hocon`` of both repositories;
``trainer.py`` / ``trainer_direct.py`` hard-code 200 iterations an epoch and 4 warm-up epochs):

* GDFQ (xushoukai/GDFQ): 400 epochs of 200 iterations, batch 200, student SGD (Nesterov, momentum 0.9, weight decay
  1e-4) at lr 1e-4, x0.1 at epochs 100, 200, 300;
* IntraQ (zysxmu/IntraQ): 151 epochs of 200 iterations, batch 256 of its fixed synthetic set, the same SGD at 1e-4,
  x0.1 at epochs 20, 40, 60.

In both, the epoch index of the schedule counts the 4 warm-up epochs, during which the activation ranges are tracked
and the student is not trained; the teacher is pytorchcv's ``resnet20_cifar100`` (70.33 %), which the suite replaces
by its own ResNet-20 trained on the real training set (``TeacherRecipe``, the distillation task's recipe and cache) or
by ``--teacher-checkpoint``.

``cpu`` shrinks the schedules to CONVENTIONS' 45 minutes per cell and per teacher (sizes and measurements beside the
values); ``mini`` and ``smoke`` are pipeline demos and tests.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from benchmark.dfkd_profiles import TeacherRecipe, recipe_dict
from benchmark.errors import BenchError


@dataclass(frozen=True)
class QuantRecipe:
    """The quantized student's schedule (names as ``DistillRecipe``'s where they mean the same, so the distillation
    loop drives both)."""

    epochs: int  # all epochs, the warm-up ones included (the official ``nEpochs``)
    ep_steps: int  # iterations an epoch (official: 200)
    synthesis_batch: int  # images a student step (and a GDFQ generator step) takes (GDFQ 200, IntraQ 256)
    lr: float = 1e-4
    milestones: tuple = (100, 200, 300)  # epochs (warm-up included) where the learning rate is multiplied by gamma
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    warmup_epochs: int = 4  # student not trained (GDFQ: its generator is)
    eval_every: int = 1
    channels_last: bool = False
    precision: str = "fp32"
    range_epochs: int | None = None  # epochs whose ranges track (None: the warm-up's; GDFQ ImageNet: 4 of its 50)

    @property
    def tracking_epochs(self) -> int:
        return self.warmup_epochs if self.range_epochs is None else self.range_epochs

    def as_dict(self) -> dict:
        d = recipe_dict(self)
        d["milestones"] = list(self.milestones)
        if d["range_epochs"] is None:  # the keys of the cells made before the field existed stay what they were
            d.pop("range_epochs")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantRecipe":
        return cls(**{**d, "milestones": tuple(d["milestones"])})


@dataclass(frozen=True)
class DFQProfile:
    name: str
    dataset: str
    teacher: str
    teacher_recipe: TeacherRecipe | None  # None: the suite does not train this teacher (--teacher-checkpoint)
    recipes: dict  # method family (gdfq | intraq) -> QuantRecipe
    gap_to_paper: str
    method_params: dict = field(default_factory=dict)  # scope (* | family | method) -> overrides of defaults
    image_size: int | None = None  # synthetic and test images' side (ImageNet's crop); None: the dataset's own

    def recipe_for(self, family: str) -> QuantRecipe:
        return self.recipes[family]

    def params_for(self, method: str, family: str, defaults: dict) -> dict:
        """A method's hyper-parameters: its ``defaults`` with the profile's overrides (``*``, then its family's,
        then its own) of the keys it has."""
        params = dict(defaults)
        for scope in ("*", family, method):
            params.update({k: v for k, v in self.method_params.get(scope, {}).items() if k in params})
        return params

    def with_overrides(self, epochs=None, batch_size=None, lr=None, precision=None) -> "DFQProfile":
        kw = {k: v for k, v in (("epochs", epochs), ("synthesis_batch", batch_size), ("lr", lr),
                                ("precision", precision)) if v is not None}
        if not kw:
            return self
        prof = replace(self, recipes={f: replace(r, **kw) for f, r in self.recipes.items()})
        if precision is not None and prof.teacher_recipe is not None:
            prof = replace(prof, teacher_recipe=replace(prof.teacher_recipe, precision=precision))
        return prof

    def as_dict(self) -> dict:
        return asdict(self)


_PAPER = {"gdfq": QuantRecipe(400, 200, 200, milestones=(100, 200, 300)),
          "intraq": QuantRecipe(151, 200, 256, milestones=(20, 40, 60))}
_CIFAR_T = TeacherRecipe(200, 0.1, 128, 5e-4)

# cpu, sized on this machine's measured rates (2 cores; ``benchmarks/throughput.py``: ResNet-20 trains at ~207
# images/s at batch 128 channels_last on the day it was sized, the table's 430 on a quieter day; a fake-quantized
# ResNet-20 at ~0.8x of that): the teacher gets 12 epochs (72 min measured beside other work, ~46 alone at 207
# images/s, ~23 at 430).  A student cell keeps the official 4 warm-up epochs (200 range updates here: the released
# range average needs ~200 to settle), 24 epochs of 50 iterations at batch 64, evaluated every 4 epochs (a 10,000-image
# evaluation of the quantized student takes ~35-80 s), and the learning rate (GDFQ's the official 1e-4, IntraQ's
# below) decayed once (x0.1) for the last 4 epochs.  Not the official decays at the same fractions of the schedule:
# the cpu cell has 1.3 % of GDFQ's student steps, and with decays at epochs 8 / 14 / 20 the W3A3 GDFQ student rose
# from 10.1 % to 22.9 % in its 200 steps at 1e-4 and then stalled (22.9-23.1 % for the remaining 800 steps at 1e-5
# and below; results/README.md, "dfq-cifar100-cpu-probe").  IntraQ synthesises 512 images (4 batches of 128, 200
# steps each, ~10 min).
# IntraQ's student at a quarter of the official rate (2.5e-5): at 1e-4 the W4A4 student's loss does not fall (epoch
# means 8.3-9.1, gradient norm 163-190 -- the KD term weighs alpha T^2 = 8,000) and then it diverges (top-1 49.6 %
# after 200 steps, 1.3 % after 400, a NaN loss in epoch 15; the same at the official batch 256; W3A3 IntraQ+RGAL
# collapsed too, W3A3 IntraQ did not); at 2.5e-5 the student ends at 49.1 % (best 50.7 %).  Measurements and the
# command: results/README.md, "dfq-cifar100-cpu-intraq-lr1e-4".  The official run keeps 1e-4 for 3,200 steps on
# 5,120 images from a 70 % teacher; what makes this cell's landscape sharper (12-epoch teacher, 512 images) is not
# isolated.
_CPU = {"gdfq": QuantRecipe(24, 50, 64, milestones=(20,), eval_every=4, channels_last=True),
        "intraq": QuantRecipe(24, 50, 64, lr=2.5e-5, milestones=(20,), eval_every=4, channels_last=True)}
# GDFQ's generator at half width (ngf 32: 64 / 32 channels): at 128 / 64 channels its step costs 3x the teacher's
# (measured at batch 64: 1.14 s a step against 0.48 s at ngf 32; the student's step 0.37 s)
_CPU_PARAMS = {"*": {"ngf": 32}, "intraq": {"n_images": 512, "synth_batch": 128, "synth_steps": 200}}
_SMALL = {"*": {"ngf": 8}, "intraq": {"n_images": 32, "synth_batch": 16, "synth_steps": 3, "calib_batch": 8}}

_PROFILES: dict[tuple[str, str], DFQProfile] = {}


def _add(p: DFQProfile) -> None:
    _PROFILES[(p.name, p.dataset)] = p


for _ds in ("cifar10", "cifar100"):
    _add(DFQProfile("paper", _ds, "resnet20", _CIFAR_T, _PAPER,
                    "none: the official recipes (GDFQ 400 x 200 iterations, batch 200; IntraQ 5,120 images x 1,000 "
                    "steps, 151 x 200 iterations, batch 256); the teacher is the suite's ResNet-20 (200 epochs) "
                    "instead of pytorchcv's; for GPUs"))
    _add(DFQProfile(
        "cpu", _ds, "resnet20", replace(_CIFAR_T, epochs=12, channels_last=True), _CPU,
        "teacher 12 epochs instead of 200; students 24 epochs of 50 iterations at batch 64 (4 warm-up), evaluated "
        "every 4, instead of GDFQ's 400 x 200 at 200 and IntraQ's 151 x 200 at 256; the learning rate decayed once, "
        "for the last 4 epochs (the official decays come after 19,200 / 3,200 student steps; the cell has 1,000), "
        "GDFQ's the official 1e-4, IntraQ's 2.5e-5 instead of 1e-4 (at 1e-4 the W4A4 student diverges); GDFQ's "
        "generator at half width (64 / 32 channels); IntraQ synthesises 512 images in batches of 128 for 200 steps "
        "instead of 5,120 in 256 for 1,000",
        method_params=_CPU_PARAMS))
    _add(DFQProfile("mini", _ds, "resnet20", replace(_CIFAR_T, epochs=1, batch_size=128),
                    {f: QuantRecipe(3, 5, 16, milestones=(2,), warmup_epochs=1) for f in _PAPER},
                    "demo: 1 teacher epoch, 3 epochs of 5 iterations (1 warm-up), batch 16", method_params=_SMALL))
    _add(DFQProfile("smoke", _ds, "resnet20", replace(_CIFAR_T, epochs=1, batch_size=128, max_steps_per_epoch=40,
                                                     lr=0.05),
                    {f: QuantRecipe(3, 3, 16, milestones=(2,), warmup_epochs=1) for f in _PAPER},
                    "tests only: teacher 40 steps of batch 128; 3 epochs of 3 iterations (1 warm-up), batch 16",
                    method_params=_SMALL))

# ImageNet (Table 13), the official ``imagenet.hocon`` / ``imagenet_resnet18.hocon``: batch 16, lr 1e-6 (x0.1 at the
# milestones, the warm-up counted), 200 iterations an epoch; GDFQ trains its generator alone for 50 epochs, ranges
# tracked in the first 4 (``main.py``); IntraQ's ``warmup_epochs`` 50 is never read (its trainer hard-codes 4).
# IntraQ's ImageNet synthesis (``run_generate.sh``): targetPro 1 (the soft inception target is one-hot),
# cosineMargin 0 and cosineMargin_upper 2 (both marginal-distance terms are then always 0: kept as released).
_IMAGENET = {"gdfq": QuantRecipe(400, 200, 16, lr=1e-6, milestones=(100, 200, 300), warmup_epochs=50, range_epochs=4),
             "intraq": QuantRecipe(151, 200, 16, lr=1e-6, milestones=(100, 200, 350))}
_IMAGENET_PARAMS = {"*": {"generator": "gdfq-imagenet"},
                    "intraq": {"target_low": 1.0, "margin_lower": 0.0, "margin_upper": 2.0}}
_add(DFQProfile("paper", "imagenet", "resnet18_imagenet", None, _IMAGENET,
                "none: the official ImageNet recipes (GDFQ 400 x 200 iterations, batch 16, 50 generator-only "
                "epochs; IntraQ 5,120 images x 1,000 steps, 151 x 200 iterations, batch 16); the teacher is the "
                "user's --teacher-checkpoint (torchvision's ResNet-18 weights: 69.76 %) instead of pytorchcv's "
                "(pytorchcv 0.0.51: 71.47 %, GDFQ's README); for GPUs", method_params=_IMAGENET_PARAMS, image_size=224))
_add(DFQProfile("smoke", "imagenet", "resnet18_imagenet", None,
                {f: QuantRecipe(3, 2, 4, milestones=(2,), warmup_epochs=1) for f in _PAPER},
                "tests only: 32-pixel images instead of 224, 3 epochs of 2 iterations (1 warm-up), batch 4",
                method_params={f: {**_SMALL[f], **_IMAGENET_PARAMS[f]} for f in _SMALL}, image_size=32))


def dfq_profile(name: str, dataset: str) -> DFQProfile:
    if (name, dataset) not in _PROFILES:
        if not any(p == name for (p, _) in _PROFILES):
            raise BenchError(f"unknown profile {name!r} for --task dfq; choose one of: paper, cpu, mini, smoke")
        hint = " (ImageNet runs are for GPUs)" if dataset == "imagenet" else ""
        raise BenchError(f"--task dfq has no {name!r} profile for scenario {dataset!r}; choose --profile "
                         f"{' or '.join(dfq_profiles_of(dataset))}{hint}")
    return _PROFILES[(name, dataset)]


def dfq_profiles_of(dataset: str) -> list[str]:
    """The profiles a quantization scenario has, in the conventional order."""
    return [p for p in ("paper", "cpu", "mini", "smoke") if (p, dataset) in _PROFILES]


def dfq_scenarios() -> list[str]:
    return sorted({d for (_, d) in _PROFILES})
