"""Fidelity of the suite's CMI, DeepInversion, DAFL, ZSKT and DFQ against zju-vipa/CMI (its ``datafree`` package and
``datafree_kd.py``), imported at run time from the checkout given as ``--official``; nothing of it is copied here.

Identical state.  One random teacher WRN-16-2 and student WRN-16-1 (random weights; BatchNorm running statistics and
affines randomised so the BN prior is not trivial; the student's head bias for the teacher's favourite class raised
so the two agree on about half of grey-ish images, else CMI's masked L_adv is 0 on both sides and untested) are built
as suite models (``benchmark.models``, with the official CIFAR-10 normalisation constants, ``registry.py:19``) and
copied into the official ``wresnet`` models by a key map (``conv1`` -> ``backbone.conv1``, ``block{b}.layer.{i}`` ->
``backbone.stages.{b-1}.{i}``, ``convShortcut`` -> ``shortcut``, ``bn1`` -> ``backbone.bn``, ``fc`` -> ``head``);
the generators (``models/generator.py`` ``Generator`` / ``LargeGenerator`` <-> ``CMIGenerator(stage_mult=2 / 4)``,
``l1.0`` -> ``l1``) and CMI's projection head (``MLPHead.head`` <-> ``head``) likewise.  Small sizes: batch 8, nz
32, ngf 8, 10 classes, 32x32.  The suite runs first with its random draws recorded (not changed); the official code
then gets the same draws (``PATCHES``).  Each side takes its loss weights from its own configuration: the official
side from its CIFAR-10 WRN-40-2 -> WRN-16-1 script parsed by ``datafree_kd.parser`` plus the constants
``main_worker`` passes (``datafree_kd.py:247-281``: DeepInversion tv 0.001, l2 0; nz 512 for DAFL else 256;
head_dim 256; bank 40960, 4096 negatives; the student criterion ``KLDiv()`` at T = 1 for the generative methods,
:259), the suite from its ``paper`` CIFAR-10 profile; the level-1 ``recipe`` row compares the two.

Per method (levels of ``benchmarks.fidelity.common``):

* cmi -- ``datafree/synthesis/contrastive.py`` ``CMISynthesizer.synthesize`` (:261-357) vs ``strategies/dfkd/cmi.py``
  ``CMI.synthesize``: one iteration from the same reset generator, z, sorted targets and views, with 12 cached
  negatives from a pre-filled bank.  Level 1: ``L_bn`` (:285; ``hooks.DeepInversionHook``, DeepInversion's
  feature-statistics prior), ``L_oh`` (:286), ``L_adv`` (:287-290, the paper's masked adversarial KL), ``L_cr``
  (:298-326, the paper's contrastive term with the current / cached split), the total (:328, the paper's overall
  objective).  Level 2: gradients and Adam steps of generator, z and projection head (:334-338); the best iterate
  added to the pool and the memory-bank rows (:329-333, :342-343).  The student step (``datafree_kd.py:369-393``
  ``train``, ``KLDiv(T=20)``, the SGD of :287) on the same pool batch: KD loss, gradients, update.  Further level-1
  rows: the pool's uint8 images (official PNGs, ``utils/_utils.py:89-112``, vs the suite's pool), the local view's
  RandomResizedCrop box sampling (kornia vs ``benchmark.augment.random_resized_crop``), and the official full-bank
  bug below.  Level 3 (``--steps N``): N rounds of 2 synthesis iterations and 2 student steps from the same start
  with identical injected draws, each side on its own pool; the loss curves and the final student, against the
  official code's own round-off floor.
* deepinversion -- ``synthesis/deepinversion.py`` ``DeepInvSyntheiszer.synthesize`` (:70-120) vs
  ``strategies/dfkd/deepinversion.py``: ``L_bn`` (:87), ``L_oh`` (:88), ``L_adv = -JS_3`` (:89-91,
  ``criterions.jsdiv``; Adaptive DeepInversion's competition term), ``L_tv`` (:94, the image prior's TV part),
  ``L_l2`` (:95, weight 0), the total (:96); the pixel gradient, Adam step and clamp (:101-105); the student step as
  for CMI; the pool's uint8 images.
* dafl, zskt, dfq -- ``synthesis/generative.py`` ``GenerativeSynthesizer.synthesize`` (:52-75) vs
  ``strategies/dfkd/generative.py``: ``L_bn`` (:62), ``L_oh`` (:63, DAFL's one-hot loss), ``L_act`` (:64, DAFL's
  activation loss), ``L_adv = -KL_T=1`` (:65-67, ZSKT / DFQ's adversarial term), ``L_ie`` (:70-71, DAFL's
  information entropy), the total (:72); generator gradients and Adam step (:73-74); the student step on a fresh
  ``sample()`` (:77-82) with ``KLDiv()``.

Departures the suite documents are aligned in the main rows and measured in ``departs on purpose`` rows:
DeepInversion adds the lowest-loss iterate to the pool (the official code keeps the last one: its ``best_inputs``
aliases the optimised tensor; deepinversion.py's docstring, docs/official-code-dfkd.md); DAFL / ZSKT / DFQ sample
student batches with the generator in train mode (official ``generator.eval()``, generative.py:79;
docs/official-code-dfkd.md).  Differences that are not documented get ``differs`` rows with their measured size:
DeepInversion's student batch (the suite's 128, the script's 256; in the recipe row), the CIFAR-10 normalisation std
(suite 0.2470 / 0.2435 / 0.2616, official 0.2023 / 0.1994 / 0.2010), the local view's crop sampling, and an official
bug: ``MemoryBank.get_data`` (:154-166) draws its negatives from ``range(_ptr)``, empty when the bank has just been
filled exactly (``n_updates == max_size``), so every loss of that round is NaN and the round keeps its first iterate.
The pool quantisation found by the prototype (the suite rounded ``255 x``, the official floors it) is fixed in the
suite (``pool_rounding='floor'``, 2e3131e); its row now checks it.

Adam steps are compared by ``step_change_rel_diff`` after two allowances, both counted in the row: values one
float32 spacing apart count as equal (an update of lr 1e-3 on weights ~0.2 is resolved to ~1.5e-5 of itself), and
elements whose Adam step the tensor's gradient round-off can move by more than the tolerance are left out (the first
step is ``lr g / (|g| + eps)``; a gradient near round-off level has a round-off sign).

Level 3's floor runs the official code against itself with its projection head perturbed by 1e-7 (relative) at the
start: the divergence that round-off alone produces.  The suite is ``identical`` when its divergence from the
official run is within ``FLOOR_FACTOR`` (3) times that floor, and at least within the 1e-5 tolerances.  Its memory
bank holds ``8 * (N + 2)`` rows, so the official full-bank bug does not fire within the run.

kornia: the official ``contrastive.py`` imports it at module level, and CMI's views come from it.  The comparison
does not need it: ``CMISynthesizer.aug`` is replaced by the suite's views of the official generator output (P7), so
the CLI runs in the suite's venv.  With kornia installed (``pip install kornia``) the CMI crop row also compares the
official kornia views with the suite's for the same crop offsets, flips and boxes, and kornia's box distribution with
the suite's; without it the row says so.  termcolor (logging only) is stubbed when absent.

The monkeypatches, each with its reason, are ``PATCHES`` (also in every row).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import math
import random as _pyrandom
import re
import shlex
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.augment import AugmentSpec, augment_batch, random_resized_crop
from benchmark.dfkd_profiles import DistillRecipe, dfkd_profile
from benchmark.models import build_model
from benchmark.precision import autocast
from benchmark.scenarios import SCENARIOS
from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_tensors, compare_terms, official_imports,
                                        rel_diff, step_change_rel_diff, tensor_rel_diff, verdict, worst)
from strategies.dfkd import DFKD_METHODS, DFKDContext
from strategies.dfkd.cmi import CMI
from strategies.dfkd.deepinversion import DeepInversion
from strategies.dfkd.pool import to_uint8

REPOSITORY = "zju-vipa/CMI"
METHODS = ("cmi", "deepinversion", "dafl", "zskt", "dfq")
GENERATIVE = ("dafl", "zskt", "dfq")

PATCHES: list[tuple[str, str]] = [
    ("P1 sys.modules['torchvision.models.utils'] := stub with torch.hub.load_state_dict_from_url (only when "
     "torchvision lacks the module)",
     "datafree/models/classifiers/{mobilenetv2,resnet_in}.py import it (removed in torchvision 0.13); needed to "
     "import the package, not on a compared path"),
    ("P2 sys.modules['termcolor'] := stub, colored(s) = s (only when termcolor is not installed)",
     "datafree/utils/logger.py:3 imports it; logging only, not on a compared path"),
    ("P3 sys.modules['kornia'] := stub whose augmentation classes construct but cannot run (only when kornia is not "
     "installed)",
     "synthesis/contrastive.py:15 imports kornia at module level (every method imports datafree.synthesis); CMI's "
     "kornia views are replaced by P7 anyway"),
    ("P4 registry.datasets := namespace with a file-less CIFAR10 during registry.get_dataset('cifar10')",
     "yields the official CIFAR-10 training transform (how the official pool is read, registry.py:110-118) without "
     "downloading CIFAR-10"),
    ("P5 datafree.synthesis.{contrastive,deepinversion,generative}.torch := proxy of torch during synthesize() / "
     "sample(): randn returns the suite's draw; torch.utils.data.DataLoader gets num_workers=0, pin_memory=False",
     "identical z, initial pixels and student-batch z; no worker processes on CPU (the loader's batches are "
     "replaced by P8)"),
    ("P6 datafree.synthesis.{contrastive,deepinversion}.random := proxy of random: sample() returns the suite's "
     "memory-bank indices, randint() / random() its jitter offsets and flip",
     "identical negatives and DeepInversion jitter / flip"),
    ("P7 CMISynthesizer.aug := the suite's global view (random_crop pad 4 + random_flip) and local view "
     "(random_resized_crop scale 0.25-1 + random_flip) of the official generator output, replayed from the suite "
     "generator's recorded states, then the official Normalizer",
     "identical differentiable views without kornia (not in the suite's venv); kornia's crop sampling differs "
     "(CMI crop row, which compares the kornia views when kornia is installed)"),
    ("P8 synthesizer.data_iter := the official UnlabeledImageDataset over the official PNG pool with the official "
     "CIFAR-10 training transform, read at the suite's batch indices, crop offsets (RandomCrop.get_params) and "
     "flips (RandomHorizontalFlip.forward) per image",
     "identical student batches (the official DataLoader shuffles with the global RNG)"),
    ("P9 levels 1-2 student rows of CMI / DeepInversion: the official PNG files overwritten with the suite's uint8 "
     "pool images, DeepInversion's suite run with keep='last'; every official pool batch (levels 1-3) copied into "
     "the suite's memory layout",
     "isolates the student step from one-level flips at integer boundaries of 255 x that the two sides' float "
     "round-off causes (the pool row counts them and measures the step on the PNGs as saved) and from the kept "
     "iterate (its own 'departs on purpose' row); the layout (channels-last strides of the suite's crop) only selects "
     "other conv kernels, whose round-off KD at T = 20 amplifies to ~1e-4"),
    ("P10 main (aligned) student rows of DAFL / ZSKT / DFQ: GenerativeSynthesizer.generator.eval := no-op during "
     "the official student step; the official generator loaded with the suite's generator after its synthesis step",
     "neutralises the documented departure (suite samples in train mode, its own 'departs on purpose' row); the "
     "load isolates the student step from the generator's Adam round-off (compared in the update row)"),
    ("P11 global RNG seeded identically before each side's CMI synthesis round",
     "reset_model (contrastive.py:168-176) and the suite's reset_generator draw the re-initialisation from it"),
    ("P12 the student's head bias raised for the teacher's favourite class (both sides, before copying); level 3: "
     "the memory bank sized 8 * (steps + 2); the floor run's projection-head weights x (1 + 1e-7 N(0, 1))",
     "random networks predict one class each, so CMI's masked L_adv would be 0 on both sides; the bank size keeps "
     "the run clear of the official full-bank bug (its own row); the floor: the official code's round-off "
     "divergence"),
    ("P13 instrumentation (behaviour-neutral): Tensor.backward wrapped to copy the caller's locals and loss; global "
     "optimiser step hooks copy gradients and parameters; the suite's torch.randn / rand / randint / randperm "
     "wrapped to record its generator's draws",
     "the official loss terms are locals of synthesize() / train(); the draws are injected by P5-P8"),
]

BATCH, NZ, NGF, N_CLASSES = 8, 32, 8, 10
SHAPE = (3, 32, 32)
TEACHER_ARCH, STUDENT_ARCH = "wrn16_2", "wrn16_1"
SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}  # datafree_kd.py:287; the suite's runner (CIFAR recipes)
CMI_BANK, CMI_NEG, CMI_PREFILL = 64, 12, 16  # harness sizes: bank rows, negatives per step, pre-filled rows
L3_G_STEPS, L3_KD_STEPS = 2, 2  # level 3: synthesis iterations and student steps per round
PERTURB = 1e-7  # level 3 floor: relative perturbation of the official projection head's weights
FLOOR_FACTOR = 3.0
SCRIPTS = {"cmi": "scripts/cmi/scratch_cmi_cifar10_wrn402_wrn161.sh",
           "deepinversion": "scripts/deepinv/deepinv_cifar10_wrn402_wrn161.sh",
           "dafl": "scripts/dafl/dafl_cifar10_wrn402_wrn161.sh",
           "zskt": "scripts/zskt/zskt_cifar10_wrn402_wrn161.sh",
           "dfq": "scripts/dfq/dfq_cifar10_wrn402_wrn161.sh"}


# ----------------------------------------------------------------------------------------------------------------
# instrumentation (P13)
# ----------------------------------------------------------------------------------------------------------------

class _Capture:
    """While entered: each optimiser step's parameters with their gradients and values before / after, and at each
    ``Tensor.backward`` the calling function's name, the loss and (``detail``) copies of its tensor locals."""

    active: "_Capture | None" = None

    def __init__(self, detail: bool = True):
        self.detail, self.steps, self.frames, self._prev = detail, [], [], None

    def __enter__(self):
        self._prev, _Capture.active = _Capture.active, self
        return self

    def __exit__(self, *exc):
        _Capture.active = self._prev
        return False

    def frame(self, func: str) -> dict:
        found = [f for f in self.frames if f["func"] == func]
        if not found:
            raise RuntimeError(f"no backward() from {func}() recorded: {[f['func'] for f in self.frames]}")
        return found[-1]

    def losses(self, func: str) -> list[float]:
        return [f["loss"] for f in self.frames if f["func"] == func]


def _snap(local_vars: dict) -> dict:
    out = {}
    for k, v in local_vars.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().clone()
        elif isinstance(v, dict) and v and all(isinstance(x, (torch.Tensor, float, int)) for x in v.values()):
            out[k] = {kk: (vv.detach().clone() if isinstance(vv, torch.Tensor) else vv) for kk, vv in v.items()}
    return out


def _pre_step(opt, args, kwargs):
    cap = _Capture.active
    if cap is None or not cap.detail:
        return
    params = [p for g in opt.param_groups for p in g["params"]]
    pos = [f"g{gi}.{pi}" for gi, g in enumerate(opt.param_groups) for pi in range(len(g["params"]))]
    eps = [g.get("eps") if isinstance(opt, torch.optim.Adam) else None for g in opt.param_groups for _ in g["params"]]
    cap.steps.append({"params": params, "pos": pos, "eps": eps, "before": [p.detach().clone() for p in params],
                      "grad": [None if p.grad is None else p.grad.detach().clone() for p in params]})


def _post_step(opt, args, kwargs):
    cap = _Capture.active
    if cap is not None and cap.detail:
        cap.steps[-1]["after"] = [p.detach().clone() for p in cap.steps[-1]["params"]]


@contextlib.contextmanager
def _instrumented():
    """The capture hooks, installed for one harness run and removed after it."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
    handles = [register_optimizer_step_pre_hook(_pre_step), register_optimizer_step_post_hook(_post_step)]
    orig = torch.Tensor.backward

    def backward(self, *a, **k):
        cap = _Capture.active
        if cap is not None:
            f = sys._getframe(1)
            cap.frames.append({"func": f.f_code.co_name, "loss": float(self.detach().float().sum()),
                               "vals": _snap(f.f_locals) if cap.detail else {}})
        return orig(self, *a, **k)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = orig
        for h in handles:
            h.remove()


class _Tape:
    """Records (does not change) the draws the suite makes from ``gen``, per torch function, in call order."""

    NAMES = ("randn", "rand", "randint", "randperm")

    def __init__(self, gen: torch.Generator):
        self.gen, self.items, self._orig = gen, {n: [] for n in self.NAMES}, {}

    def __enter__(self):
        for n in self.NAMES:
            self._orig[n] = orig = getattr(torch, n)

            def wrapped(*a, _orig=orig, _n=n, **k):
                out = _orig(*a, **k)
                if k.get("generator") is self.gen:
                    self.items[_n].append(out.detach().clone())
                return out

            setattr(torch, n, wrapped)
        return self

    def __exit__(self, *exc):
        for n, f in self._orig.items():
            setattr(torch, n, f)
        return False

    def take(self, name: str, shape=None) -> torch.Tensor:
        v = self.items[name].pop(0)
        if shape is not None and tuple(v.shape) != tuple(shape):
            raise RuntimeError(f"recorded {name} of shape {tuple(v.shape)}, expected {tuple(shape)}")
        return v


@contextlib.contextmanager
def _patched(obj, attr: str, value):
    """``obj.attr = value`` for the block (an instance attribute that did not exist is removed again)."""
    had = attr in getattr(obj, "__dict__", {})
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield value
    finally:
        if had:
            setattr(obj, attr, old)
        else:
            delattr(obj, attr)


@contextlib.contextmanager
def _calls_recorded(obj, attr: str, store: list, what):
    """Appends ``what(obj, *args)`` to ``store`` before every call of ``obj.attr`` (the call is unchanged)."""
    fn = getattr(obj, attr)

    def wrapped(*a, **k):
        store.append(what(obj, *a))
        return fn(*a, **k)

    with _patched(obj, attr, wrapped):
        yield store


class _DataProxy:
    def __getattr__(self, name):
        return getattr(torch.utils.data, name)

    @staticmethod
    def DataLoader(*a, **k):  # P5: no worker processes, no pinned memory
        k.update(num_workers=0, pin_memory=False)
        return torch.utils.data.DataLoader(*a, **k)


class _TorchProxy:
    """P5: ``torch`` for one official synthesis module; ``randn`` returns the queued suite draws."""

    def __init__(self, randn_queue):
        self._randn = list(randn_queue)
        self.utils = types.SimpleNamespace(data=_DataProxy())

    def randn(self, *a, size=None, **k):
        shape = size if size is not None else (a[0] if len(a) == 1 and isinstance(a[0], (tuple, list)) else a)
        v = self._randn.pop(0)
        if tuple(v.shape) != tuple(shape):
            raise RuntimeError(f"injected randn of shape {tuple(v.shape)} for a draw of {tuple(shape)}")
        return v.clone()

    def __getattr__(self, name):
        return getattr(torch, name)


class _RandomProxy:
    """P6: ``random`` for one official synthesis module, returning the suite's draws."""

    def __init__(self, ints=(), floats=(), samples=()):
        self.ints, self.floats, self.samples = list(ints), list(floats), list(samples)

    def randint(self, a, b):
        v = self.ints.pop(0)
        if not a <= v <= b:
            raise RuntimeError(f"injected randint {v} outside [{a}, {b}]")
        return v

    def random(self):
        return self.floats.pop(0)

    def sample(self, population, k):
        if k == 0:  # the official bank is empty (or at the full-bank bug): nothing to draw
            return []
        idx = self.samples.pop(0)
        if len(idx) != k or not set(idx) <= set(population):
            raise RuntimeError(f"injected sample of {len(idx)} indices for k = {k}")
        return idx

    def __getattr__(self, name):
        return getattr(_pyrandom, name)


# ----------------------------------------------------------------------------------------------------------------
# the official code (P1-P4) and the shared models
# ----------------------------------------------------------------------------------------------------------------

class _KorniaStub:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        raise RuntimeError("kornia is not installed (pip install kornia); the harness replaces CMI's views (P7)")


def _stub_modules() -> dict:
    """P1-P3: modules the official package imports that this environment lacks."""
    out = {}
    try:
        importlib.import_module("torchvision.models.utils")
    except ImportError:
        out["torchvision.models.utils"] = types.ModuleType("torchvision.models.utils")
        out["torchvision.models.utils"].load_state_dict_from_url = torch.hub.load_state_dict_from_url
    if importlib.util.find_spec("termcolor") is None:
        out["termcolor"] = types.ModuleType("termcolor")
        out["termcolor"].colored = lambda s, *a, **k: s
    if importlib.util.find_spec("kornia") is None:
        kornia, aug = types.ModuleType("kornia"), types.ModuleType("kornia.augmentation")
        for name in ("RandomCrop", "RandomHorizontalFlip", "RandomResizedCrop"):
            setattr(aug, name, type(name, (_KorniaStub,), {}))
        kornia.augmentation = aug
        out["kornia"], out["kornia.augmentation"] = kornia, aug
    return out


class _Official:
    """The official modules of one checkout (imported inside ``_official_env``)."""

    def __init__(self, path: Path, stubbed: set):
        import datafree  # noqa: F401
        import datafree.synthesis.contrastive as con
        import datafree.synthesis.deepinversion as odi
        import datafree.synthesis.generative as ogs
        import datafree_kd
        import registry
        from datafree.models import generator
        from datafree.models.classifiers import wresnet
        self.path, self.datafree, self.registry, self.dkd = Path(path), datafree, registry, datafree_kd
        self.con, self.odi, self.ogs, self.ogen, self.wresnet = con, odi, ogs, generator, wresnet
        stats = registry.NORMALIZE_DICT["cifar10"]
        self.mean, self.std = tuple(stats["mean"]), tuple(stats["std"])
        self.normalizer = datafree.utils.Normalizer(self.mean, self.std)
        self.transform = self._train_transform()
        self.kornia = None if "kornia" in stubbed else importlib.import_module("kornia")

    def _train_transform(self):
        class NoFiles:  # P4
            def __init__(self, root, train=True, download=False, transform=None, **kw):
                self.transform = transform

        with _patched(self.registry, "datasets", types.SimpleNamespace(CIFAR10=NoFiles)):
            _, train_dst, _ = self.registry.get_dataset("cifar10", data_root=tempfile.gettempdir())
        return train_dst.transform

    def script(self, method: str) -> argparse.Namespace:
        """The method's CIFAR-10 script, parsed by the official parser."""
        text = (self.path / SCRIPTS[method]).read_text().replace("\\\n", " ").replace("\\", " ")
        tokens = shlex.split(text)
        return self.dkd.parser.parse_args(tokens[tokens.index("datafree_kd.py") + 1:])


@contextlib.contextmanager
def _official_env(path: Path):
    stubs = {n: m for n, m in _stub_modules().items() if n not in sys.modules}
    sys.modules.update(stubs)
    try:
        with official_imports(path, "datafree", "registry", "datafree_kd"):
            yield _Official(path, set(stubs))
    finally:
        for n in stubs:
            sys.modules.pop(n, None)


def _wrn_o2s(k: str) -> str:
    if k.startswith("conv1."):
        return "backbone." + k
    m = re.match(r"block(\d)\.layer\.(\d+)\.(.*)", k)
    if m:
        return f"backbone.stages.{int(m.group(1)) - 1}.{m.group(2)}.{m.group(3).replace('convShortcut', 'shortcut')}"
    if k.startswith("bn1."):
        return "backbone.bn." + k[4:]
    if k.startswith("fc."):
        return "head." + k[3:]
    raise KeyError(k)


def _gen_o2s(k: str) -> str:
    return k.replace("l1.0.", "l1.")


def _head_o2s(k: str) -> str:
    return k[len("head."):] if k.startswith("head.") else k


def _same(k: str) -> str:
    return k


def _load_mapped(dst: nn.Module, src_sd: dict, o2s, ignore=("backbone.normalize.",)) -> nn.Module:
    """Loads suite weights into an official module; every suite tensor must have an official counterpart."""
    sd = {k: src_sd[o2s(k)].detach().clone() for k in dst.state_dict()}
    used = {o2s(k) for k in dst.state_dict()}
    unused = [k for k in src_sd if k not in used and not k.startswith(ignore)]
    if unused:
        raise RuntimeError(f"suite tensors without an official counterpart: {unused}")
    dst.load_state_dict(sd)
    return dst


def _randomise_bn(net: nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
                mod.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                mod.bias.copy_(0.2 * torch.randn(c, generator=g))


@torch.no_grad()
def _agree_in_part(t: nn.Module, s: nn.Module, g: torch.Generator) -> None:
    """Raises the student's head bias of the teacher's most frequent class by the median margin on grey-ish probe
    images (as an early generator makes), so the two agree on about half of them: random networks predict one class
    each, which would leave CMI's masked L_adv at 0 on both sides, untested."""
    x = (0.5 + 0.1 * torch.randn(256, *SHAPE, generator=g)).clamp(0, 1)
    k = int(t.eval()(x).argmax(1).mode().values)
    logits = s.eval()(x)
    s.head.bias[k] += (logits.max(1).values - logits[:, k]).median() + 1e-4
    t.train(), s.train()


class _Models:
    """The random teacher / student state both sides start from."""

    def __init__(self, off: _Official, seed: int):
        self.off = off
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed + 1)
        t = build_model(TEACHER_ARCH, N_CLASSES, 3, off.mean, off.std)
        s = build_model(STUDENT_ARCH, N_CLASSES, 3, off.mean, off.std)
        for net in (t, s):
            _randomise_bn(net, g)
        _agree_in_part(t, s, g)
        self.t_sd, self.s_sd = copy.deepcopy(t.state_dict()), copy.deepcopy(s.state_dict())

    def suite(self) -> tuple[nn.Module, nn.Module]:
        t = build_model(TEACHER_ARCH, N_CLASSES, 3, self.off.mean, self.off.std)
        t.load_state_dict(self.t_sd)
        t.eval().requires_grad_(False)  # as benchmark.teachers hands it over
        s = build_model(STUDENT_ARCH, N_CLASSES, 3, self.off.mean, self.off.std)
        s.load_state_dict(self.s_sd)
        return t, s.train()

    def official_teacher(self) -> nn.Module:
        return _load_mapped(self.off.wresnet.wrn_16_2(N_CLASSES), self.t_sd, _wrn_o2s).eval()

    def official_student(self, official_sd: dict | None = None) -> nn.Module:
        """The official student with the shared initial weights, or with ``official_sd`` (official keys)."""
        s = _load_mapped(self.off.wresnet.wrn_16_1(N_CLASSES), self.s_sd, _wrn_o2s)
        if official_sd is not None:
            s.load_state_dict(official_sd)
        return s.train()


# ----------------------------------------------------------------------------------------------------------------
# one harness run: context, rows, comparisons
# ----------------------------------------------------------------------------------------------------------------

class _Run:
    def __init__(self, method: str, off: _Official, seed: int, commit: str, work: Path):
        self.method, self.off, self.seed, self.commit, self.work = method, off, seed, commit, work
        self.models = _Models(off, seed)
        self.rows: list[Row] = []
        self.t0 = time.time()

    def log(self, msg: str) -> None:
        print(f"[{self.method} {time.process_time():6.1f}s CPU] {msg}", file=sys.stderr, flush=True)

    def fresh(self, name: str) -> Path:
        d = self.work / name
        d.mkdir(parents=True, exist_ok=False)
        return d

    def suite_params(self, method: str) -> dict:
        """The method's hyper-parameters in the suite's ``paper`` CIFAR-10 profile."""
        return dfkd_profile("paper", "cifar10").params_for(method, DFKD_METHODS.entry(method).extra["defaults"])

    def ctx(self, params: dict, name: str, gen_seed: int, mean=None, std=None) -> DFKDContext:
        t, s = self.models.suite()
        recipe = DistillRecipe(epochs=1, ep_steps=1, synthesis_batch=BATCH, lr=SGD["lr"],
                               weight_decay=SGD["weight_decay"], ngf=NGF)
        return DFKDContext(t, s, params, recipe, N_CLASSES, SHAPE, mean or self.off.mean, std or self.off.std,
                           AugmentSpec(crop_padding=4, flip=True), torch.device("cpu"),
                           torch.Generator().manual_seed(gen_seed), self.fresh(name), "fidelity")

    def add(self, level: int, compared: str, max_diff: float, tol: float, note: str = "", details=None,
            departure: str = "", verdict_: str | None = None) -> None:
        max_diff = 1.0 if max_diff is None or not math.isfinite(max_diff) else float(max_diff)
        v = verdict_ or verdict(max_diff, tol, departure)
        if departure and v == "departs on purpose":
            note = f"{departure}. {note}"
        self.rows.append(Row(self.method, level, REPOSITORY, self.commit, compared, max_diff, tol, v, note.strip(),
                             details or {}, [list(p) for p in PATCHES]))


def _names(**modules) -> dict:
    """id(parameter) -> '<prefix>.<suite name>' for ``prefix=(module, official-to-suite key map)``."""
    return {id(p): f"{prefix}.{o2s(n)}" for prefix, (mod, o2s) in modules.items() for n, p in mod.named_parameters()}


def _by_name(cap: _Capture, names: dict) -> dict:
    """{name: (grad, before, after, Adam eps)} over a capture's optimiser steps (unnamed parameters by optimiser,
    group and index)."""
    out = {}
    for i, st in enumerate(cap.steps):
        for p, pos, g, b, a, e in zip(st["params"], st["pos"], st["grad"], st["before"], st["after"], st["eps"]):
            out[names.get(id(p), f"opt{i}.{pos}")] = (g, b, a, e)
    return out


def _snap_ulp(after_o: torch.Tensor, after_s: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The official values that lie within one float32 spacing of the suite's, set equal to them: an update is
    resolved only to the spacing of the weights it is added to (lr 1e-3 on weights ~0.2: ~1.5e-5 of the update)."""
    spacing = (torch.nextafter(after_s, torch.full_like(after_s, math.inf)) - after_s).abs()
    close = (after_o - after_s).abs() <= spacing
    return torch.where(close, after_s, after_o), int((close & (after_o != after_s)).sum())


def _update_diff(before: dict, after_o: dict, after_s: dict, adam: dict | None = None) -> tuple[dict, dict]:
    """``step_change_rel_diff`` after ``_snap_ulp``.  For Adam (``adam``: {name: (grad_o, grad_s, eps)}) the elements
    whose update the tensor's gradient round-off can move by more than the tolerance are left out first: Adam's
    first step is ``lr g / (|g| + eps)``, whose sensitivity is ``lr eps / (|g| + eps)^2``, so an element with
    ``eps max|g_o - g_s| / (|g| + eps)^2 > GRAD_RTOL`` (a gradient near round-off level: its sign, and so its ~lr
    step, is round-off) says nothing about the step.  Returns the figures and the counts of elements snapped / left
    out."""
    ao, as_, counts = {}, dict(after_s), {"one_spacing": 0, "left_out": 0}
    for k, w0 in before.items():
        if k not in after_o or k not in after_s:
            continue
        ao[k], n = _snap_ulp(after_o[k], after_s[k])
        counts["one_spacing"] += n
        go, gs, eps = (adam or {}).get(k, (None, None, None))
        if go is None or gs is None or not eps:
            continue
        dg = (go.double() - gs.double()).abs().max().item()
        noise = eps * dg / (torch.minimum(go.abs(), gs.abs()).double() + eps) ** 2 > GRAD_RTOL
        ao[k], as_[k] = torch.where(noise, w0, ao[k]), torch.where(noise, w0, as_[k])
        counts["left_out"] += int(noise.sum())
    return step_change_rel_diff(before, ao, as_), counts


def _steps(cap_o: _Capture, cap_s: _Capture, names_o: dict, names_s: dict, adam: bool) -> dict:
    """Gradients, the state before the step and the update of every parameter the two captures stepped."""
    do, ds = _by_name(cap_o, names_o), _by_name(cap_s, names_s)
    go = {k: v[0] for k, v in do.items() if v[0] is not None}
    gs = {k: v[0] for k, v in ds.items() if v[0] is not None}
    before = {k: v[1] for k, v in ds.items()}
    grads = {k: (go.get(k), gs.get(k), ds[k][3]) for k in ds if k in do}
    upd, counts = _update_diff(before, {k: v[2] for k, v in do.items()}, {k: v[2] for k, v in ds.items()},
                               grads if adam else None)
    return {"grads": compare_tensors(go, gs), "before": compare_tensors({k: v[1] for k, v in do.items()}, before),
            "update": upd, "counts": counts, "raw_update": step_change_rel_diff(
                before, {k: v[2] for k, v in do.items()}, {k: v[2] for k, v in ds.items()})}


def _add_step_rows(run: _Run, what: str, st: dict, adam: bool, note: str = "") -> None:
    """The level-2 rows of one compared optimiser step: gradients, then the update."""
    k, g = worst(st["grads"])
    kb, b = worst(st["before"])
    run.add(2, f"{what}: gradients", g, GRAD_RTOL, f"largest {k}; state before the step differs by {b:.1e}. {note}",
            {"grads": st["grads"], "state_before": st["before"]})
    k, u = worst(st["update"])
    kr, r = worst(st["raw_update"])
    c = st["counts"]
    text = (f"largest {k}; {c['one_spacing']} elements one float32 spacing apart counted equal (the update's "
            "resolution on its weights)")
    if adam:
        text += (f"; {c['left_out']} elements left out whose Adam step the gradient round-off moves by more than "
                 f"{GRAD_RTOL:g} lr (eps max|dg| / (|g| + eps)^2: gradients near round-off level)")
    text += f"; without either {r:.1e} ({kr})"
    run.add(2, f"{what}: {'Adam' if adam else 'SGD'} update (after - before, relative to its size)", u, GRAD_RTOL,
            text, {"update": st["update"], "update_raw": st["raw_update"], **c})


def _terms_row(run: _Run, what: str, off: dict, suite: dict, weights: dict, note: str = "") -> None:
    terms = compare_terms(off, suite)
    k, v = worst(terms)
    run.add(1, what, v, LOSS_RTOL, f"largest {k}. {note}", {"terms": terms, "weights": weights})


# ----------------------------------------------------------------------------------------------------------------
# student steps and the pool (CMI, DeepInversion)
# ----------------------------------------------------------------------------------------------------------------

def _suite_student_steps(m, opt, n_steps: int, cap: _Capture) -> list[dict]:
    """The runner's student steps (``benchmark/dfkd_runner.py``: ``student_loss``, ``zero_grad``, ``backward``,
    SGD ``step``), with the suite's draws recorded."""
    out = []
    m.student.train()
    for _ in range(n_steps):
        state = m.gen.get_state()
        with _Tape(m.gen) as tape, cap:
            with autocast(m.ctx.recipe.precision, "cpu"):
                loss, n = m.student_loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out.append({"loss": float(loss.detach()), "tape": tape, "state": state, "n": n})
    return out


def _pool_draws(m, step: dict) -> dict:
    """The suite's pool batch of one student step: indices, crop offsets, flips and the batch (replayed)."""
    tape, n = step["tape"], step["n"]
    x, _ = m.pool.tensors()
    idx = tape.take("randperm", (len(x),))[:n]
    oy, ox, flip = tape.take("randint", (n,)), tape.take("randint", (n,)), tape.take("rand", (n,)) < 0.5
    g = torch.Generator()
    g.set_state(step["state"])
    torch.randperm(len(x), generator=g)
    return {"idx": idx, "oy": oy, "ox": ox, "flip": flip, "xb": augment_batch(x[idx], m.ctx.augment, g)}


class _InjectedPool:
    """P8: ``synthesizer.data_iter`` reading the official pool at the suite's indices with its crops and flips."""

    def __init__(self, dataset, draws: list[dict], layout: bool):
        import torchvision.transforms.functional as TF
        self.hflip, self.dst, self.draws, self.layout = TF.hflip, dataset, list(draws), layout

    def next(self) -> torch.Tensor:
        d = self.draws.pop(0)
        crop, flip = self.dst.transform.transforms[0], self.dst.transform.transforms[1]
        imgs = []
        for k, i in enumerate(d["idx"].tolist()):
            crop.get_params = (lambda img, size, a=int(d["oy"][k]), b=int(d["ox"][k]): (a, b, size[0], size[1]))
            flip.forward = self.hflip if bool(d["flip"][k]) else (lambda img: img)
            imgs.append(self.dst[i])
        out = torch.stack(imgs)
        return torch.empty_like(d["xb"]).copy_(out) if self.layout else out  # P9: the suite's memory layout


def _official_pool(syn, off: _Official):
    """The official pool dataset, images ordered as the suite's pool (round, then position in the batch)."""
    dst = syn.data_pool.get_dataset(transform=copy.deepcopy(off.transform))
    dst.images = sorted(dst.images, key=lambda p: tuple(int(v) for v in re.search(r"(\d+)-(\d+)\.png$", p).groups()))
    return dst


def _read_pngs(paths) -> torch.Tensor:
    import numpy as np
    from PIL import Image
    return torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in paths])


def _write_pngs(paths, u8: torch.Tensor) -> None:
    from PIL import Image
    for p, img in zip(paths, u8):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(p)


def _official_student_steps(off: _Official, syn, student, teacher, opt, T: float, n_steps: int, cap: _Capture):
    """``datafree_kd.train`` (:369-400) with ``kd_steps = n_steps`` on CPU, its default ``print_freq`` 0."""
    args = argparse.Namespace(kd_steps=n_steps, gpu=None, autocast=off.datafree.utils.dummy_ctx, fp16=False,
                              print_freq=0, current_epoch=0, logger=None)
    with cap:
        off.dkd.train(syn, [student, teacher], off.datafree.criterions.KLDiv(T=T), opt, args)


def _official_pool_step(run: _Run, syn, t_o, s0: dict, T: float, draws: dict) -> dict:
    """One official student step on the pool batch ``draws`` from the student state ``s0``."""
    s_o = run.models.official_student(s0)
    syn.data_iter = _InjectedPool(_official_pool(syn, run.off), [draws], layout=True)
    cap = _Capture(True)
    _official_student_steps(run.off, syn, s_o, t_o, torch.optim.SGD(s_o.parameters(), **SGD), T, 1, cap)
    return {"loss": cap.frame("train")["vals"]["loss_s"], "cap": cap, "student": s_o}


def _student_compare(o: dict, s: dict, s_student) -> dict:
    st = _steps(o["cap"], s["cap"], _names(student=(o["student"], _wrn_o2s)), _names(student=(s_student, _same)),
                adam=False)
    return {"loss": rel_diff(float(o["loss"]), s["loss"]), "grads": worst(st["grads"]), "update": worst(st["update"]),
            "steps": st}


def _suite_pool_step(m) -> dict:
    cap = _Capture(True)
    step = _suite_student_steps(m, torch.optim.SGD(m.trainable(), **SGD), 1, cap)[0]
    return {"loss": step["loss"], "cap": cap, "draws": _pool_draws(m, step)}


def _student_rows(run: _Run, o: dict, s: dict, s_student, what: str, note: str) -> None:
    c = _student_compare(o, s, s_student)
    run.add(1, f"{what}: KD loss", c["loss"], LOSS_RTOL, note,
            {"terms": compare_terms({"kd": o["loss"]}, {"kd": s["loss"]})})
    _add_step_rows(run, what, c["steps"], adam=False, note=note)


def _effect_row(run: _Run, what: str, o: dict, s: dict, s_student, note: str, departure: str = "") -> dict:
    """A level-1 row measuring one difference: the student step's loss, with gradients and update in the note."""
    c = _student_compare(o, s, s_student)
    text = (f"one student step: KD loss {c['loss']:.1e} rel., gradients {c['grads'][1]:.1e} ({c['grads'][0]}), "
            f"update {c['update'][1]:.1e}. {note}")
    run.add(1, what, c["loss"], LOSS_RTOL, text, {"loss": c["loss"], "grads": c["steps"]["grads"],
                                                   "update": c["steps"]["update"]}, departure)
    return c


def _quantisation(u8_o: torch.Tensor, u8_s: torch.Tensor) -> tuple[float, float]:
    dq = u8_o.int() - u8_s.int()
    return float((dq != 0).float().mean()), float(dq.float().mean())


# ----------------------------------------------------------------------------------------------------------------
# recipe rows
# ----------------------------------------------------------------------------------------------------------------

def _official_recipe(method: str, a: argparse.Namespace) -> dict:
    """The script's flags as ``datafree_kd.main_worker`` uses them, and the constants it passes (:247-281)."""
    d = {"student_batch": a.batch_size, "synthesis_batch": a.synthesis_batch_size or a.batch_size,
         "g_steps": a.g_steps, "kd_steps": a.kd_steps, "ep_steps": a.ep_steps, "epochs": a.epochs, "lr": a.lr,
         "weight_decay": a.weight_decay, "lr_g": a.lr_g, "adv": a.adv, "bn": a.bn, "oh": a.oh,
         "temperature": 1.0 if method in GENERATIVE else a.T}  # :259 overwrites the criterion with KLDiv() (T = 1)
    if method == "cmi":  # :266-281, contrastive.py:235, :275
        d.update(cr=a.cr, contrastive_temperature=a.cr_T, nz=256, head_dim=256, bank_size=40960, n_neg=4096, beta1=0.5, beta2=0.999)
    elif method == "deepinversion":  # :248-254, deepinversion.py:80, :91
        d.update(tv=0.001, js_temperature=3.0, beta1=0.5, beta2=0.99)
    else:  # :255-265, generative.py:40
        d.update(act=a.act, balance=a.balance, nz=512 if method == "dafl" else 256, beta1=0.5, beta2=0.999)
    return d


def _suite_recipe(method: str, off_keys) -> dict:
    prof = dfkd_profile("paper", "cifar10")
    p = prof.params_for(method, DFKD_METHODS.entry(method).extra["defaults"])
    r = prof.distill_for(method)
    d = {k: p[k] for k in off_keys if k in p}
    d.update(synthesis_batch=r.synthesis_batch, ep_steps=r.ep_steps, epochs=r.epochs, lr=r.lr,
             weight_decay=r.weight_decay, kd_steps=int(p.get("kd_steps") or r.ep_steps),
             beta1=p["g_betas"][0], beta2=p["g_betas"][1])
    return d


def _recipe_row(run: _Run, method: str, extra: str = "") -> None:
    off = _official_recipe(method, run.off.script(method))
    suite = _suite_recipe(method, off)
    terms = compare_terms(off, suite)
    k, v = worst(terms)
    diffs = [f"{n} official {t['official']:g} / suite {t['suite']:g}" for n, t in terms.items() if t["rel"]]
    note = f"{SCRIPTS[method]} vs the suite's paper CIFAR-10 profile"
    if diffs:
        note += "; differs: " + "; ".join(diffs)
    if method == "deepinversion" and terms["student_batch"]["rel"]:
        note += (" (finding, undocumented: the suite's DEFAULTS give DeepInversion a student batch of 128, the "
                 "official script trains the student on batches of --batch_size 256 = its synthesis batch"
                 + extra + ")")
    if method == "dafl":
        note += (". Stale text: docs/official-code-dfkd.md and generative.py's docstring say the stored DAFL script "
                 "runs --method zskt with act 0.1 (older commits); at this commit it passes --method dafl, act 0.001, "
                 "which the suite matches")
    run.add(1, "recipe: hyper-parameters vs the official CIFAR-10 script", v, 0.0, note, terms)


# ----------------------------------------------------------------------------------------------------------------
# CMI
# ----------------------------------------------------------------------------------------------------------------

class _SuiteViews:
    """P7: stands in for ``CMISynthesizer.aug``: the suite's global view (``DFKDMethod.synthesis_augment``) and local
    view (``CMI._local_view``) of the official generator output, each replayed from the suite generator's state
    recorded before the suite's own call, then the official Normalizer (as the official transforms end)."""

    def __init__(self, augment: AugmentSpec, g_states: list, l_states: list, normalizer):
        self.ctx, self.g, self.l, self.normalizer = types.SimpleNamespace(augment=augment), list(g_states), \
            list(l_states), normalizer

    def _at(self, state) -> types.SimpleNamespace:
        g = torch.Generator()
        g.set_state(state)
        return types.SimpleNamespace(ctx=self.ctx, gen=g)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        xg = CMI.synthesis_augment(self._at(self.g.pop(0)), x)
        xl = CMI._local_view(self._at(self.l.pop(0)), x)
        return [self.normalizer(xg), self.normalizer(xl)]


def _cmi_suite(run: _Run, bank: int, g_steps: int, name: str) -> CMI:
    params = {**run.suite_params("cmi"), "g_steps": g_steps, "nz": NZ, "student_batch": BATCH, "bank_size": bank,
              "n_neg": CMI_NEG}
    return CMI(run.ctx(params, f"{name}/suite", run.seed + 100))


def _cmi_official(run: _Run, bank: int, g_steps: int, name: str, head_sd: dict):
    """``CMISynthesizer`` as ``datafree_kd.py:266-281`` builds it, at the harness sizes, with the suite's head."""
    a = run.off.script("cmi")
    t_o, s_o = run.models.official_teacher(), run.models.official_student()
    gen = run.off.ogen.Generator(nz=NZ, ngf=NGF, img_size=SHAPE[1], nc=SHAPE[0])
    with contextlib.redirect_stdout(io.StringIO()):  # the constructor prints the feature width
        syn = run.off.con.CMISynthesizer(
            t_o, s_o, gen, nz=NZ, num_classes=N_CLASSES, img_size=SHAPE, feature_layers=None, bank_size=bank,
            n_neg=CMI_NEG, head_dim=256, init_dataset=None, iterations=g_steps, lr_g=a.lr_g,
            progressive_scale=False, synthesis_batch_size=BATCH, sample_batch_size=BATCH, adv=a.adv, bn=a.bn,
            oh=a.oh, cr=a.cr, cr_T=a.cr_T, save_dir=str(run.fresh(f"{name}/official")),
            transform=run.off.transform, normalizer=run.off.normalizer, device="cpu")
    _load_mapped(syn.head, head_sd, _head_o2s)
    return syn, t_o, s_o


def _gen_state(obj, *a):
    return obj.gen.get_state()


def _cmi_suite_round(m: CMI, seed_r: int, detail: bool) -> dict:
    """One suite synthesis round, its draws recorded: z, sorted targets, the generator state before each view,
    the negatives' indices; and what it adds to the pool."""
    cap, gs, ls, pool_x = _Capture(detail), [], [], []
    with _calls_recorded(m, "synthesis_augment", gs, _gen_state), _calls_recorded(m, "_local_view", ls, _gen_state), \
            _calls_recorded(m, "add_to_pool", pool_x, lambda obj, x: x.detach().clone()), _Tape(m.gen) as tape, cap:
        torch.manual_seed(seed_r)  # P11: reset_generator's draws
        with autocast(m.ctx.recipe.precision, "cpu"):
            m.synthesize()
    negs = [p[: int(m.p["n_neg"])].tolist() for p in tape.items["randperm"]]
    return {"cap": cap, "seed": seed_r, "z": tape.take("randn"), "targets": tape.take("randint").sort().values,
            "g_states": gs, "l_states": ls, "negatives": negs, "best": pool_x[0], "u8": m.pool.batches[-1][0]}


def _cmi_official_round(run: _Run, syn, d: dict, cap: _Capture):
    """The official ``synthesize()`` with the suite round ``d``'s draws injected (P5-P7, P11)."""
    syn.aug = _SuiteViews(AugmentSpec(crop_padding=4, flip=True), d["g_states"], d["l_states"], run.off.normalizer)
    with _patched(run.off.con, "torch", _TorchProxy([d["z"]])), \
            _patched(run.off.con, "random", _RandomProxy(samples=d["negatives"])), cap:
        torch.manual_seed(d["seed"])
        return syn.synthesize(targets=d["targets"].clone())


def _cmi(run: _Run) -> None:
    _recipe_row(run, "cmi")
    m = _cmi_suite(run, CMI_BANK, 1, "cmi")
    syn, t_o, s_o = _cmi_official(run, CMI_BANK, 1, "cmi", m.head.state_dict())
    feats = torch.randn(CMI_PREFILL, m.bank.data.shape[1], generator=torch.Generator().manual_seed(run.seed + 7))
    m.bank.add(feats)  # a non-empty bank, so the cached-negatives path runs
    for chunk in feats.split(BATCH):  # the official add asserts max_size % n == 0
        syn.mem_bank.add(chunk)
    s0 = copy.deepcopy(s_o.state_dict())
    d = _cmi_suite_round(m, run.seed + 11, detail=True)
    cap_o = _Capture(True)
    out = _cmi_official_round(run, syn, d, cap_o)
    _cmi_synthesis_rows(run, m, syn, d, cap_o, out)
    _cmi_student_rows(run, m, syn, t_o, s0, d)
    run.log("CMI crop sampling and the full-bank case")
    _cmi_crop_row(run, m.head.state_dict())
    _cmi_bank_full_row(run)


def _cmi_synthesis_rows(run: _Run, m: CMI, syn, d: dict, cap_o: _Capture, out: dict) -> None:
    a = run.off.script("cmi")
    vo, vs = cap_o.frame("synthesize")["vals"], d["cap"].frame("synthesize")["vals"]
    keys = ("bn", "oh", "adv", "cr", "cr_T", "lr_g")
    suite_names = {"cr_T": "contrastive_temperature"}  # the suite's name of the official flag
    weights = {"official": {k: getattr(a, k) for k in keys}, "suite": {k: m.p[suite_names.get(k, k)] for k in keys}}
    off = {"bn": vo["loss_bn"], "oh": vo["loss_oh"], "adv": vo["loss_adv"], "cr": vo["loss_cr"], "total": vo["loss"]}
    suite = {**{k: vs["parts"].get(k) for k in ("bn", "oh", "adv", "cr")}, "total": vs["loss"]}
    note = "L_adv is 0 on both sides in this draw (the mask is empty)" if float(suite["adv"]) == 0 else ""
    _terms_row(run, f"synthesis iteration: L_bn, L_oh, L_adv (masked KL), L_cr ({CMI_NEG} cached negatives), total",
               off, suite, weights, note)
    st = _steps(cap_o, d["cap"], _names(gen=(syn.generator, _gen_o2s), head=(syn.head, _head_o2s)),
                _names(gen=(m.generator, _same), head=(m.head, _same)), adam=True)
    _add_step_rows(run, "synthesis iteration (generator, z = opt0.g1.0, projection head)", st, adam=True)
    rows = slice(CMI_PREFILL, CMI_PREFILL + BATCH)
    res = {"pool image (best iterate, [0, 1])": tensor_rel_diff(out["synthetic"], d["best"]),
           "memory-bank rows added": tensor_rel_diff(syn.mem_bank.data[rows], m.bank.data[rows])}
    k, v = worst(res)
    run.add(2, "round output: best iterate added to the pool, memory-bank rows", v, GRAD_RTOL, f"largest {k}", res)


def _cmi_student_rows(run: _Run, m: CMI, syn, t_o, s0: dict, d: dict) -> None:
    T = run.off.script("cmi").T
    s = _suite_pool_step(m)
    paths = _official_pool(syn, run.off).images
    u8_o = _read_pngs(paths)
    raw = _official_pool_step(run, syn, t_o, s0, T, s["draws"])  # the official PNGs as saved
    _write_pngs(paths, d["u8"])  # P9
    aligned = _official_pool_step(run, syn, t_o, s0, T, s["draws"])
    _student_rows(run, aligned, s, m.student, "student step on a pool batch (KD T=20, SGD)",
                  "official PNGs := the suite's uint8 images (P9)")
    _pool_row(run, m, u8_o, d["best"], d["u8"], _student_compare(raw, s, m.student))


def _pool_row(run: _Run, m, u8_o: torch.Tensor, x01: torch.Tensor, u8_s: torch.Tensor, raw: dict) -> None:
    """The pool's uint8 images, official PNGs vs the suite's pool: values that differ other than by one level at an
    integer boundary of ``255 x`` reached by the two sides' float round-off."""
    differ = u8_o != u8_s
    y = x01.detach().double().clamp(0, 1) * 255
    flips = differ & ((u8_o.int() - u8_s.int()).abs() == 1) & ((y - y.round()).abs() < 1e-3)
    other = float((differ & ~flips).float().mean())
    frac_r, mean_r = _quantisation(u8_o, to_uint8(x01, "round"))
    note = (f"official save_image_batch floors 255 x (utils/_utils.py:91); the suite's pool_rounding "
            f"'{m.p.get('pool_rounding', 'round')}'. {int(flips.sum())} of {differ.numel()} values differ by one "
            f"level at an integer boundary of 255 x (round-off of the two sides' float images); one student step on "
            f"the official PNGs as saved: KD loss {raw['loss']:.1e}, gradients {raw['grads'][1]:.1e}. Former finding "
            f"(fixed in 2e3131e, pool_rounding='floor'): rounding made {frac_r:.0%} of the values one level higher "
            f"(official {mean_r:+.2f} levels)")
    run.add(1, "pool images (uint8): official PNGs vs the suite's pool", other, 0.0, note,
            {"other_differences": other, "boundary_flips": int(flips.sum()), "values": differ.numel(),
             "raw_student_step": {"loss": raw["loss"], "grads": raw["grads"][1]}, "round_fraction": frac_r})


@contextlib.contextmanager
def _thetas():
    """Records the theta of every ``affine_grid`` call (the suite's RandomResizedCrop boxes)."""
    store, orig = [], torch.nn.functional.affine_grid

    def rec(theta, *a, **k):
        store.append(theta.detach().clone())
        return orig(theta, *a, **k)

    with _patched(torch.nn.functional, "affine_grid", rec):
        yield store


def _crop_stats(w: torch.Tensor, h: torch.Tensor) -> dict:
    """Box figures in fractions of the image side: clamped to the full side, aspect ratio outside 3/4-4/3, area."""
    r = w / h
    return {"clamped": float(((w >= 1 - 1e-6) | (h >= 1 - 1e-6)).float().mean()),
            "aspect_outside": float(((r < 0.75 - 1e-4) | (r > 4 / 3 + 1e-4)).float().mean()),
            "mean_area": float((w * h).mean())}


def _suite_crop_stats(seed: int, n: int = 20000) -> dict:
    with _thetas() as th:
        random_resized_crop(torch.zeros(n, 1, 4, 4), torch.Generator().manual_seed(seed), scale=(0.25, 1.0))
    return _crop_stats(th[0][:, 0, 0], th[0][:, 1, 1])


def _kornia_crop_stats(syn, seed: int, n: int = 20000) -> dict:
    rrc = syn.aug.transform[1].transforms[0]
    torch.manual_seed(seed)
    src = rrc.forward_parameters(torch.Size((n, *SHAPE)))["src"]
    w = (src[:, 1, 0] - src[:, 0, 0] + 1) / SHAPE[2]
    h = (src[:, 2, 1] - src[:, 1, 1] + 1) / SHAPE[1]
    return _crop_stats(w, h)


def _kornia_boxes(theta: torch.Tensor, H: int, W: int):
    """The suite's boxes as kornia 'src' corners: pixel coordinates of the first / last sampled pixel centres (the
    suite samples with align_corners=False), and whether a box samples outside the pixel centres."""
    w, h, cx, cy = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]

    def pix(c, s, n, i):
        return ((s * ((2 * i + 1) / n - 1) + c + 1) * n - 1) / 2

    x1, x2, y1, y2 = pix(cx, w, W, 0), pix(cx, w, W, W - 1), pix(cy, h, H, 0), pix(cy, h, H, H - 1)
    src = torch.stack([torch.stack([x1, y1], 1), torch.stack([x2, y1], 1), torch.stack([x2, y2], 1),
                       torch.stack([x1, y2], 1)], 1)
    return src, (x1 < 0) | (y1 < 0) | (x2 > W - 1) | (y2 > H - 1)


def _inject_kornia(aug, oy, ox, flip_g, rrc_src, flip_l) -> None:
    """Instance-level ``forward_parameters`` of the four kornia modules returning kornia's own parameters with the
    suite's draws written in; the resized crop in 'resample' mode (the suite's boxes are sub-pixel)."""
    crop, fg = aug.transform[0].transforms[0], aug.transform[0].transforms[1]
    rrc, fl = aug.transform[1].transforms[0], aug.transform[1].transforms[1]
    box = torch.stack([torch.stack([ox, oy], 1), torch.stack([ox + SHAPE[2] - 1, oy], 1),
                       torch.stack([ox + SHAPE[2] - 1, oy + SHAPE[1] - 1], 1),
                       torch.stack([ox, oy + SHAPE[1] - 1], 1)], 1).float()

    def fp(mod, **over):
        cls_fp = type(mod).forward_parameters

        def f(batch_shape):
            p = cls_fp(mod, batch_shape)
            p.update({k: v.to(p[k].dtype) for k, v in over.items()})
            return p
        return f

    crop.forward_parameters = fp(crop, src=box)
    fg.forward_parameters = fp(fg, batch_prob=flip_g.float())
    rrc.flags["cropping_mode"] = "resample"
    rrc._compute_matrix_lazily = False  # resample mode needs the transform matrix
    rrc.forward_parameters = fp(rrc, src=rrc_src)
    fl.forward_parameters = fp(fl, batch_prob=flip_l.float())


def _kornia_views(run: _Run, syn) -> dict:
    """The official kornia views (``syn.aug``) of random images for the suite's crop offsets, flips and boxes,
    against the suite's views."""
    x = torch.rand(BATCH, *SHAPE, generator=torch.Generator().manual_seed(run.seed + 5))
    g = torch.Generator().manual_seed(run.seed + 6)
    ns = types.SimpleNamespace(ctx=types.SimpleNamespace(augment=AugmentSpec(crop_padding=4, flip=True)), gen=g)
    with _Tape(g) as tape, _thetas() as th:
        xg, xl = CMI.synthesis_augment(ns, x), CMI._local_view(ns, x)
    oy, ox = tape.take("randint", (BATCH,)), tape.take("randint", (BATCH,))
    flips = [v < 0.5 for v in tape.items["rand"]]  # global flip, 4 box draws, local flip
    src, border = _kornia_boxes(th[0], SHAPE[1], SHAPE[2])
    _inject_kornia(syn.aug, oy, ox, flips[0], src, flips[-1])
    og, ol = syn.aug(x)
    inner = ~border
    return {"global": tensor_rel_diff(og, run.off.normalizer(xg)), "border_boxes": int(border.sum()),
            "local_interior": tensor_rel_diff(ol[inner], run.off.normalizer(xl)[inner]) if inner.any() else 0.0}


def _cmi_crop_row(run: _Run, head_sd: dict) -> None:
    ss = _suite_crop_stats(run.seed)
    details = {"suite": ss}
    note = ("The suite draws 10 candidate boxes per image (area U(0.25, 1), log-uniform ratio 3/4-4/3) and keeps the "
            "first that fits, as kornia's RandomResizedCrop; it places the box at a continuous position and resamples "
            "with grid_sample (align_corners=False, reflection) where kornia uses integer-pixel boxes. Suite: "
            f"{ss['clamped']:.1%} of boxes at the full width or height (aspect ratio outside 3/4-4/3: "
            f"{ss['aspect_outside']:.1%}), mean area {ss['mean_area']:.3f}")
    if run.off.kornia is None:
        note += ". kornia is not installed: the official boxes and views were not compared (pip install kornia)"
    else:
        syn, _, _ = _cmi_official(run, CMI_BANK, 1, "cmi_crop", head_sd)
        ks, views = _kornia_crop_stats(syn, run.seed), _kornia_views(run, syn)
        details.update(kornia=ks, views=views, kornia_version=run.off.kornia.__version__)
        note += (f"; kornia {run.off.kornia.__version__}: {ks['clamped']:.1%} full-side boxes, aspect outside "
                 f"{ks['aspect_outside']:.1%}, mean area {ks['mean_area']:.3f}. Views for the same draws: global "
                 f"{views['global']:.1e}, local {views['local_interior']:.1e} (bilinear round-off; "
                 f"{views['border_boxes']} of {BATCH} boxes reaching the border left out: there the suite reflects, "
                 "kornia pads with zeros)")
    run.add(1, "CMI local view, RandomResizedCrop boxes: fraction of the suite's clamped to the image side (kornia "
            "redraws such candidates)", ss["clamped"], LOSS_RTOL, note, details)


def _cmi_bank_full_row(run: _Run) -> None:
    """The official full-bank case: two iterations from a bank of 2 x 8 rows filled exactly."""
    m = _cmi_suite(run, 2 * BATCH, 2, "cmi_full")
    syn, _, _ = _cmi_official(run, 2 * BATCH, 2, "cmi_full", m.head.state_dict())
    feats = torch.randn(2 * BATCH, m.bank.data.shape[1], generator=torch.Generator().manual_seed(run.seed + 8))
    m.bank.add(feats)
    syn.mem_bank.add(feats[:BATCH])
    syn.mem_bank.add(feats[BATCH:])  # n_updates == max_size, _ptr == 0
    d = _cmi_suite_round(m, run.seed + 13, detail=True)
    cap_o = _Capture(True)
    out = _cmi_official_round(run, syn, d, cap_o)
    frames = [f for f in cap_o.frames if f["func"] == "synthesize"]
    lo, losses = float(frames[0]["vals"]["loss_cr"]), [f["loss"] for f in frames]
    ls = float(d["cap"].frame("synthesize")["vals"]["parts"]["cr"])
    first = bool(torch.equal(out["synthetic"], frames[0]["vals"]["inputs"]))
    finite = bool(all(torch.isfinite(p).all() for p in syn.head.parameters()))
    note = ("when the bank has been filled exactly "
            "(n_updates == max_size: here 2 x 8 rows; with the scripts' 40960 rows and 256 images a round, after "
            "round 160 of 200) MemoryBank.get_data (contrastive.py:158-166) samples from range(_ptr) = range(0): no "
            f"negatives, and L_cr = mean(rows[:B]) + mean(empty) (:324) = {lo}, so is every loss of the round "
            f"({losses}); the gradients stay finite (the empty mean has none; head finite after the steps: {finite}), "
            "but no iterate beats the first (:330): the round adds its first iterate, the freshly reset generator's "
            f"output, to the pool and its features to the bank (kept the first: {first}). One round in the scripts' "
            "200; afterwards n_updates > max_size and the whole bank is sampled. Suite: "
            f"{len(d['negatives'][0])} negatives, L_cr {ls:.5g}, the lowest-loss iterate kept")
    run.add(1, "memory bank filled exactly (n_updates == bank size): L_cr", rel_diff(lo, ls), LOSS_RTOL, note,
            {"official_L_cr": repr(lo), "official_losses": [repr(v) for v in losses], "suite_L_cr": ls,
             "official_kept_first_iterate": first,
             "official_head_finite": finite},
            departure="an official bug the suite does not share, kept on purpose (docs/official-code-dfkd.md: the "
                      "suite samples the filled rows)")


# ----------------------------------------------------------------------------------------------------------------
# CMI level 3
# ----------------------------------------------------------------------------------------------------------------

def _perturb(seed: int, *modules: nn.Module) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in modules:
            for p in mod.parameters():
                p.mul_(1 + PERTURB * torch.randn(p.shape, generator=g))


def _cmi_l3_suite(run: _Run, steps: int, bank: int) -> dict:
    """The suite's run: ``steps`` rounds of synthesis and student steps, every draw recorded."""
    m = _cmi_suite(run, bank, L3_G_STEPS, "l3")
    head0 = copy.deepcopy(m.head.state_dict())
    opt = torch.optim.SGD(m.trainable(), **SGD)
    rounds, synth, student = [], [], []
    for r in range(steps):
        d = _cmi_suite_round(m, run.seed * 1000 + 17 + r, detail=False)
        st = _suite_student_steps(m, opt, L3_KD_STEPS, _Capture(False))
        d["student"] = [_pool_draws(m, s) for s in st]
        synth += d.pop("cap").losses("synthesize")
        student += [s["loss"] for s in st]
        rounds.append(d)
    return {"rounds": rounds, "head0": head0, "synth": synth, "student": student,
            "state": {k: v.detach().clone() for k, v in m.student.state_dict().items()}}


def _cmi_l3_official(run: _Run, suite: dict, bank: int, mode: str, perturb_seed: int | None = None) -> dict:
    """The official run on the suite's draws, on its own PNG pool as saved; with ``perturb_seed``, from a projection
    head perturbed at round-off (a floor run)."""
    syn, t_o, s_o = _cmi_official(run, bank, L3_G_STEPS, f"l3_{mode}", suite["head0"])
    if perturb_seed is not None:
        _perturb(perturb_seed, syn.head)  # P12
    opt = torch.optim.SGD(s_o.parameters(), **SGD)
    T = run.off.script("cmi").T
    synth, student = [], []
    for d in suite["rounds"]:
        cap = _Capture(False)
        _cmi_official_round(run, syn, d, cap)
        synth += cap.losses("synthesize")
        syn.data_iter = _InjectedPool(_official_pool(syn, run.off), d["student"], layout=True)
        cap = _Capture(False)
        _official_student_steps(run.off, syn, s_o, t_o, opt, T, L3_KD_STEPS, cap)
        student += cap.losses("train")
    return {"synth": synth, "student": student, "state": {_wrn_o2s(k): v for k, v in s_o.state_dict().items()}}


def _curve_diff(a: list, b: list) -> float:
    if len(a) != len(b) or not a:
        return 1.0
    return max((v if math.isfinite(v) else 1.0) for v in (rel_diff(x, y) for x, y in zip(a, b)))


def _per_round(o: dict, s: dict) -> list[float]:
    """The largest relative difference of the two runs' losses in each round (synthesis and student steps)."""
    out = []
    g, k = L3_G_STEPS, L3_KD_STEPS
    for r in range(len(s["synth"]) // g):
        pts = list(zip(o["synth"][r * g:(r + 1) * g], s["synth"][r * g:(r + 1) * g]))
        pts += zip(o["student"][r * k:(r + 1) * k], s["student"][r * k:(r + 1) * k])
        out.append(max((v if math.isfinite(v) else 1.0) for v in (rel_diff(x, y) for x, y in pts)))
    return out


def _divergence(o: dict, s: dict) -> dict:
    """Loss curves (max relative difference), per round, the first round above the tolerance, the final student."""
    name, params = worst(compare_tensors(o["state"], {k: s["state"][k] for k in o["state"]}))
    per_round = _per_round(o, s)
    onset = next((r + 1 for r, v in enumerate(per_round) if v > LOSS_RTOL), None)
    return {"curve": max(_curve_diff(o["synth"], s["synth"]), _curve_diff(o["student"], s["student"])),
            "synthesis_curve": _curve_diff(o["synth"], s["synth"]),
            "student_curve": _curve_diff(o["student"], s["student"]), "final_student": params,
            "final_student_worst": name, "onset": onset, "per_round": per_round}


def _floor(floors: list[dict], steps: int) -> dict:
    """The round-off floor of several perturbed official runs: the largest divergence, the earliest onset."""
    onsets = [f["onset"] or steps + 1 for f in floors]
    return {"curve": max(f["curve"] for f in floors), "final_student": max(f["final_student"] for f in floors),
            "onset": min(onsets), "runs": floors}


def _cmi_level3(run: _Run, steps: int) -> None:
    bank = BATCH * (steps + 2)  # P12: the official full-bank bug is not reached
    run.log(f"level 3: suite run of {steps} rounds")
    suite = _cmi_l3_suite(run, steps, bank)
    runs = {}
    for mode, pseed in (("official", None), ("floor", run.seed + 99), ("floor2", run.seed + 199)):
        run.log(f"level 3: official run ({mode})")
        runs[mode] = _cmi_l3_official(run, suite, bank, mode, pseed)
    div = _divergence(runs["official"], suite)
    floor = _floor([_divergence(runs["official"], runs[m]) for m in ("floor", "floor2")], steps)
    tol_c = max(FLOOR_FACTOR * floor["curve"], LOSS_RTOL)
    tol_p = max(FLOOR_FACTOR * floor["final_student"], GRAD_RTOL)
    early = max(div["per_round"][: floor["onset"] - 1], default=0.0)
    ok = div["curve"] <= tol_c and div["final_student"] <= tol_p and early <= FLOOR_FACTOR * LOSS_RTOL
    note = (f"suite vs official: synthesis loss curve {div['synthesis_curve']:.1e}, student loss curve "
            f"{div['student_curve']:.1e}, final student {div['final_student']:.1e} ({div['final_student_worst']}), "
            f"above {LOSS_RTOL:g} from round {div['onset']}, before the floor's onset at most {early:.1e}. Floor "
            f"(official vs itself, projection head perturbed by {PERTURB:g}, two draws): loss curves "
            f"{floor['curve']:.1e}, final student {floor['final_student']:.1e}, above {LOSS_RTOL:g} from round "
            f"{floor['onset']}. Identical: within {FLOOR_FACTOR:g}x the floor (loss curves {tol_c:.1e}, final student "
            f"{tol_p:.1e}) and, before the floor's onset, within {FLOOR_FACTOR:g}x {LOSS_RTOL:g} (round-off does not "
            "show earlier than there). Each side's own pool (official PNGs as saved)")
    run.add(3, f"{steps} rounds of {L3_G_STEPS} synthesis iterations + {L3_KD_STEPS} student steps: loss curves "
            "(final student, onset in the note)", div["curve"], tol_c, note,
            {"suite_vs_official": div, "floor": floor, "final_student_tolerance": tol_p, "early": early,
             "synthesis_iterations": len(suite["synth"]), "student_steps": len(suite["student"])},
            verdict_="identical" if ok else "differs")


# ----------------------------------------------------------------------------------------------------------------
# DeepInversion
# ----------------------------------------------------------------------------------------------------------------

def _di_suite(run: _Run, keep: str, name: str, mean=None, std=None) -> dict:
    """One suite synthesis step (g_steps 1) with its draws: initial pixels, targets, jitter offsets, flip."""
    params = {**run.suite_params("deepinversion"), "g_steps": 1, "student_batch": BATCH, "keep": keep}
    m = DeepInversion(run.ctx(params, name, run.seed + 200, mean, std))
    cap, pool_x = _Capture(True), []
    with _calls_recorded(m, "add_to_pool", pool_x, lambda obj, x: x.detach().clone()), _Tape(m.gen) as tape, cap:
        with autocast(m.ctx.recipe.precision, "cpu"):
            m.synthesize()
    return {"m": m, "cap": cap, "x0": tape.take("randn", (BATCH, *SHAPE)),
            "targets": tape.take("randint", (BATCH,)).sort().values, "off": tape.take("randint", (2,)).tolist(),
            "flip": bool(tape.take("rand", (1,)).item() < 0.5), "x01": pool_x[0]}


def _di_official(run: _Run, d: dict):
    """``DeepInvSyntheiszer`` as ``datafree_kd.py:247-254`` builds it, one iteration on the suite's draws."""
    a = run.off.script("deepinversion")
    t_o, s_o = run.models.official_teacher(), run.models.official_student()
    s0 = copy.deepcopy(s_o.state_dict())
    syn = run.off.odi.DeepInvSyntheiszer(
        t_o, s_o, num_classes=N_CLASSES, img_size=SHAPE, iterations=1, lr_g=a.lr_g, synthesis_batch_size=BATCH,
        sample_batch_size=BATCH, adv=a.adv, bn=a.bn, oh=a.oh, tv=0.001, l2=0.0, save_dir=str(run.fresh("di_official")),
        transform=run.off.transform, normalizer=run.off.normalizer, device="cpu")
    cap = _Capture(True)
    rnd = _RandomProxy(ints=d["off"], floats=[1.0 if d["flip"] else 0.0])  # official flips if random() > 0.5
    with _patched(run.off.odi, "torch", _TorchProxy([d["x0"]])), _patched(run.off.odi, "random", rnd), cap:
        out = syn.synthesize(targets=d["targets"].clone())
    return syn, t_o, s0, cap, out


def _deepinversion(run: _Run) -> None:
    _recipe_row(run, "deepinversion", _di_batch_note(run))
    last, best = _di_suite(run, "last", "di_last"), _di_suite(run, "best", "di_best")
    syn, t_o, s0, cap_o, out = _di_official(run, last)
    a = run.off.script("deepinversion")
    vo, vs = cap_o.frame("synthesize")["vals"], last["cap"].frame("synthesize")["vals"]
    keys = ("bn", "oh", "adv", "tv")
    off = {**{k: vo[f"loss_{k}"] for k in keys}, "total": vo["loss"]}
    weights = {"official": {"bn": a.bn, "oh": a.oh, "adv": a.adv, "tv": 0.001, "l2": 0.0, "lr_g": a.lr_g},
               "suite": {**{k: last["m"].p[k] for k in (*keys, "lr_g")}, "js_T": last["m"].p["js_temperature"]}}
    _terms_row(run, "synthesis step: L_bn, L_oh, L_adv (-JS, T=3), L_tv, total",
               off, {**{k: vs["parts"].get(k) for k in keys}, "total": vs["loss"]}, weights,
               f"official L_l2 = {float(vo['loss_l2']):.4g} enters with weight 0 (datafree_kd.py:253); the suite "
               "has no such term")
    _add_step_rows(run, "synthesis step (pixels = opt0.g0.0)", _steps(cap_o, last["cap"], {}, {}, adam=True),
                   adam=True)
    clamp = tensor_rel_diff(out["synthetic"], last["x01"])
    run.add(2, "pixels after the Adam step and the clamp, in [0, 1] (the image added to the pool)", clamp, GRAD_RTOL,
            "official normalizer(inputs, reverse) of the last iterate (deepinversion.py:105-109) vs the suite's "
            "keep='last'", {"pixels": clamp})
    _di_student_rows(run, syn, t_o, s0, last, best)
    _di_normalisation_row(run, last)


def _di_student_rows(run: _Run, syn, t_o, s0: dict, last: dict, best: dict) -> None:
    T = run.off.script("deepinversion").T
    sl, sb = _suite_pool_step(last["m"]), _suite_pool_step(best["m"])
    same = all(torch.equal(sl["draws"][k], sb["draws"][k]) for k in ("idx", "oy", "ox", "flip"))
    u8_l, u8_b = last["m"].pool.batches[-1][0], best["m"].pool.batches[-1][0]
    paths = _official_pool(syn, run.off).images
    u8_o = _read_pngs(paths)
    raw = _official_pool_step(run, syn, t_o, s0, T, sl["draws"])
    _write_pngs(paths, u8_l)  # P9
    aligned = _official_pool_step(run, syn, t_o, s0, T, sl["draws"])
    _student_rows(run, aligned, sl, last["m"].student, "student step on a pool batch (KD T=20, SGD)",
                  "suite keep='last'; official PNGs := the suite's uint8 images (P9)")
    kfrac, kmax = _quantisation(u8_l, u8_b)[0], int((u8_l.int() - u8_b.int()).abs().max())
    _effect_row(run, "pool iterate: suite keep='best' (default) vs the official last iterate", aligned, sb,
                best["m"].student,
                f"{kfrac:.0%} of the pool's uint8 values differ (max {kmax} levels); with g_steps 1 the lowest-loss "
                f"iterate is the one before the last Adam step, as whenever the loss falls monotonically; the same "
                f"student batch: {same}",
                departure="departs on purpose: the suite adds the lowest-loss iterate (keep='best'; keep='last' "
                          "reproduces the official, which aliases the optimised tensor; deepinversion.py docstring, "
                          "docs/official-code-dfkd.md)")
    _pool_row(run, last["m"], u8_o, last["x01"], u8_l, _student_compare(raw, sl, last["m"].student))


def _di_batch_note(run: _Run) -> str:
    """One student step's sensitivity to halving the batch (the suite's 128 vs the official 256), at 4 vs 8."""
    m = _di_suite(run, "last", "di_batch")["m"]
    state, out = m.gen.get_state(), {}
    for n in (BATCH, BATCH // 2):
        m.gen.set_state(state)
        m.p["student_batch"] = n
        m.student.zero_grad(set_to_none=True)
        loss, _ = m.student_loss()
        loss.backward()
        out[n] = (float(loss.detach()), {k: p.grad.clone() for k, p in m.student.named_parameters()})
    g = worst(compare_tensors(out[BATCH][1], out[BATCH // 2][1]))
    return (f"; one student step from the same pool with {BATCH // 2} instead of {BATCH} images: KD loss "
            f"{rel_diff(out[BATCH][0], out[BATCH // 2][0]):.1e} rel., gradients {g[1]:.1e} ({g[0]}): half the batch "
            "doubles the variance of the gradient's sampling noise")


NORM_DEPARTURE = ("kept on purpose (docs/official-code-dfkd.md, CIFAR-10 normalisation): the suite normalises "
                  "with CIFAR-10's per-pixel statistics; CMI's registry constants are the widely copied "
                  "(0.2023, 0.1994, 0.2010); an official checkpoint keeps its own constants in backbone.normalize")


def _di_normalisation_row(run: _Run, base: dict) -> None:
    spec = SCENARIOS.get("cifar10")
    other = _di_suite(run, "last", "di_suite_std", tuple(spec.mean), tuple(spec.std))
    const = compare_terms({**{f"std{i}": v for i, v in enumerate(run.off.std)},
                           **{f"mean{i}": v for i, v in enumerate(run.off.mean)}},
                          {**{f"std{i}": v for i, v in enumerate(spec.std)},
                           **{f"mean{i}": v for i, v in enumerate(spec.mean)}})
    vb, vo = base["cap"].frame("synthesize")["vals"], other["cap"].frame("synthesize")["vals"]
    terms = compare_terms({**vb["parts"], "total": vb["loss"]}, {**vo["parts"], "total": vo["loss"]})
    _, c = worst(const)
    kt, t = worst(terms)
    spread = ", ".join(f"{s / o:.2f}" for s, o in zip(spec.std, run.off.std))
    note = (f"the suite's CIFAR-10 std {tuple(spec.std)} (benchmark/scenarios.py, models/wrn.py) vs the official "
            f"{run.off.std} (registry.py:19); the means agree. Beyond the teacher's own training only DeepInversion sees it (its "
            f"pixels live in normalised space): the same N(0, 1) draw is {spread} x as wide in [0, 1] pixels, the "
            f"clamp box and the TV scale change; for the same teacher its first step's loss terms differ by up to "
            f"{t:.1e} ({kt}). The harness builds both sides with the official constants")
    run.add(1, "CIFAR-10 normalisation constants (suite scenario vs official registry)", c, 0.0, note,
            {"constants": const, "deepinversion_first_step": terms}, departure=NORM_DEPARTURE)


# ----------------------------------------------------------------------------------------------------------------
# DAFL, ZSKT, DFQ
# ----------------------------------------------------------------------------------------------------------------

_GEN_LABELS = {"oh": "L_oh", "act": "L_act", "balance": "L_ie (balance)", "bn": "L_bn", "adv": "L_adv (-KL T=1)"}


def _generative(run: _Run, method: str) -> None:
    _recipe_row(run, method)
    a = run.off.script(method)
    m = DFKD_METHODS.get(method)(run.ctx({**run.suite_params(method), "nz": NZ, "student_batch": BATCH}, method,
                                         run.seed + 300))
    g0 = copy.deepcopy(m.generator.state_dict())
    cap_s = _Capture(True)
    with _Tape(m.gen) as tape, cap_s, autocast(m.ctx.recipe.precision, "cpu"):
        m.synthesize()
    z = tape.take("randn", (BATCH, NZ))
    t_o, s_o = run.models.official_teacher(), run.models.official_student()
    s0 = copy.deepcopy(s_o.state_dict())
    gen_o = _load_mapped(run.off.ogen.LargeGenerator(nz=NZ, ngf=NGF, img_size=SHAPE[1], nc=SHAPE[0]), g0, _gen_o2s)
    syn = run.off.ogs.GenerativeSynthesizer(
        t_o, s_o, gen_o, nz=NZ, img_size=SHAPE, iterations=1, lr_g=a.lr_g, synthesis_batch_size=BATCH,
        sample_batch_size=BATCH, adv=a.adv, bn=a.bn, oh=a.oh, act=a.act, balance=a.balance,
        criterion=run.off.datafree.criterions.KLDiv(), normalizer=run.off.normalizer, device="cpu")
    cap_o = _Capture(True)
    with _patched(run.off.ogs, "torch", _TorchProxy([z])), cap_o:
        syn.synthesize()
    _generator_rows(run, m, syn, cap_o, cap_s, a)
    _generative_student_rows(run, method, m, syn, t_o, s0)


def _generator_rows(run: _Run, m, syn, cap_o: _Capture, cap_s: _Capture, a: argparse.Namespace) -> None:
    vo, vs = cap_o.frame("synthesize")["vals"], cap_s.frame("synthesize")["vals"]
    w_o = {k: float(getattr(a, k)) for k in _GEN_LABELS}
    w_s = {k: float(m.p.get(k, 0.0)) for k in _GEN_LABELS}
    used = [k for k in _GEN_LABELS if w_o[k] or w_s[k]]
    zero = ", ".join(f"{k} {float(vo[f'loss_{k}'].sum()):.4g}" for k in _GEN_LABELS if k not in used)
    _terms_row(run, f"generator step: {', '.join(_GEN_LABELS[k] for k in used)}, total",
               {**{k: vo[f"loss_{k}"] for k in used}, "total": vo["loss"]},
               {**{k: vs["out"].get(k) for k in used}, "total": vs["loss"]}, {"official": w_o, "suite": w_s},
               f"weight 0 on both sides: the official computes and adds x 0 ({zero}), the suite skips them")
    st = _steps(cap_o, cap_s, _names(gen=(syn.generator, _gen_o2s)), _names(gen=(m.generator, _same)), adam=True)
    _add_step_rows(run, "generator step", st, adam=True)


def _generative_student_rows(run: _Run, method: str, m, syn, t_o, s0: dict) -> None:
    gen_state = copy.deepcopy(m.generator.state_dict())  # after the generator step, before the student's
    cap = _Capture(True)
    step = _suite_student_steps(m, torch.optim.SGD(m.trainable(), **SGD), 1, cap)[0]
    s, z2 = {"loss": step["loss"], "cap": cap}, step["tape"].take("randn", (BATCH, NZ))
    T = _official_recipe(method, run.off.script(method))["temperature"]
    res = {}
    for variant in ("train", "eval"):
        _load_mapped(syn.generator, gen_state, _gen_o2s).train()  # P10
        s_o, cap_o = run.models.official_student(s0), _Capture(True)
        with contextlib.ExitStack() as stack:
            stack.enter_context(_patched(run.off.ogs, "torch", _TorchProxy([z2])))
            if variant == "train":
                stack.enter_context(_patched(syn.generator, "eval", lambda: syn.generator))  # P10
            _official_student_steps(run.off, syn, s_o, t_o, torch.optim.SGD(s_o.parameters(), **SGD), T, 1, cap_o)
        res[variant] = {"loss": cap_o.frame("train")["vals"]["loss_s"], "cap": cap_o, "student": s_o}
    _student_rows(run, res["train"], s, m.student, "student step on a generator batch (KL T=1, SGD), generator mode "
                  "aligned", "official sample() with generator.eval() a no-op and the suite's generator (P10)")
    _effect_row(run, "generator mode when sampling student batches: suite train (batch statistics) vs official eval "
                "(running statistics)", res["eval"], s, m.student,
                "measured after one generator step, whose train-mode forward moved the running statistics once "
                "(momentum 0.1) from their initial (0, 1)",
                departure="departs on purpose: the suite samples with the generator in train mode "
                          "(docs/official-code-dfkd.md: 'keeps the generator in train mode when sampling, as DFAD's "
                          "official code does'); the official sample() calls generator.eval() (generative.py:79)")


# ----------------------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------------------

def run(method: str, official: Path, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """The rows of one method (levels 1-2; level 3 for ``cmi`` when ``steps`` > 0)."""
    if method not in METHODS:
        raise ValueError(f"{method!r} is not one of {METHODS}")
    rng = torch.get_rng_state()
    try:
        with tempfile.TemporaryDirectory(prefix="fidelity-cmi-") as tmp, _official_env(Path(official)) as off, \
                _instrumented():
            r = _Run(method, off, seed, commit, Path(tmp))
            r.log(f"levels 1-2 (official {off.path}, kornia {'installed' if off.kornia else 'not installed'})")
            if method == "cmi":
                _cmi(r)
                if steps > 0:
                    _cmi_level3(r, steps)
            elif method == "deepinversion":
                _deepinversion(r)
            else:
                _generative(r, method)
            if steps > 0 and method != "cmi":
                r.log("level 3 is implemented for cmi only: --steps ignored")
            r.log("done")
            return r.rows
    finally:
        torch.set_rng_state(rng)
