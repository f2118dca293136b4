"""The suite's LwF, EWC, iCaRL, EEIL and LwM against FACIL (mmasana/FACIL,
``src/approach/{lwf,ewc,icarl,eeil,lwm}.py``): one later-phase training step of each, from one state, on both sides.

What is compared (levels of ``benchmarks.fidelity.common``; level 3 is not implemented here):
* ``lwf`` (tasks 4/3/3, step of task 2, no exemplars): CE, distillation (T 2), total; gradients; SGD update.
* ``ewc`` (tasks 4/3, step of task 1): CE, quadratic penalty, total; gradients; update; the Fisher diagonal of the
  previous phase as its own level-2 row (FACIL ``compute_fisher_matrix_diag`` vs Avalanche
  ``EWCPlugin.compute_importances`` on the same 24 images).
* ``icarl`` (tasks 4/3/3, batch of new images and old-class exemplars): FACIL's iCaRL criterion is *softmax CE over
  all heads + lamb x sum over old classes of the sigmoid BCE against the old model* (not the paper's all-sigmoid BCE);
  the suite's loss is the paper's (one BCE, mean over batch x seen classes, old columns targeted at the old model's
  sigmoids).  So the distillation share is compared exactly (FACIL's term = n_seen x the suite's old-column share,
  value and gradient w.r.t. the old logits), the rest is one "departs on purpose" row.  Nearest-mean classifier:
  FACIL ``compute_mean_of_exemplars`` / ``classify`` vs Avalanche's ``compute_class_means`` and the suite's
  ``scores`` on the same exemplars.
* ``eeil`` (tasks 4/3/3, exemplars): unbalanced-stage CE + one distillation term per old class group, total;
  gradients; update.  (The balanced fine-tuning stage is not compared.)
* ``lwm`` (tasks 4/3/3, no exemplars): CE (current head), logit distillation, attention distillation, total; the
  Grad-CAM maps of both models (level 1); gradients; update.

Identical state.  One suite network (``resnet20``, 12 head rows of which the first 10 are seen by task 2) gets a
"trained-like" state from a seeded generator (random BatchNorm affine parameters, running statistics estimated on
images of the kind used below, a head calibrated so that its logits spread over the classes): that is the previous
model; the current model is it plus seeded noise (5 % of each tensor's spread, EWC 1 %, BN statistics included), a
state in the middle of the later phase.  FACIL's network is its own ``LLL_Net`` around its own
``ResNet(BasicBlock, [3, 3, 3])`` (``networks/resnet32.py``: "n=3 for ResNet-20"), one ``nn.Linear`` head per task;
the weights are mapped name by name (stem = conv1/bn1, stages = layer1-3, shortcut = downsample) and FACIL's per-task
heads concatenated are the suite's head rows ``[0, 4), [4, 7), [7, 10)`` (the suite's inactive rows 10-11 have no
FACIL counterpart and are left out of every comparison).  FACIL's losses (and its task-agnostic evaluation) use the
heads concatenated, so its logits equal the suite's active slice.  The previous model enters FACIL as FACIL does it:
the network with the old heads goes through the approach's own ``post_train_process`` (LwF / iCaRL / EEIL: frozen
eval copy; LwM: a plain copy; EWC: parameters saved and the Fisher computed), then ``add_head`` and the current
weights.  The suite side is the real method object (``METHODS``), its previous model and memory set through its own
``load_state_dict`` (EWC: its plugin's ``after_training_exp`` on the previous state), and the step is Avalanche's own
``training_epoch`` on a one-batch loader.  Same batch: smooth random images, fed to the suite as ``augment_batch``
with no augmentation yields them (floats in [0, 1]) and to FACIL normalised by the suite's ``InputNormalizer`` (the
same arithmetic as FACIL's ToTensor + Normalize, so both networks see bitwise the same input).  No random draw
happens inside either step (FACIL's ``noise_grad`` is off, LwM's and EEIL's draws are not on this path).  Optimiser on
both sides: SGD lr 0.1, momentum 0.9, weight decay 5e-4 (FACIL: its approach's own ``_get_optimizer``; suite:
``benchmark.training.make_optimizer``); FACIL clips the gradient norm at 10000 (never reached here; the norm is in
the rows' details).  Device: every FACIL approach takes ``device`` as an argument and moves batches with
``.to(device)``: ``torch.device("cpu")`` is passed, no CUDA call is on these paths.

Departures.  Each method first runs with every known difference aligned (rows "aligned": a finding if not
identical), then once per difference with only that one left as each side runs it: the measured size is that row's
``max_diff``.  Verdict ``departs on purpose`` when the suite documents the choice (module docstring / README; the
note says which side follows the paper), else ``differs``.  The alignments and monkeypatches, with their reasons:
* FACIL's exemplar set is replaced by a stand-in of length 1 (only ``len()`` is read) while FACIL builds its optimiser
  (LwF / EWC / LwM: all parameters, not only the current head) or runs its criterion (LwF / EWC: CE over all heads):
  FACIL's own with-exemplars branches, equal to the suite's choices; sizes in the ``old_heads`` / ``ce_seen`` rows.
* LwF: FACIL ``lamb`` = T^2 (the suite's Hinton factor); LwF / LwM: ``appr.cross_entropy`` bound with ``eps=0``
  (FACIL smooths its soft outputs by 1e-5); the KL-vs-CE value offset (lamb x entropy of the old soft targets, no
  gradient) subtracted from FACIL's distillation value by the harness.
* EWC: FACIL ``fi_sampling_type='true'``, ``alpha=0`` (no 0.5 merge at task 1), ``lamb`` x 2 (its penalty has the
  paper's 1/2); its network's ``train()`` made ``eval()`` during ``compute_fisher_matrix_diag`` (Avalanche computes
  the importances in eval mode); the suite's head importances zeroed (FACIL penalises the backbone only); the Fisher
  data a multiple of the batch size (24 images; FACIL drops a partial last batch, measured with 20).
  Only task 1 is compared: at task >= 2 FACIL's single merged penalty anchored at the last parameters and the
  suite's separate penalties anchored at each phase's parameters cannot be aligned.
* EEIL: FACIL ``_finetuning_balanced=True`` during the unbalanced step so that its loop covers every old head (its
  off-by-one skips the newest); FACIL ``eeil.F`` replaced by a proxy whose ``binary_cross_entropy`` records each
  per-head value (always) and, aligned, returns the official EEIL soft cross-entropy of the same two softmaxes.
* LwM: FACIL ``lwm.GradCAM`` replaced by a subclass calling FACIL's own ``GradCAM.__call__`` once per sample (batch 1:
  no mixing of the batch's classes) and giving the current model the old model's classes (``class_indices``);
  ``appr.attention_distillation_loss`` wrapped to L2-normalise the flattened maps first; the suite's attention term
  (value and maps) taken from a pass in eval mode (FACIL's Grad-CAM is an eval pass) and its step run with gamma 0
  (FACIL's attention term sends no gradient: hooks detach).
* Spies that change nothing: FACIL ``appr.criterion`` wrapped to evaluate its terms (weights zeroed one at a time on
  the same arguments), the suite's ``baselines.eeil.soft_cross_entropy`` and ``baselines.lwm.gradcam_map`` wrapped to
  record their values.
Nothing is stubbed: every FACIL import (torchvision, PIL, numpy) is in the suite's environment.

Sizes are those of this synthetic state (one batch of 8, a random network): the BatchNorm-mode rows (EWC
``fisher_bn``, LwM ``cur_map_mode``) depend on how far a batch's statistics are from the running ones, the label and
``eps`` rows on how confident the network is; other seeds (``--seed``) give other sizes, the same verdicts.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import baselines.eeil as suite_eeil
import baselines.lwm as suite_lwm
from baselines import ewc as _ewc, icarl as _icarl, lwf as _lwf  # noqa: F401  (register the methods)
from baselines.icarl_loss import old_logits as suite_old_logits
from benchmark.augment import AugmentSpec, augment_batch
from benchmark.methods import METHODS, MethodContext
from benchmark.models import build_model
from benchmark.training import PhaseRecipe, make_optimizer
from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_tensors, compare_terms, official_imports,
                                        step_change_rel_diff, tensor_rel_diff, verdict, worst)

REPOSITORY = "mmasana/FACIL"
FACIL_PACKAGES = ("approach", "networks", "datasets", "loggers")
DEVICE = torch.device("cpu")
ARCH, FACIL_BLOCKS = "resnet20", [3, 3, 3]
NUM_CLASSES = 12  # suite head rows; FACIL's heads cover the first sum(tasks)
BATCH = 8
LR, MOMENTUM, WD = 0.1, 0.9, 5e-4
RECIPE = PhaseRecipe(epochs=1, lr=LR, optimizer="sgd", weight_decay=WD, momentum=MOMENTUM, batch_size=BATCH)
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
MEMORY_PER_CLASS = 3  # iCaRL's nearest-mean comparison

P_OLD_HEADS = ("FACIL optimiser built with a length-1 stand-in exemplar set: its with-exemplars branch puts every "
               "parameter in the SGD (the suite trains all head rows); size in the old_heads row")
P_CE_SEEN = ("FACIL criterion run with a length-1 stand-in exemplar set: CE over all heads (the suite's CE over the "
             "seen classes); size in the ce_seen row")
P_EPS = "FACIL appr.cross_entropy bound with eps=0 (no 1e-5 smoothing of the soft outputs); size in the eps row"
P_SPY = ("FACIL appr.criterion wrapped to evaluate its terms (weights zeroed one at a time on the same arguments); "
         "returns the unchanged total")


# -- data structures ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Departure:
    key: str
    side: str  # "facil" | "suite" | "both": which side's run the alignment changes
    what: str
    documented: str = ""  # where the suite documents it and which side follows the paper; "" = undocumented


@dataclass
class Side:
    """One side's step, every tensor under FACIL's parameter names."""

    terms: dict
    grads: dict
    before: dict
    after: dict
    buffers: dict
    patches: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


@dataclass
class Setup:
    tasks: tuple
    t: int
    old: dict  # suite state_dict of the previous model
    cur: dict  # suite state_dict of the current model
    x: torch.Tensor  # uint8 batch
    y: torch.Tensor
    fx: torch.Tensor | None = None  # EWC: the previous phase's images for the Fisher pass (uint8)
    fy: torch.Tensor | None = None
    memory: dict | None = None  # iCaRL: class -> uint8 exemplars

    @property
    def seen(self) -> int:
        return sum(self.tasks[: self.t + 1])

    @property
    def n_old(self) -> int:
        return sum(self.tasks[: self.t])

    @property
    def heads(self) -> tuple:
        return self.tasks[: self.t + 1]

    def suite_x(self) -> torch.Tensor:
        """What the suite's loader yields (``augment_batch`` without augmentation: floats in [0, 1])."""
        return augment_batch(self.x.clone(), AugmentSpec(), torch.Generator())

    def facil_x(self, x=None) -> torch.Tensor:
        """FACIL's input: the same images normalised as the suite's model does (FACIL's ToTensor + Normalize)."""
        norm = build_model(ARCH, NUM_CLASSES, 3, MEAN, STD).backbone.normalize
        with torch.no_grad():
            return norm(self.suite_x() if x is None else x)


@dataclass
class Spec:
    method: str
    tasks: tuple
    facil: Callable  # (Fm, setup, align) -> Side
    suite: Callable  # (setup, align) -> Side
    departures: tuple = ()
    setup_kw: dict = field(default_factory=dict)
    extra_compare: Callable | None = None  # (f, s) -> {name: (level, compared, {item: rel})}
    rows: Callable | None = None  # replaces the generic rows: (spec, Fm, setup, commit) -> [Row]


# -- FACIL import --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def facil_modules(official: Path):
    """FACIL's modules from ``official/src`` (FACIL imports its packages top-level: approach, networks, datasets,
    loggers); any module of those names already loaded is set aside meanwhile."""
    shadowed = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] in FACIL_PACKAGES}
    try:
        with official_imports(Path(official) / "src", *FACIL_PACKAGES):
            imp = importlib.import_module
            yield SimpleNamespace(lwf=imp("approach.lwf"), ewc=imp("approach.ewc"), icarl=imp("approach.icarl"),
                                  eeil=imp("approach.eeil"), lwm=imp("approach.lwm"),
                                  network=imp("networks.network"), resnet=imp("networks.resnet32"),
                                  exemplars=imp("datasets.exemplars_dataset"))
    finally:
        sys.modules.update(shadowed)


# -- identical state -----------------------------------------------------------------------------------------------
def smooth_images(n: int, gen: torch.Generator) -> torch.Tensor:
    """Low-frequency random images, each with its own contrast and brightness."""
    a = torch.empty(n, 1, 1, 1).uniform_(0.3, 1.0, generator=gen)
    b = torch.rand(n, 3, 1, 1, generator=gen) * (1 - a)
    low = torch.rand(n, 3, 8, 8, generator=gen) * a + b
    return (F.interpolate(low, size=32, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


def trained_like(net: nn.Module, gen: torch.Generator) -> None:
    """BatchNorm affine parameters away from their initial values, running statistics estimated on images of the
    same kind (as training leaves them), a head whose logits spread over the classes."""
    with torch.no_grad():
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.weight.uniform_(0.6, 1.4, generator=gen)
            m.bias.uniform_(-0.2, 0.2, generator=gen)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the estimation batches
        net.train()
        for _ in range(4):
            net(augment_batch(smooth_images(32, gen), AugmentSpec(), gen))
        for m in bns:
            m.momentum = 0.1
            m.num_batches_tracked.fill_(100)
        # the head: random directions on the centred features (ReLU features share a large common part), logit
        # spread ~2, per-class offsets
        net.eval()
        f = net.backbone(augment_batch(smooth_images(64, gen), AugmentSpec(), gen))
        mu, spread = f.mean(0), (f - f.mean(0)).std()
        w = torch.randn(net.head.weight.shape, generator=gen) / (spread * f.shape[1] ** 0.5) * 2.0
        net.head.weight.copy_(w)
        net.head.bias.copy_(-(w @ mu) + 0.3 * torch.randn(net.head.bias.shape, generator=gen))
        net.train()


def perturbed(state: dict, gen: torch.Generator, rel: float = 0.05) -> dict:
    out = {}
    for k, v in state.items():
        v = v.clone()
        if v.is_floating_point() and v.numel() > 1 and not k.startswith("backbone.normalize."):
            v = v + rel * v.std() * torch.randn(v.shape, generator=gen)
            v = v.abs() if k.endswith("running_var") else v
        out[k] = v
    return out


def make_setup(tasks: tuple, seed: int, exemplars: bool = False, fisher: int = 0, memory: int = 0,
               rel: float = 0.05) -> Setup:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = build_model(ARCH, NUM_CLASSES, 3, MEAN, STD)
    trained_like(net, gen)
    old = {k: v.clone() for k, v in net.state_dict().items()}
    t = len(tasks) - 1
    lo, hi = sum(tasks[:t]), sum(tasks)
    x = smooth_images(BATCH, gen)
    if exemplars:  # half new images, half old-class exemplars
        y = torch.cat([torch.randint(lo, hi, (BATCH // 2,), generator=gen),
                       torch.randint(0, lo, (BATCH - BATCH // 2,), generator=gen)])
    else:
        y = torch.randint(lo, hi, (BATCH,), generator=gen)
    s = Setup(tuple(tasks), t, old, perturbed(old, gen, rel), x, y)
    if fisher:
        s.fx, s.fy = smooth_images(fisher, gen), torch.arange(fisher) % tasks[0]
    if memory:
        s.memory = {c: smooth_images(memory, gen) for c in range(hi)}
    return s


def facil_key(k: str) -> str:
    k = k.replace("backbone.stem.0.", "model.conv1.").replace("backbone.stem.1.", "model.bn1.")
    m = re.fullmatch(r"backbone\.stages\.(\d+)\.(\d+)\.(.+)", k)
    if m:
        k = f"model.layer{int(m[1]) + 1}.{m[2]}.{m[3].replace('shortcut.', 'downsample.')}"
    return k


def to_facil(named: dict, tasks: tuple) -> dict:
    """Suite-named tensors -> FACIL names; the head's rows split into FACIL's per-task heads (rows beyond
    ``sum(tasks)`` dropped); the input normaliser's buffers (no FACIL counterpart) and ``None`` left out."""
    out = {}
    for k, v in named.items():
        if v is None or k.startswith("backbone.normalize."):
            continue
        if k in ("head.weight", "head.bias"):
            o = 0
            for i, n in enumerate(tasks):
                out[f"heads.{i}.{k[5:]}"] = v[o:o + n].detach().clone()
                o += n
            continue
        out[facil_key(k)] = v.detach().clone()
    return out


def num(x) -> float:
    return float(x.detach()) if torch.is_tensor(x) else float(x)


def entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    q = F.softmax(logits / temperature, 1)
    return -(q * q.log()).sum(1).mean()


# -- FACIL side ----------------------------------------------------------------------------------------------------
def facil_net(Fm, state: dict, heads: tuple):
    net = Fm.network.LLL_Net(Fm.resnet.ResNet(Fm.resnet.BasicBlock, FACIL_BLOCKS), remove_existing_head=True)
    for n in heads:
        net.add_head(n)
    net.load_state_dict(to_facil(state, heads))
    return net.to(DEVICE)


def facil_exemplars(Fm, setup: Setup, per_class: int = 0):
    return Fm.exemplars.ExemplarsDataset(facil_transform(), list(range(setup.seen)),
                                         num_exemplars_per_class=per_class, exemplar_selection="herding")


def facil_transform():
    """PIL image -> normalised CHW tensor with the suite's normaliser (FACIL's ToTensor + Normalize arithmetic)."""
    norm = build_model(ARCH, NUM_CLASSES, 3, MEAN, STD).backbone.normalize

    def tf(img):
        with torch.no_grad():
            return norm(torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0))[0]
    return tf


def facil_appr(mod, net, exemplars, **kw):
    return mod.Appr(net, DEVICE, nepochs=1, lr=LR, momentum=MOMENTUM, wd=WD, exemplars_dataset=exemplars, **kw)


def facil_later_phase(Fm, mod, setup: Setup, exemplars=None, **kw):
    """FACIL's flow into task t: the network with the old heads, the approach's own ``post_train_process`` (the
    previous model), then ``add_head`` and the current weights."""
    net = facil_net(Fm, setup.old, setup.tasks[: setup.t])
    appr = facil_appr(mod, net, exemplars if exemplars is not None else facil_exemplars(Fm, setup), **kw)
    appr.post_train_process(setup.t - 1, None)
    net.add_head(setup.tasks[setup.t])
    net.load_state_dict(to_facil(setup.cur, setup.heads))
    return appr


class _Sized:
    """Stands in for FACIL's exemplar set where only ``len()`` is read."""

    def __len__(self):
        return 1


@contextlib.contextmanager
def exemplar_branch(appr, on: bool):
    real = appr.exemplars_dataset
    if on:
        appr.exemplars_dataset = _Sized()
    try:
        yield
    finally:
        appr.exemplars_dataset = real


def with_weights(appr, orig, args, **weights):
    """FACIL's criterion on the same arguments with some loss weights changed (restored after)."""
    saved = {k: getattr(appr, k) for k in weights}
    for k, v in weights.items():
        setattr(appr, k, v)
    try:
        return orig(*args)
    finally:
        for k, v in saved.items():
            setattr(appr, k, v)


def no_eps(appr) -> str:
    appr.cross_entropy = functools.partial(type(appr).cross_entropy, appr, eps=0.0)
    return P_EPS


def named(net) -> tuple[dict, dict]:
    return ({n: p.detach().clone() for n, p in net.named_parameters()},
            {n: b.detach().clone() for n, b in net.named_buffers()})


def facil_step(appr, setup: Setup, spy, stub_opt=False, stub_crit=False) -> Side:
    """FACIL's own ``train_epoch`` on a one-batch loader, ``appr.criterion`` wrapped by ``spy(orig, args)``."""
    net = appr.model
    for p in net.parameters():
        p.grad = None
    with exemplar_branch(appr, stub_opt):
        appr.optimizer = appr._get_optimizer()
    before, _ = named(net)
    orig = appr.criterion
    appr.criterion = lambda *args: spy(orig, args)
    try:
        with exemplar_branch(appr, stub_crit):
            appr.train_epoch(setup.t, [(setup.facil_x(), setup.y.clone())])
    finally:
        del appr.criterion
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}
    after, buffers = named(net)
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())).item()
    patches = [P_SPY] + ([P_OLD_HEADS] if stub_opt else []) + ([P_CE_SEEN] if stub_crit else [])
    return Side({}, grads, before, after, buffers, patches, info={"facil_grad_norm (clip 10000)": norm})


# -- suite side ----------------------------------------------------------------------------------------------------
class _Scenario:
    """What the methods read of a scenario: class groups, seen counts, the (absent) augmentation."""

    def __init__(self, tasks):
        c = np.cumsum([0, *tasks])
        self.bounds = [(int(a), int(b)) for a, b in zip(c[:-1], c[1:])]
        self.spec = SimpleNamespace(augment=AugmentSpec())
        self.data = SimpleNamespace(x_train=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))

    def seen_after(self, k: int) -> int:
        return self.bounds[k][1]

    def group_bounds(self):
        return list(self.bounds)


class _LossRecorder(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.loss = None

    def before_backward(self, strategy, **kwargs):
        self.loss = num(strategy.loss)


def suite_method(name: str, setup: Setup, **params):
    net = build_model(ARCH, NUM_CLASSES, 3, MEAN, STD)
    net.load_state_dict(setup.old)
    net.set_active_classes(setup.n_old)
    prm = {**METHODS.entry(name).extra["defaults"], **params}
    ctx = MethodContext(net, _Scenario(setup.tasks), lambda k: RECIPE, prm, DEVICE, seed=0)
    return METHODS.get(name)(ctx)


def suite_enter_phase(m, setup: Setup, *plugins) -> None:
    """The phase start as the runner / ``SuiteTrainingPlugin`` make it (data and optimiser are set per step)."""
    s = m.strategy
    s.clock.train_exp_counter = setup.t
    m.suite_plugin.phase = setup.t
    m.model.set_active_classes(setup.seen)
    for p in plugins:
        p.before_training_exp(s)


def suite_dry(m, setup: Setup, train: bool = True, inspect=None):
    """Avalanche's step up to the backward (``SGDUpdate.training_epoch``'s order): forward, criterion, every plugin's
    ``before_backward``; the network's state is restored after.  Returns (criterion value, total) as floats."""
    s, net = m.strategy, m.model
    net.load_state_dict(setup.cur)
    s.mbatch = [setup.suite_x(), setup.y.clone(), torch.zeros(len(setup.y), dtype=torch.long)]
    s._unpack_minibatch()
    s.model.train(train)
    try:
        s._before_training_iteration()
        s.loss = s._make_empty_loss()
        s._before_forward()
        s.mb_output = s.forward()
        s._after_forward()
        ce = s.criterion()
        s.loss += ce
        s._before_backward()
        if inspect:
            inspect(s)
    finally:
        m.suite_plugin.leave_autocast()
    net.load_state_dict(setup.cur)
    return num(ce), num(s.loss)


def suite_step(m, setup: Setup) -> Side:
    """Avalanche's own ``training_epoch`` on a one-batch loader with the suite's SGD."""
    s, net = m.strategy, m.model
    net.load_state_dict(setup.cur)
    for p in net.parameters():
        p.grad = None
    before, _ = named(net)
    s.optimizer = make_optimizer(m.suite_plugin.params_for(s), RECIPE)
    s.dataloader = [[setup.suite_x(), setup.y.clone(), torch.zeros(len(setup.y), dtype=torch.long)]]
    s.model.train()
    rec = _LossRecorder()
    s.plugins.append(rec)
    try:
        s.training_epoch()
    finally:
        s.plugins.remove(rec)
        m.suite_plugin.leave_autocast()
    h = setup.heads
    grads = to_facil({n: p.grad for n, p in net.named_parameters()}, h)
    after, buffers = named(net)
    return Side({}, grads, to_facil(before, h), to_facil(after, h), to_facil(buffers, h),
                info={"suite_step_loss": rec.loss})


@contextlib.contextmanager
def recording(module, name: str, calls: list):
    """Wraps ``module.name`` to append each return value to ``calls`` (behaviour unchanged)."""
    orig = getattr(module, name)

    def rec(*a, **kw):
        v = orig(*a, **kw)
        calls.append(v.detach().clone())
        return v
    setattr(module, name, rec)
    try:
        yield
    finally:
        setattr(module, name, orig)


# -- LwF -----------------------------------------------------------------------------------------------------------
DOC = "docs/official-code-cil-baselines.md (Departures from FACIL kept on purpose): "
LWF_DEPARTURES = (
    Departure("t2", "facil", "distillation scale: the suite multiplies its KL by T^2 = 4 (Hinton), FACIL has no T^2",
              "baselines/lwf.py docstring and README (T^2 restored); FACIL follows the LwF paper (no T^2)"),
    Departure("kl", "facil", "distillation value: the suite's KL vs FACIL's cross-entropy, apart by lamb x the entropy "
              "of the old soft targets (a constant: no gradient)",
              "baselines/lwf.py docstring (Avalanche's KL term); FACIL's CE is the LwF paper's L_old"),
    Departure("eps", "facil", "FACIL adds 1e-5/n to its soft outputs and renormalises before the log (the LwF paper "
              "and the suite do not)", DOC + "the suite follows the LwF paper"),
    Departure("ce_seen", "facil", "classification term: FACIL without exemplars = CE over the current task's head (the "
              "LwF paper's new-task loss); the suite = Avalanche Naive's CE over every seen class",
              DOC + "single-head class-incremental training, as every baseline of the suite"),
    Departure("old_heads", "facil", "FACIL without exemplars leaves the old heads out of its optimiser (frozen); the "
              "suite's SGD updates every head row (old ones via distillation and CE)",
              DOC + "single-head class-incremental training, as every baseline of the suite"),
)


def facil_lwf(Fm, setup: Setup, align) -> Side:
    appr = facil_later_phase(Fm, Fm.lwf, setup, lamb=1.0, T=2)
    patches = []
    if "t2" in align:
        appr.lamb = float(appr.T) ** 2
        patches.append("FACIL lamb = T^2 = 4 (its own weight): the suite's T^2 factor; size in the t2 row")
    if "eps" in align:
        patches.append(no_eps(appr))
    terms = {}

    def spy(orig, args):
        total = orig(*args)
        with torch.no_grad():
            ce = with_weights(appr, orig, args, lamb=0.0)
            kd = total - ce
            if "kl" in align:
                kd = kd - appr.lamb * entropy(torch.cat(args[3][: setup.t], 1), float(appr.T))
        terms.update(ce=num(ce), kd=num(kd), total=num(ce + kd))
        return total
    side = facil_step(appr, setup, spy, stub_opt="old_heads" in align, stub_crit="ce_seen" in align)
    if "kl" in align:
        patches.append("harness: lamb x entropy(softmax(old / T)) subtracted from FACIL's distillation value")
    side.terms, side.patches = terms, side.patches + patches
    return side


def suite_lwf(setup: Setup, align) -> Side:
    m = suite_method("lwf", setup)
    m.load_state_dict({"expcount": setup.t, "prev_model": setup.old, "prev_classes": {0: list(range(setup.n_old))}})
    suite_enter_phase(m, setup)
    ce, total = suite_dry(m, setup)
    side = suite_step(m, setup)
    side.terms = {"ce": ce, "kd": total - ce, "total": total}
    return side


# -- EWC -----------------------------------------------------------------------------------------------------------
EWC_DEPARTURES = (
    Departure("fisher_labels", "facil", "Fisher labels: FACIL's default fi_sampling_type 'max_pred' (the model's "
              "argmax) vs the training labels (Avalanche)",
              "baselines/ewc.py docstring (squared minibatch gradients of the CE over the phase's training data); "
              "neither side is the paper's expectation over the model's own predictive distribution"),
    Departure("fisher_bn", "facil", "BatchNorm mode of the Fisher pass: FACIL train() (batch statistics; it also moves "
              "the running statistics), Avalanche eval()", DOC + "Avalanche's EWCPlugin as released"),
    Departure("alpha", "facil", "Fisher merge: FACIL keeps alpha x old + (1 - alpha) x new with alpha 0.5, so its "
              "Fisher after task 0 is halved; the suite keeps one penalty per past phase",
              "baselines/ewc.py docstring and README (Avalanche 'separate' mode); the suite follows the paper's "
              "per-task penalties"),
    Departure("half", "facil", "penalty scale: FACIL lamb/2 x sum F (theta - theta*)^2 (the paper's Eq. 3), Avalanche "
              "lamb x sum F (...)^2 without 1/2: at the same lamb 5000 the suite's penalty is twice FACIL's",
              DOC + "Avalanche's EWCPlugin as released; lambda is a tuned constant"),
    Departure("fisher_batches", "both", "Fisher sample count: FACIL iterates len(data) // batch_size full batches (the "
              "last partial batch is dropped) and divides by that many samples, Avalanche averages the squared "
              "gradients of every batch, the partial one included; measured with 20 images (batches 8, 8, 4)",
              DOC + "Avalanche's EWCPlugin as released"),
    Departure("head", "suite", "penalised parameters: FACIL the feature extractor only (per-task heads never), the "
              "suite every parameter, its head rows of the old classes included",
              DOC + "a single head's old rows need the penalty"),
    LWF_DEPARTURES[3],
    LWF_DEPARTURES[4],
)


def fisher_count(setup: Setup, align) -> int:
    """Images of the Fisher pass: all (a multiple of the batch size) when aligned, else 20 (a partial last batch)."""
    return len(setup.fy) if "fisher_batches" in align else 20


@contextlib.contextmanager
def bn_eval(net):
    """``net.train()`` becomes ``eval()`` (FACIL's Fisher pass calls ``self.model.train()``)."""
    net.train = lambda mode=True: nn.Module.train(net, False)
    try:
        yield
    finally:
        del net.train


def facil_ewc(Fm, setup: Setup, align) -> Side:
    net = facil_net(Fm, setup.old, setup.tasks[:1])
    appr = facil_appr(Fm.ewc, net, facil_exemplars(Fm, setup), lamb=5000.0 * (2 if "half" in align else 1),
                      alpha=0.0 if "alpha" in align else 0.5,
                      fi_sampling_type="true" if "fisher_labels" in align else "max_pred")
    patches = [p for k, p in (("half", "FACIL lamb 10000 (undoes its 1/2)"),
                              ("alpha", "FACIL alpha 0 (its option): no 0.5 merge"),
                              ("fisher_labels", "FACIL fi_sampling_type 'true' (its option)"),
                              ("fisher_bn", "FACIL network's train() made eval() in compute_fisher_matrix_diag"))
               if k in align]
    appr.optimizer = appr._get_optimizer()
    n = fisher_count(setup, align)
    loader = DataLoader(TensorDataset(setup.facil_x(setup.fx[:n]), setup.fy[:n]), batch_size=BATCH, shuffle=False)
    with bn_eval(net) if "fisher_bn" in align else contextlib.nullcontext():
        appr.post_train_process(0, loader)
    fisher = {f"model.{n}": v.clone() for n, v in appr.fisher.items()}
    net.add_head(setup.tasks[1])
    net.load_state_dict(to_facil(setup.cur, setup.heads))
    terms = {}

    def spy(orig, args):
        total = orig(*args)
        with torch.no_grad():
            ce = with_weights(appr, orig, args, lamb=0.0)
        terms.update(ce=num(ce), penalty=num(total - ce), total=num(total))
        return total
    side = facil_step(appr, setup, spy, stub_opt="old_heads" in align, stub_crit="ce_seen" in align)
    side.terms, side.patches, side.extra = terms, side.patches + patches, {"fisher": fisher}
    return side


def suite_ewc(setup: Setup, align) -> Side:
    m = suite_method("ewc", setup)
    net = m.model
    net.set_active_classes(setup.tasks[0])
    n = fisher_count(setup, align)
    ds = TensorDataset(setup.fx[:n], setup.fy[:n], torch.zeros(n, dtype=torch.long))
    prev = SimpleNamespace(clock=SimpleNamespace(train_exp_counter=0), model=net, _criterion=m.strategy._criterion,
                           optimizer=torch.optim.SGD(net.parameters(), lr=0.0), device=DEVICE,
                           experience=SimpleNamespace(dataset=ds), train_mb_size=BATCH)
    m.ewc_plugin.after_training_exp(prev)  # the suite's end of phase 0: importances and saved parameters
    imp = m.ewc_plugin.importances[0]
    fisher = to_facil({n: p.data for n, p in imp.items()}, setup.tasks[:1])
    head_share = {k: float(v.abs().max()) for k, v in fisher.items() if k.startswith("heads.")}
    if "head" in align:
        for n in ("head.weight", "head.bias"):
            imp[n].data.zero_()
    suite_enter_phase(m, setup)
    ce, total = suite_dry(m, setup)
    side = suite_step(m, setup)
    side.terms = {"ce": ce, "penalty": total - ce, "total": total}
    side.extra = {"fisher": {k: v for k, v in fisher.items() if not k.startswith("heads.")}}
    side.info["suite head importance max"] = head_share
    if "head" in align:
        side.patches = ["suite's head importances zeroed (injected state): FACIL penalises the backbone only"]
    return side


def ewc_extra(f: Side, s: Side) -> dict:
    return {"fisher": (2, "Fisher diagonal of the previous phase (FACIL compute_fisher_matrix_diag, as merged; "
                          "Avalanche compute_importances), feature extractor",
                       compare_tensors(f.extra["fisher"], s.extra["fisher"]))}


# -- iCaRL ---------------------------------------------------------------------------------------------------------
ICARL_FORM = ("the iCaRL paper's loss in the suite (one sigmoid BCE over batch x seen classes, old columns targeted at "
              "the old model's sigmoids) vs FACIL's softmax CE over all heads + sum over old classes of the sigmoid "
              "BCE against the old model")
ICARL_FORM_DOC = ("baselines/icarl.py, icarl_loss.py and README (sigmoid BCE, iCaRL paper); FACIL departs from the "
                  "paper (its criterion's comment says the original does not match)")
ICARL_FLIPS_DOC = ("baselines/icarl.py docstring (means over the exemplars and their flips: the official iCaRL code; "
                   "the paper's text has no flips); FACIL has no flips")


def facil_icarl(Fm, setup: Setup, align) -> Side:
    appr = facil_later_phase(Fm, Fm.icarl, setup, facil_exemplars(Fm, setup, MEMORY_PER_CLASS), lamb=1.0)
    terms, extra = {}, {}

    def spy(orig, args):
        total = orig(*args)
        ce = with_weights(appr, orig, args, lamb=0.0)
        kd = total - ce
        g = torch.autograd.grad(kd, list(args[1][: setup.t]), retain_graph=True)
        extra["kd_logit_grad"] = torch.cat(g, 1).detach()
        terms.update(ce=num(ce), kd=num(kd), total=num(total))
        return total
    side = facil_step(appr, setup, spy)
    side.terms, side.extra = terms, extra
    return side


def suite_icarl(setup: Setup, align) -> Side:
    m = suite_method("icarl", setup, memory_per_class=MEMORY_PER_CLASS)
    old_state = {k: v.clone() for k, v in m.strategy.model.state_dict().items()}  # the network holds setup.old
    m.loss.load_state_dict({"old_classes": list(range(setup.n_old)), "old_model": old_state}, m.strategy.model)
    suite_enter_phase(m, setup)
    extra, n_old, n = {}, setup.n_old, setup.seen

    def inspect(s):
        z = s.mb_output
        g, = torch.autograd.grad(s.loss.sum(), z, retain_graph=True)
        extra["kd_logit_grad"] = (g[:, :n_old] * n).detach()
        with torch.no_grad():  # the suite's BCE split by columns (harness arithmetic on the suite's own tensors)
            target = F.one_hot(s.mb_y, n).float()
            target[:, :n_old] = torch.sigmoid(suite_old_logits(m.loss.old_model, s.mb_x)[:, :n_old])
            bce = F.binary_cross_entropy(torch.sigmoid(z), target, reduction="none")
            extra["bce_cls"] = float(bce[:, n_old:].sum() / bce.numel())
            extra["bce_dist"] = float(bce[:, :n_old].sum() / bce.numel())
    _, total = suite_dry(m, setup, inspect=inspect)
    side = suite_step(m, setup)
    side.terms, side.extra = {"total": total, **{k: extra[k] for k in ("bce_cls", "bce_dist")}}, extra
    side.info["decomposition check |bce_cls + bce_dist - total|"] = abs(extra["bce_cls"] + extra["bce_dist"] - total)
    return side


def facil_ncm(Fm, setup: Setup, suite_pred: torch.Tensor, flips: bool):
    """FACIL's exemplar means (``compute_mean_of_exemplars``) and ``classify`` on the suite's predictions: the share
    of samples whose FACIL nearest mean is the suite's prediction."""
    net = facil_net(Fm, setup.cur, setup.heads)
    ex = facil_exemplars(Fm, setup, MEMORY_PER_CLASS)
    imgs, labels = [], []
    for c in range(setup.seen):
        for img in setup.memory[c]:
            for v in ([img, img.flip(2)] if flips else [img]):
                imgs.append(v.permute(1, 2, 0).contiguous().numpy())
                labels.append(c)
    ex.images, ex.labels = imgs, labels
    appr = facil_appr(Fm.icarl, net, ex, lamb=1.0)
    appr.exemplar_means = []
    appr.compute_mean_of_exemplars(SimpleNamespace(batch_size=BATCH, num_workers=0, pin_memory=False),
                                   facil_transform())
    with torch.no_grad():
        net.eval()
        _, feats = net(setup.facil_x(), return_features=True)
        _, hits_tag = appr.classify(setup.t, feats, suite_pred)
    return torch.stack(appr.exemplar_means), float(hits_tag.mean())


def suite_ncm(setup: Setup):
    m = suite_method("icarl", setup, memory_per_class=MEMORY_PER_CLASS)
    m.model.load_state_dict(setup.cur)
    m.model.set_active_classes(setup.seen)
    p = m.icarl_plugin
    p.x_memory = [setup.memory[c] for c in range(setup.seen)]
    p.y_memory = [[c] * len(setup.memory[c]) for c in range(setup.seen)]
    p.class_means = {}
    bench = SimpleNamespace(n_classes_per_exp=list(setup.tasks))
    m.strategy.model.eval()
    p.compute_class_means(SimpleNamespace(model=m.strategy.model, device=DEVICE,
                                          experience=SimpleNamespace(benchmark=bench)))
    with torch.no_grad():
        pred = m.scores(setup.suite_x())["icarl-ncm"][:, : setup.seen].argmax(1)
    return torch.stack([p.class_means[c] for c in range(setup.seen)]), pred


def icarl_rows(spec: Spec, Fm, setup: Setup, commit: str) -> list[Row]:
    f, s = spec.facil(Fm, setup, frozenset()), spec.suite(setup, frozenset())
    patches = f.patches + s.patches
    kd = compare_terms({"kd": f.terms["kd"]}, {"kd": setup.seen * s.terms["bce_dist"]})
    rows = [make_row(spec, 1, "distillation: FACIL's sum over old classes of BCE = n_seen x the suite's old-column "
                     "share of its BCE", kd, LOSS_RTOL, commit, patches, info={**f.info, **s.info})]
    g = {"d kd / d old logits": tensor_rel_diff(f.extra["kd_logit_grad"], s.extra["kd_logit_grad"])}
    rows.append(make_row(spec, 2, "gradient of the distillation w.r.t. the old-class logits (x n_seen on the suite)",
                         g, GRAD_RTOL, commit, patches))
    form = {"loss": compare_terms({"classification": f.terms["ce"], "total": f.terms["total"]},
                                  {"classification": s.terms["bce_cls"], "total": s.terms["total"]}),
            "gradients": compare_tensors(f.grads, s.grads), "step": step_parts(f, s)[0]}
    rows.append(departure_row(spec, Departure("form", "facil", ICARL_FORM, ICARL_FORM_DOC), form, commit, patches))
    means, pred = suite_ncm(setup)
    for flips in (True, False):
        fm, agree = facil_ncm(Fm, setup, pred, flips)
        d = {"class means": tensor_rel_diff(fm, means), "classify: share of FACIL predictions != suite's": 1 - agree}
        if flips:
            rows.append(make_row(spec, 2, "nearest-mean classifier: class means and predictions (FACIL given each "
                                 "exemplar and its flip)", d, GRAD_RTOL, commit,
                                 ["FACIL's exemplar set holds each exemplar and its horizontal flip (data, not code)"]))
        else:
            dep = Departure("ncm_flips", "facil", "class means: FACIL over the exemplars only, the suite (Avalanche) "
                            "over the exemplars and their flips", ICARL_FLIPS_DOC)
            rows.append(departure_row(spec, dep, {"ncm": d}, commit, []))
    return rows


# -- EEIL ----------------------------------------------------------------------------------------------------------
EEIL_DEPARTURES = (
    Departure("bce", "facil", "distillation form: FACIL binary_cross_entropy between the two softmaxes at T (mean over "
              "batch and classes, with (1 - q) log(1 - p) terms) vs the official EEIL soft cross-entropy (sum over "
              "classes, batch mean)",
              "baselines/eeil.py docstring (FACIL's BCE variant not reproduced); the suite follows the official code"),
    Departure("off_by_one", "facil", "FACIL's unbalanced stage distils heads range(t - 1): the newest old group is "
              "skipped; the suite distils every old group",
              "baselines/eeil.py docstring (FACIL's off-by-one not reproduced); the suite follows the official code "
              "and the paper"),
)


class _FProxy:
    """Stands in for ``F`` (torch.nn.functional) in FACIL's eeil.py: records each ``binary_cross_entropy`` value (the
    per-head distillation terms) and, with ``soft``, returns the soft cross-entropy of the same two softmaxes."""

    def __init__(self, soft: bool):
        self.soft, self.calls = soft, []

    def __getattr__(self, name):
        return getattr(F, name)

    def binary_cross_entropy(self, input, target, *a, **kw):
        v = -(target * input.log()).sum(1).mean() if self.soft else F.binary_cross_entropy(input, target, *a, **kw)
        self.calls.append(num(v))
        return v


def facil_eeil(Fm, setup: Setup, align) -> Side:
    appr = facil_later_phase(Fm, Fm.eeil, setup, facil_exemplars(Fm, setup, 20), lamb=1.0, T=2.0)
    appr._finetuning_balanced = "off_by_one" in align
    proxy, terms = _FProxy("bce" in align), {}

    def spy(orig, args):
        proxy.calls.clear()
        total = orig(*args)
        groups = [appr.lamb * v for v in proxy.calls]
        with torch.no_grad():
            ce = with_weights(appr, orig, args, lamb=0.0)
        terms.update(ce=num(ce), total=num(total), **{f"kd_group{i}": g for i, g in enumerate(groups)})
        return total
    real_f, Fm.eeil.F = Fm.eeil.F, proxy
    try:
        side = facil_step(appr, setup, spy)
    finally:
        Fm.eeil.F = real_f
    side.terms = terms
    side.patches += ["FACIL eeil.F replaced by a proxy recording each binary_cross_entropy value"]
    if "bce" in align:
        side.patches.append("that proxy returns the soft cross-entropy -sum q log p (official EEIL) instead")
    if "off_by_one" in align:
        side.patches.append("FACIL _finetuning_balanced=True for the step: its loop covers every old head")
    return side


def suite_eeil_side(setup: Setup, align) -> Side:
    m = suite_method("eeil", setup)
    m.load_state_dict({"memory": {"x": {}}, "old_model": setup.old})
    suite_enter_phase(m, setup, m.eeil)
    calls = []
    with recording(suite_eeil, "soft_cross_entropy", calls):
        ce, total = suite_dry(m, setup)
    side = suite_step(m, setup)
    lamb = m.eeil.p["kd_weight"]
    side.terms = {"ce": ce, "total": total, **{f"kd_group{j}": lamb * float(v) for j, v in enumerate(calls)}}
    side.patches = ["baselines.eeil.soft_cross_entropy wrapped to record its per-group values (unchanged)"]
    return side


# -- LwM -----------------------------------------------------------------------------------------------------------
LWM_DEPARTURES = (
    Departure("gradcam_mix", "facil", "Grad-CAM score: FACIL back-propagates logits[:, classes].mean() of the whole "
              "batch, a B x B block, so each sample's map mixes the batch's top classes (scaled 1/B^2); the suite "
              "takes each sample's own score",
              "baselines/lwm.py docstring (per-sample maps); FACIL's mixing listed in "
              "docs/official-code-cil-baselines.md; the suite follows the paper"),
    Departure("gradcam_cur_class", "facil", "class of the current model's map: FACIL the current model's own argmax "
              "over all seen classes, the suite the old model's top old class (the same class for both maps)",
              "baselines/lwm.py docstring (the previous model's top class for both maps, as the paper states)"),
    Departure("at_norm", "facil", "attention maps: FACIL's attention_distillation_loss takes torch.norm over the "
              "singleton channel dimension, i.e. |map|, no L2 normalisation over positions; the suite L2-normalises "
              "each flattened map",
              "baselines/lwm.py docstring (L2-normalised maps, the paper's form); docs/official-code-cil-baselines.md "
              "says FACIL normalises: it does not"),
    Departure("at_grad", "suite", "attention gradient: FACIL's hooks detach, so its attention term trains nothing; the "
              "suite's current map keeps its activations in the graph",
              "baselines/lwm.py docstring (FACIL's term inert); the suite follows the paper"),
    Departure("cur_map_mode", "suite", "BatchNorm mode of the current model's map: FACIL's Grad-CAM is an eval() pass, "
              "the suite takes the training forward's activations (batch statistics); the suite docstring's 'as in "
              "FACIL' does not hold for the maps", DOC + "the map of the step that is trained"),
    LWF_DEPARTURES[2],
    Departure("kl", "facil", "distillation value: the suite's KL vs FACIL's cross-entropy, apart by beta x the entropy "
              "of the old soft targets (no gradient)", "baselines/lwm.py docstring (the KL divergence, no T^2)"),
    LWF_DEPARTURES[4],
)


def aligned_gradcam(base, appr, per_sample: bool, old_class: bool):
    """A subclass of FACIL's GradCAM that calls FACIL's own ``__call__``: ``per_sample``, once per sample (batch 1:
    ``logits[:, c]`` is that sample's own score); ``old_class``, the current model with the old model's classes."""
    state = {}

    class AlignedGradCAM(base):
        def __call__(self, input, class_indices=None, return_outputs=False):
            old = self.model is appr.model_old
            c = None if old or not old_class else state["classes"]
            parts = range(len(input)) if per_sample else [slice(None)]
            maps, outs = [], []
            for i in parts:
                sl = slice(i, i + 1) if per_sample else i
                a, o = base.__call__(self, input[sl], class_indices=None if c is None else c[sl],
                                     return_outputs=True)
                maps.append(a)
                outs.append(o)
            outs = [torch.cat(h) for h in zip(*outs)]
            if old:
                state["classes"] = torch.cat(outs, 1).argmax(1)
            return (torch.cat(maps), outs) if return_outputs else torch.cat(maps)
    return AlignedGradCAM


def l2_maps(a: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.flatten(1), dim=1).view_as(a)


def lwm_patches(Fm, appr, align) -> list:
    patches = []
    if "eps" in align:
        patches.append(no_eps(appr))
    if "at_norm" in align:
        orig = appr.attention_distillation_loss
        appr.attention_distillation_loss = lambda a, b: orig(l2_maps(a), l2_maps(b))
        patches.append("FACIL attention_distillation_loss wrapped to L2-normalise the flattened maps first")
    if "gradcam_mix" in align:
        patches.append("FACIL lwm.GradCAM replaced by a subclass calling its own __call__ once per sample")
    if "gradcam_cur_class" in align:
        patches.append("FACIL lwm.GradCAM replaced by a subclass passing the old model's classes to the current "
                       "model's Grad-CAM (class_indices, its own argument)")
    if "kl" in align:
        patches.append("harness: beta x entropy(softmax(old / 2)) subtracted from FACIL's distillation value")
    return patches


def facil_lwm(Fm, setup: Setup, align) -> Side:
    appr = facil_later_phase(Fm, Fm.lwm, setup, beta=1.0, gamma=1.0, gradcam_layer="layer3")
    patches, terms, extra = lwm_patches(Fm, appr, align), {}, {}

    def spy(orig, args):
        total = orig(*args)
        with torch.no_grad():
            ce = with_weights(appr, orig, args, beta=0.0, gamma=0.0)
            kd = with_weights(appr, orig, args, gamma=0.0) - ce
            at = with_weights(appr, orig, args, beta=0.0) - ce
            if "kl" in align:
                kd = kd - appr.beta * entropy(torch.cat(args[3][: setup.t], 1), 2.0)
        terms.update(ce=num(ce), kd=num(kd), at=num(at), total=num(ce + kd + at))
        extra.update(map_cur=l2_maps(args[4]).flatten(1), map_old=l2_maps(args[5]).flatten(1))
        return total
    real = Fm.lwm.GradCAM
    if {"gradcam_mix", "gradcam_cur_class"} & align:
        Fm.lwm.GradCAM = aligned_gradcam(real, appr, "gradcam_mix" in align, "gradcam_cur_class" in align)
    try:
        side = facil_step(appr, setup, spy, stub_opt="old_heads" in align)
    finally:
        Fm.lwm.GradCAM = real
    side.terms, side.extra, side.patches = terms, extra, side.patches + patches
    return side


def suite_lwm_side(setup: Setup, align) -> Side:
    m = suite_method("lwm", setup)
    m.load_state_dict({"n_old": setup.n_old, "old_model": setup.old})
    suite_enter_phase(m, setup, m.lwm)
    with torch.no_grad():  # what the Grad-CAM class choices see on this batch
        old_top = m.lwm.old_model(setup.suite_x())[:, : setup.n_old].argmax(1)
        m.model.load_state_dict(setup.cur)
        m.model.eval()
        cur_top = m.model(setup.suite_x())[:, : setup.seen].argmax(1)
    p = m.lwm.p
    beta, gamma = p["kd_weight"], p["attention_weight"]  # LwM's beta and gamma
    p.update(kd_weight=0.0, attention_weight=0.0)
    ce, _ = suite_dry(m, setup)
    p.update(kd_weight=beta)
    _, with_kd = suite_dry(m, setup)
    p.update(kd_weight=0.0, attention_weight=gamma)
    maps = []
    with recording(suite_lwm, "gradcam_map", maps):
        ce_at, with_at = suite_dry(m, setup, train="cur_map_mode" not in align)
    p.update(kd_weight=beta, attention_weight=0.0 if "at_grad" in align else gamma)
    side = suite_step(m, setup)
    p.update(attention_weight=gamma)
    kd, at = with_kd - ce, with_at - ce_at
    side.terms = {"ce": ce, "kd": kd, "at": at, "total": ce + kd + at}
    side.extra = {"map_old": maps[0], "map_cur": maps[1]}
    side.info["batch top classes"] = {"old model (old classes)": old_top.tolist(),
                                      "current model, eval (all seen classes)": cur_top.tolist()}
    side.patches = ["baselines.lwm.gradcam_map wrapped to record the maps (unchanged)"]
    if "cur_map_mode" in align:
        side.patches.append("suite's attention term and maps from a pass in eval mode (FACIL's Grad-CAM is eval)")
    if "at_grad" in align:
        side.patches.append("suite's step with gamma 0 (FACIL's attention term sends no gradient); L1 terms gamma 1")
    return side


def lwm_extra(f: Side, s: Side) -> dict:
    d = {k: tensor_rel_diff(f.extra[k], s.extra[k]) for k in ("map_old", "map_cur")}
    return {"maps": (1, "Grad-CAM maps of the old and the current model, flattened and L2-normalised", d)}


# -- rows ----------------------------------------------------------------------------------------------------------
def update_diff(before: dict, fa: dict, sa: dict) -> dict:
    """``step_change_rel_diff`` less the float32 rounding of the stored parameters: each side's ``after`` is rounded
    to float32 (error <= eps |after| / 2), so ``|da - db|`` carries up to ``eps max(|fa|, |sa|)`` of rounding; only
    the excess counts (an SGD update of 1e-3 on a weight near 1 is otherwise resolved to ~1e-4 of itself)."""
    eps = torch.finfo(torch.float32).eps
    out = {}
    for k, w0 in before.items():
        if k not in fa or k not in sa:
            out[k] = 1.0
            continue
        da, db = fa[k].double() - w0.double(), sa[k].double() - w0.double()
        scale = max(da.abs().max().item(), db.abs().max().item())
        if scale == 0:
            out[k] = 0.0
            continue
        moving = (da.abs() > 0.01 * scale) | (db.abs() > 0.01 * scale)
        excess = ((da - db).abs() - eps * torch.maximum(fa[k].double().abs(), sa[k].double().abs())).clamp(min=0)
        out[k] = excess[moving].max().item() / scale
    return out


def step_parts(f: Side, s: Side) -> tuple[dict, dict]:
    """(update differences beyond rounding + BN statistics after the step, the raw ``step_change_rel_diff``)."""
    d = {**update_diff(f.before, f.after, s.after),
         **{f"buffer {k}": v for k, v in compare_tensors(f.buffers, s.buffers).items()}}
    return d, step_change_rel_diff(f.before, f.after, s.after)


def make_row(spec: Spec, level: int, compared: str, d: dict, tol: float, commit: str, patches: list,
             departure: str = "", note: str = "", info: dict | None = None) -> Row:
    name, val = worst(d)
    v = verdict(val, tol, departure)
    if v == "differs" and not note:
        note = f"unexplained: worst {name}"
    return Row(spec.method, level, REPOSITORY, commit, compared, val, tol, v, note,
               details={"worst": name, "items": d, **(info or {})}, patches=sorted(set(patches)))


def aligned_rows(spec: Spec, f: Side, s: Side, commit: str) -> list[Row]:
    patches = f.patches + s.patches
    keys = ", ".join(d.key for d in spec.departures)
    note = f"aligned: {keys} (each measured in its own row)" if keys else ""
    info = {**f.info, **s.info, "facil_terms": f.terms, "suite_terms": s.terms}
    rows = [make_row(spec, 1, "loss terms and total of one later-phase step", compare_terms(f.terms, s.terms),
                     LOSS_RTOL, commit, patches, note=note, info=info),
            make_row(spec, 2, "gradients of every parameter", compare_tensors(f.grads, s.grads), GRAD_RTOL, commit,
                     patches, note=note)]
    step, raw = step_parts(f, s)
    rows.append(make_row(spec, 2, "SGD update of every parameter (beyond float32 rounding of the stored weights) and "
                         "BN statistics after the step", step, GRAD_RTOL, commit, patches, note=note,
                         info={"raw step_change_rel_diff (worst)": dict([worst(raw)])}))
    for level, compared, d in (spec.extra_compare(f, s).values() if spec.extra_compare else ()):
        rows.append(make_row(spec, level, compared, d, LOSS_RTOL if level == 1 else GRAD_RTOL, commit, patches,
                             note=note))
    return rows


def departure_row(spec: Spec, dep: Departure, parts: dict, commit: str, patches: list) -> Row:
    """One difference left as run, the rest aligned: its size is the largest relative difference it causes."""
    sizes = {k: worst(v)[1] for k, v in parts.items()}
    part = max(sizes, key=sizes.get)
    level = 1 if sizes.get("loss", 0.0) > LOSS_RTOL or part in ("loss", "maps") else 2
    tol = LOSS_RTOL if level == 1 else GRAD_RTOL
    v = verdict(sizes[part], tol, dep.documented)
    doc = f"documented: {dep.documented}" if dep.documented else "not documented in the suite"
    measured = ", ".join(f"{k} {x:.1e}" for k, x in sizes.items())
    if v == "identical":
        doc += " (no measurable effect on this state)"
    who = "both sides" if dep.side == "both" else f"{dep.side} side"
    return Row(spec.method, level, REPOSITORY, commit, f"departure '{dep.key}' ({who} left as run)",
               sizes[part], tol, v, f"{dep.what}; {doc}; measured: {measured}",
               details={"sizes": sizes, **{k: (d if k == "loss" else dict([worst(d)])) for k, d in parts.items()}},
               patches=sorted(set(patches)))


def generic_rows(spec: Spec, Fm, setup: Setup, commit: str) -> list[Row]:
    full = frozenset(d.key for d in spec.departures)
    suite_keys = {d.key for d in spec.departures if d.side in ("suite", "both")}
    cache = {}

    def suite(align):
        key = frozenset(align & suite_keys)
        if key not in cache:
            cache[key] = spec.suite(setup, align)
        return cache[key]
    f0, s0 = spec.facil(Fm, setup, full), suite(full)
    rows = aligned_rows(spec, f0, s0, commit)
    for dep in spec.departures:
        al = full - {dep.key}
        f = spec.facil(Fm, setup, al) if dep.side in ("facil", "both") else f0
        s = suite(al) if dep.side in ("suite", "both") else s0
        parts = {"loss": compare_terms(f.terms, s.terms), "gradients": compare_tensors(f.grads, s.grads),
                 "step": step_parts(f, s)[0]}
        for name, (_, _, d) in (spec.extra_compare(f, s).items() if spec.extra_compare else ()):
            parts[name] = d
        rows.append(departure_row(spec, dep, parts, commit, f.patches + s.patches))
    return rows


SPECS = {
    "lwf": Spec("lwf", (4, 3, 3), facil_lwf, suite_lwf, LWF_DEPARTURES),
    "ewc": Spec("ewc", (4, 3), facil_ewc, suite_ewc, EWC_DEPARTURES, setup_kw={"fisher": 24, "rel": 0.01},
                extra_compare=ewc_extra),
    "icarl": Spec("icarl", (4, 3, 3), facil_icarl, suite_icarl, setup_kw={"exemplars": True,
                                                                          "memory": MEMORY_PER_CLASS},
                  rows=icarl_rows),
    "eeil": Spec("eeil", (4, 3, 3), facil_eeil, suite_eeil_side, EEIL_DEPARTURES, setup_kw={"exemplars": True}),
    "lwm": Spec("lwm", (4, 3, 3), facil_lwm, suite_lwm_side, LWM_DEPARTURES, extra_compare=lwm_extra),
}


def run(method: str, official: Path, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """Levels 1 and 2 of ``method`` against the FACIL checkout ``official`` (``steps`` > 0: level 3 is not
    implemented by this harness and is skipped with a message)."""
    if method not in SPECS:
        raise ValueError(f"no FACIL comparison for {method!r}; one of {sorted(SPECS)}")
    if steps:
        print(f"note: level 3 (short run) is not implemented for FACIL; --steps {steps} ignored", file=sys.stderr)
    spec = SPECS[method]
    t0, c0 = time.time(), time.process_time()
    setup = make_setup(spec.tasks, seed, **spec.setup_kw)
    with facil_modules(official) as Fm, torch.enable_grad(), warnings.catch_warnings():
        # FACIL's GradCAM registers a (deprecated) non-full backward hook on layer3; the maps row checks its output
        warnings.filterwarnings("ignore", message="Using a non-full backward hook")
        rows = (spec.rows or generic_rows)(spec, Fm, setup, commit)
    for r in rows:
        r.details["seed"] = seed
    print(f"{method}: {len(rows)} rows, {time.time() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU",
          file=sys.stderr)
    return rows
