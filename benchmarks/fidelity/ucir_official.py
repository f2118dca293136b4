"""UCIR / LUCIR fidelity harness: the suite's ``ucir`` (``baselines/ucir.py``, ``baselines/exemplars.py``,
``benchmark/models/resnet_cifar.py``) against the official code of hshustc/CVPR19_Incremental_Learning
(``cifar100-class-incremental/`` and ``utils_incremental/``), imported at run time from ``--official DIR``.

What is compared
----------------
A toy scenario of 12 classes in groups 6 / 3 / 3 (labels in class order, the identity ``order`` of the official
script), CIFAR ResNet-32 (the official ``modified_resnet_cifar.resnet32``: last block without its final ReLU, cosine
classifier), real images of the embedded ``cifar100-mini`` (10 a class for herding / imprinting, batch 8).  The step is
one of phase 2 (the official ``iteration = start_iter + 2``), so the official carry-over of ``SplitCosineLinear`` (fc1
= old fc1 + old fc2) meets the suite's single weight matrix.

1. loss terms of one training step: CE over the 12 seen classes (sigma-scaled cosine), ``lambda * LF`` (less-forget,
   ``lambda = 5 sqrt(9 / 3)``), ``lw_mr * MR`` (margin ranking on the 4 old-class samples of the batch, K 2, margin
   0.5) and the total.  Official: ``incremental_train_and_eval_MR_LF`` (imported) run for one epoch of one batch;
   suite: the real ``UCIR`` method (``UCIR(ctx)``, paper profile's SGD recipe) whose Avalanche ``Naive.training_epoch``
   runs that batch through its plugins.
2. gradients of every parameter (backbone, old rows, new rows, sigma); the SGD update and the parameters after it;
   BN running statistics; imprinting of the new classes' weights; herding selection (the flow's 4 of 10 images a
   class, and 8 of 10 on the same features, where the official loop's re-picks show); NME class means and
   nearest-mean scores.
Departure row: the input normalisation (suite: the PASS statistics of every CIFAR-100 method; official: std
``(0.2009, 0.1984, 0.2023)``).
3. (``--steps N``) a short run of N phase-2 steps from the same start, one optimiser a side, a new augmentation of
   the batch's images every step: the loss curves and final parameters, against the official code's own floor
   (its run with weights moved by 1e-7 relative).

Identical state and draws
-------------------------
The official network is built (``resnet32(num_classes=6)``, then phase 1's ``SplitCosineLinear(64, 6, 3)``), every
weight moved by seeded noise (sigma 5), BN statistics set from 120 images: that is "the end of phase 1".  Its state
is mapped key by key into the suite's ``Net`` (``resnet_key``: ``conv1/bn1 -> backbone.stem.0/1``, ``layerL.B ->
backbone.stages.L-1.B``, ``downsample -> shortcut``; fc1 / fc2 rows -> ``head.weight[:9]``, sigma -> ``head.sigma``).
The suite model is built with the official normalisation statistics, so both networks see the same numbers
(``x / 255`` then ``(x - mean) / std``, the arithmetic of ToTensor + Normalize).  On that state both sides select
exemplars and class means; then the official phase-2 expansion and imprinting run, the suite's ``before_training_exp``
imprints; then a mid-phase state (backbone, new rows and sigma moved by small seeded noise; old rows are frozen on
both sides) is put into both, and the step runs on one batch: 4 exemplars of old classes and 4 new-class images,
augmented once (random crop 4 + flip, seeded) and given to both (the suite's augmentation off, ``AugmentSpec()``; its
loader's permutation is the batch order the official side receives).  Both optimisers are fresh (the suite builds
one per phase, the official script too), so the step is a first SGD step: its update is the momentum buffer
``g + wd p``, compared directly (the parameters after the step are rounded to float32 near ``|p|``, which limits an
update read back from them to ~3e-5 relative here; that figure is in the row's details).

The phase-1 -> phase-2 network change of the official script is inline (not a function): reference re-statement of
``class_incremental_cosine_cifar100.py`` lines cited in ``_official_expand``; so are the optimiser's parameter groups
(:325-339), the imprinting (:266-292), herding (:388-414, 445-447) and class means (:428-451), each cited line by
line in its function.  ``compute_features``, ``compute_accuracy``, ``incremental_train_and_eval_MR_LF``, ``resnet32``
and ``SplitCosineLinear`` are the official functions, imported.

Monkeypatches (``PATCHES``; every row carries them)
--------------------------------------------------
* P1 ``utils_pytorch`` is a stub module while the official ``utils_incremental`` modules are imported: its import
  runs ``os.popen('stty size')``, which fails without a terminal; none of its helpers is on a compared path (the
  training function's ``progress_bar`` call is commented out).
* P2 the official functions get ``device=cpu`` (their default is ``cuda:0`` when available) and lists of batches
  instead of ``DataLoader`` s of ``torchvision.datasets.CIFAR100`` (no dataset files): the training "loader" is the
  one batch, the test loader two of its images (its evaluation loop only prints).
* P3 ``torch.nn.functional.margin_ranking_loss``, while the official training function runs: for a target with fewer
  dimensions than the inputs it computes torch 0.4's broadcast ``mean(clamp(-y (x1 - x2) + margin, 0))``.  The
  official call (``incremental_train_and_eval_MR_LF.py:290-291``) passes scores of shape (n, 1) and a target (n,),
  which current torch refuses; torch 0.4 broadcast them to (n, n), whose rows are constant for the all-ones target,
  so the mean equals the mean over the n pairs.
Not patched: prints (captured), the lr-scheduler warnings of current torch (silenced: ``tg_lr_scheduler.step()``
before the epoch, as in torch 0.4, gives the same lr 0.1 here).  Observation only: ``sys.setprofile`` reads locals of
the official training function and of the suite's ``UCIRPlugin.before_backward`` at call / return.

Findings are in the rows (``differs`` with the size); departures documented by the suite are aligned here and
reported in their own row.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import io
import re
import sys
import time
import types
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from baselines.exemplars import embed, herding_order
from baselines.ucir import UCIR, UCIRPlugin
from benchmark.augment import AugmentSpec, augment_batch
from benchmark.data import load_arrays
from benchmark.methods import METHODS, MethodContext
from benchmark.models import build_model
from benchmark.models.base import frozen_copy
from benchmark.profiles import PROFILES
from benchmark.scenarios import SCENARIOS
from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_terms, compare_tensors, official_imports,
                                        rel_diff, step_change_rel_diff, verdict, worst)

REPOSITORY = "hshustc/CVPR19_Incremental_Learning"
PATCHES: list[tuple[str, str]] = [
    ("P1: utils_pytorch replaced by an empty module while utils_incremental is imported",
     "its import runs os.popen('stty size'), which fails without a terminal; no helper of it is on a compared path"),
    ("P2: official functions called with device=cpu and lists of batches instead of CIFAR-100 DataLoaders",
     "no GPU and no dataset files here; both sides must see the same (augmented) batch"),
    ("P3: torch.nn.functional.margin_ranking_loss computes torch 0.4's broadcast mean(clamp(-y (x1 - x2) + margin, "
     "0)) when the target has fewer dimensions than the inputs, while the official training function runs",
     "incremental_train_and_eval_MR_LF.py:290-291 passes scores (n, 1) with a target (n,); current torch refuses the "
     "shapes, torch 0.4 broadcast them to (n, n) (all-ones target: every row constant, the mean equals the mean "
     "over n)"),
]
SCRIPT = "cifar100-class-incremental/class_incremental_cosine_cifar100.py"
OFFICIAL_MEAN, OFFICIAL_STD = (0.5071, 0.4866, 0.4409), (0.2009, 0.1984, 0.2023)  # SCRIPT:108-117
PREFIXES = ("modified_linear", "modified_resnet_cifar", "utils_pytorch", "utils_incremental")
GROUPS = [(0, 6), (6, 9), (9, 12)]
NB_CL = 3  # classes per later phase (official nb_cl); phase 0 has 6 (nb_cl_fg)
PHASE = 2  # the compared phase: old classes 0-8, new 9-11
PER_CLASS, M = 10, 4  # images per class for herding / imprinting; exemplars per class (official nb_protos)
M_MORE = 8  # a second herding probe on the same features: 8 of the 10 images
OLD_IN_BATCH, NEW_IN_BATCH = [0, 3, 6, 8], [9, 10, 11, 10]
CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------------------------------
# helpers shared with muc_official (same official CIFAR ResNet layout, same observation tools)
def resnet_key(k: str) -> str | None:
    """The suite ``Net`` key (``benchmark/models/resnet_cifar.py``) of an official CIFAR ResNet backbone key
    (``conv1``, ``bn1``, ``layerL.B.*``, ``downsample``); None for the classifier (method-specific)."""
    if k.startswith("conv1."):
        return "backbone.stem.0." + k[len("conv1."):]
    if k.startswith("bn1."):
        return "backbone.stem.1." + k[len("bn1."):]
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", k)
    if m:
        return f"backbone.stages.{int(m.group(1)) - 1}.{m.group(2)}.{m.group(3).replace('downsample.', 'shortcut.')}"
    return None


def official_tensors(model: nn.Module, kind: str, head: dict) -> dict:
    """Suite-named tensors of an official model: ``kind`` param / grad / buffer; ``head`` maps official classifier
    names to suite names (several official tensors to one suite name are concatenated, as fc1 and fc2 rows)."""
    items = model.named_buffers() if kind == "buffer" else model.named_parameters()
    out: dict = {}
    for name, t in items:
        key = resnet_key(name) or head.get(name)
        v = t.grad if kind == "grad" else t
        if key is None or v is None:
            continue
        v = v.detach().clone()
        out[key] = torch.cat([out[key], v]) if key in out else v
    return out


def suite_tensors(net: nn.Module, kind: str, rows: dict) -> dict:
    """Suite tensors by name (``rows``: name -> rows compared, the seen classes of a classifier sized for all)."""
    items = net.named_buffers() if kind == "buffer" else net.named_parameters()
    out = {}
    for name, t in items:
        v = t.grad if kind == "grad" else t
        if v is None or name.startswith("backbone.normalize."):
            continue
        out[name] = v.detach()[: rows[name]].clone() if name in rows else v.detach().clone()
    return out


def same_shapes(official: dict, suite: dict) -> dict:
    """Official tensors reshaped to the suite's shape where only the shape differs (sigma: (1,) vs ())."""
    return {k: (v.reshape(suite[k].shape) if k in suite and v.numel() == suite[k].numel() else v)
            for k, v in official.items()}


def load_mapped(net: nn.Module, mapped: dict) -> None:
    """Copies suite-named tensors into ``net``: the first rows where the tensor is shorter (a classifier sized for
    every class of the scenario), the whole tensor otherwise (reshaped: sigma (1,) -> ())."""
    sd = net.state_dict()
    for k, v in mapped.items():
        t = sd[k].clone()
        if t.dim() == 0 or t.shape == v.shape:
            t = v.reshape(t.shape).clone()
        else:
            t[: len(v)] = v
        sd[k] = t
    net.load_state_dict(sd)


@torch.no_grad()
def jitter(model: nn.Module, gen: torch.Generator, scale: float, skip: tuple = ()) -> None:
    """Moves every float parameter / buffer by seeded noise: ``scale`` x its std (x 1 for constant tensors), running
    variances multiplicatively; names starting with ``skip`` are left alone."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if name.startswith(skip) or not t.is_floating_point():
            continue
        noise = torch.randn(t.shape, generator=gen)
        if name.endswith("running_var"):
            t.mul_(torch.exp(scale * noise))
        else:
            s = t.std().item() if t.numel() > 1 else 0.0
            t.add_(scale * (s if s > 0 else 1.0) * noise)


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """BN running statistics = the statistics of ``x`` (cumulative average), as a trained network's; eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    model(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def normalise(x: torch.Tensor, mean=OFFICIAL_MEAN, std=OFFICIAL_STD) -> torch.Tensor:
    """ToTensor + Normalize of the official transforms (uint8 -> /255; a float batch is already in [0, 1])."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


class Profiler:
    """``sys.setprofile`` observer: ``probe(event, frame, arg)`` for the call / return events of frames running one
    of ``codes`` (reads locals the functions do not return; changes nothing)."""

    def __init__(self, codes: dict):
        self.codes = codes  # code object -> probe

    def __call__(self, frame, event, arg):
        if event in ("call", "return"):
            probe = self.codes.get(frame.f_code)
            if probe is not None:
                probe(event, frame, arg)

    @contextlib.contextmanager
    def on(self):
        prev = sys.getprofile()
        sys.setprofile(self)
        try:
            yield self
        finally:
            sys.setprofile(prev)


@contextlib.contextmanager
def quiet():
    """Official prints and the lr-scheduler warnings of current torch are captured, not shown."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        warnings.simplefilter("ignore")
        yield buf


class FakeScenario:
    """What the suite's plugins read of a scenario: class groups, seen classes, augmentation (off: the batch is
    augmented once by the harness and given to both sides)."""

    def __init__(self, groups, dataset: str = "fidelity"):
        self.groups = groups
        self.spec = SimpleNamespace(augment=AugmentSpec(), name=dataset, dataset=dataset)
        self.data = SimpleNamespace(x_train=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))

    def group_bounds(self):
        return list(self.groups)

    def seen_after(self, k: int) -> int:
        return self.groups[k][1]


class FakeExperience:
    """What the suite's plugins (and Avalanche's evaluation plugin) read of an experience."""

    def __init__(self, dataset):
        self.dataset = dataset

    def logging(self):
        return self


def run_suite_step(method, k: int, x: torch.Tensor, y: torch.Tensor) -> list:
    """One training step of the suite method on the batch ``(x, y)``: the suite plugin's phase start (seen classes,
    loader, the profile's optimiser), then Avalanche's ``training_epoch`` over the loader's single batch (the
    strategy's own forward, criterion, plugin callbacks, backward, step).  Returns the batch as the loader drew it."""
    s = method.strategy
    s.adapted_dataset = TensorDataset(x, y)
    method.suite_plugin.phase = k
    s.clock.train_exp_counter = k
    method.suite_plugin.before_training_exp(s)
    batches = list(s.dataloader)
    assert len(batches) == 1
    s.dataloader = batches
    s.model.train()  # Avalanche's train() does this before its epochs
    s.training_epoch()
    method.suite_plugin.leave_autocast()
    return batches[0]


@functools.lru_cache(maxsize=1)
def _mini():
    return load_arrays("cifar100-mini")


def per_class_data(classes, per_class: int, offset: int = 0):
    """``per_class`` embedded CIFAR-100 training images of each class (from the ``offset``-th), labels = class."""
    d = _mini()
    xs, ys = [], []
    for c in classes:
        idx = (d.y_train == c).nonzero().flatten()[offset:offset + per_class]
        xs.append(d.x_train[idx])
        ys.append(torch.full((len(idx),), c))
    return torch.cat(xs), torch.cat(ys)


def augmented_batch(classes, gen: torch.Generator, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One image per entry of ``classes`` (unused by herding: from the ``offset``-th of its class), random crop 4 and
    flip (``benchmark.augment``: the official train transform's two operations, seeded): floats in [0, 1]."""
    xs, ys = [], []
    seen: dict = {}
    for c in classes:
        x, _ = per_class_data([c], 1, offset + seen.get(c, 0))
        seen[c] = seen.get(c, 0) + 1
        xs.append(x)
        ys.append(c)
    return augment_batch(torch.cat(xs), AugmentSpec(crop_padding=4, flip=True), gen), torch.tensor(ys)


def make_row(meta: SimpleNamespace, level: int, compared: str, diffs: dict, tol: float, note: str = "",
             departure: str = "", details: dict | None = None, verdict_override: str = "") -> Row:
    """A row from per-item relative differences; ``meta``: method, repository, commit, patches.
    ``verdict_override``: level 3's verdict against the official floor rather than ``tol`` alone."""
    name, mx = worst(diffs)
    return Row(meta.method, level, meta.repository, meta.commit, compared, float(mx), float(tol),
               verdict_override or verdict(mx, tol, departure), note or departure,
               {"worst": name, "per_item": diffs, **(details or {})},
               [list(p) for p in meta.patches])


# ------------------------------------------------------------------------------------------------------------------
# official side
def _official_modules(official: Path) -> SimpleNamespace:
    code = Path(official) / "cifar100-class-incremental"
    with official_imports(code, *PREFIXES), quiet():
        sys.modules["utils_pytorch"] = types.ModuleType("utils_pytorch")  # P1
        import modified_linear
        import modified_resnet_cifar
        from utils_incremental import compute_accuracy, compute_features, incremental_train_and_eval_MR_LF
    return SimpleNamespace(resnet32=modified_resnet_cifar.resnet32, Split=modified_linear.SplitCosineLinear,
                           compute_features=compute_features.compute_features,
                           compute_accuracy=compute_accuracy.compute_accuracy,
                           train=incremental_train_and_eval_MR_LF.incremental_train_and_eval_MR_LF)


def _official_phase1_model(mods, gen: torch.Generator, calib: torch.Tensor) -> nn.Module:
    """The network at the end of phase 1: phase 0's ``resnet32(num_classes=6)`` (SCRIPT:173) given phase 1's
    ``SplitCosineLinear(64, 6, 3)`` as SCRIPT:187-190 do, then every weight moved (a trained-looking state) and the BN
    statistics set from ``calib``."""
    tg = mods.resnet32(num_classes=GROUPS[0][1])
    fc = mods.Split(tg.fc.in_features, tg.fc.out_features, NB_CL)  # SCRIPT:187
    fc.fc1.weight.data = tg.fc.weight.data  # SCRIPT:188
    fc.sigma.data = tg.fc.sigma.data  # SCRIPT:189
    tg.fc = fc  # SCRIPT:190
    with torch.no_grad():
        fc.sigma.fill_(5.0)
    jitter(tg, gen, 0.3)
    calibrate_bn(tg, normalise(calib))
    return tg


def _official_expand(mods, tg_model):
    """SCRIPT:196-207 (reference re-statement): the next phase's network."""
    ref_model = copy.deepcopy(tg_model)  # :196
    in_features = tg_model.fc.in_features  # :197
    out_features1 = tg_model.fc.fc1.out_features  # :198
    out_features2 = tg_model.fc.fc2.out_features  # :199
    new_fc = mods.Split(in_features, out_features1 + out_features2, NB_CL)  # :202
    new_fc.fc1.weight.data[:out_features1] = tg_model.fc.fc1.weight.data  # :203
    new_fc.fc1.weight.data[out_features1:] = tg_model.fc.fc2.weight.data  # :204
    new_fc.sigma.data = tg_model.fc.sigma.data  # :205
    tg_model.fc = new_fc  # :206
    lamda_mult = (out_features1 + out_features2) * 1.0 / NB_CL  # :207
    cur_lamda = 5.0 * np.sqrt(lamda_mult)  # :209-211 (--lamda 5 --adapt_lamda, run.sh)
    return ref_model, float(cur_lamda)


def _official_imprint(mods, tg_model, x_new: torch.Tensor, y_new: torch.Tensor) -> torch.Tensor:
    """SCRIPT:266-292 (reference re-statement), features by the official ``compute_features``."""
    old_embedding_norm = tg_model.fc.fc1.weight.data.norm(dim=1, keepdim=True)  # :268
    average_old_embedding_norm = torch.mean(old_embedding_norm, dim=0).to("cpu").type(torch.DoubleTensor)  # :269
    tg_feature_model = nn.Sequential(*list(tg_model.children())[:-1])  # :271
    num_features = tg_model.fc.in_features  # :272
    novel_embedding = torch.zeros((NB_CL, num_features))  # :273
    lo = GROUPS[PHASE][0]
    for cls_idx in range(lo, lo + NB_CL):  # :274
        xc = normalise(x_new[y_new == cls_idx])  # :275-281 (that class's training images, transform_test)
        cls_features = mods.compute_features(tg_feature_model, [(xc, torch.zeros(len(xc)))], len(xc), num_features,
                                             device=CPU)  # :282
        norm_features = F.normalize(torch.from_numpy(cls_features), p=2, dim=1)  # :286
        cls_embedding = torch.mean(norm_features, dim=0)  # :287
        novel_embedding[cls_idx - lo] = F.normalize(cls_embedding, p=2, dim=0) * average_old_embedding_norm  # :289
    tg_model.fc.fc2.weight.data = novel_embedding  # :292
    return novel_embedding.clone()


def _official_features(mods, tg_model, x: torch.Tensor) -> np.ndarray:
    tg_feature_model = nn.Sequential(*list(tg_model.children())[:-1])  # SCRIPT:384
    return mods.compute_features(tg_feature_model, [(normalise(x), torch.zeros(len(x)))], len(x),
                                 tg_model.fc.in_features, device=CPU)  # SCRIPT:395


def _official_herding(mods, tg_model, xc: torch.Tensor, nb_protos_cl: int) -> np.ndarray:
    """SCRIPT:388-414 for one class (reference re-statement): the herding ranks (0 = not picked) and how often the
    argmax fell on an image already picked."""
    mapped_prototypes = _official_features(mods, tg_model, xc)  # :390-395
    D = mapped_prototypes.T  # :396
    D = D / np.linalg.norm(D, axis=0)  # :397
    mu = np.mean(D, axis=1)  # :400
    alpha = np.zeros(len(xc))  # :403 (alpha_dr_herding[index1, :, index2] * 0)
    w_t = mu  # :404
    iter_herding, iter_herding_eff = 0, 0  # :405-406
    while not (np.sum(alpha != 0) == min(nb_protos_cl, 500)) and iter_herding_eff < 1000:  # :407
        tmp_t = np.dot(w_t, D)  # :408
        ind_max = np.argmax(tmp_t)  # :409
        iter_herding_eff += 1  # :410
        if alpha[ind_max] == 0:  # :411
            alpha[ind_max] = 1 + iter_herding  # :412
            iter_herding += 1  # :413
        w_t = w_t + mu - D[:, ind_max]  # :414
    return alpha, iter_herding_eff - iter_herding  # ranks, argmax hits on an image already picked


def _official_class_mean(mods, tg_model, xc: torch.Tensor, picked: np.ndarray) -> np.ndarray:
    """SCRIPT:428-451 for one class (reference re-statement) with the exemplars ``picked`` (0/1 per image)."""
    D = _official_features(mods, tg_model, xc).T  # :428-434
    D = D / np.linalg.norm(D, axis=0)  # :435
    D2 = _official_features(mods, tg_model, xc.flip(3)).T  # :437-441 ([:, :, :, ::-1] of HWC images)
    D2 = D2 / np.linalg.norm(D2, axis=0)  # :442
    alph = picked * 1.0  # :445-446
    alph = alph / np.sum(alph)  # :449
    mean = (np.dot(D, alph) + np.dot(D2, alph)) / 2  # :450
    return mean / np.linalg.norm(mean)  # :451


@contextlib.contextmanager
def _margin_ranking_broadcast():
    """P3."""
    orig = F.margin_ranking_loss

    def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean", **kwargs):
        if target.dim() == input1.dim() or reduction != "mean" or kwargs:
            return orig(input1, input2, target, margin=margin, reduction=reduction, **kwargs)
        return (-target * (input1 - input2) + margin).clamp(min=0).mean()  # torch 0.4 ATen, reduction mean

    F.margin_ranking_loss = margin_ranking_loss
    try:
        yield
    finally:
        F.margin_ranking_loss = orig


def _official_step(mods, tg_model, ref_model, cur_lamda, x, y) -> dict:
    """Optimiser of SCRIPT:325-339 (reference re-statement), then the official training function for one epoch of
    the one batch; returns its loss terms (locals at its return)."""
    ignored_params = list(map(id, tg_model.fc.fc1.parameters()))  # :327
    base_params = filter(lambda p: id(p) not in ignored_params, tg_model.parameters())  # :328-329
    tg_params = [{"params": base_params, "lr": 0.1, "weight_decay": 5e-4},
                 {"params": tg_model.fc.fc1.parameters(), "lr": 0, "weight_decay": 0}]  # :330-331
    tg_optimizer = torch.optim.SGD(tg_params, lr=0.1, momentum=0.9, weight_decay=5e-4)  # :338 (:98-102)
    tg_lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(tg_optimizer, milestones=[80, 120], gamma=0.1)  # :339
    rec = {}

    def probe(event, frame, arg):
        if event == "return" and "loss3" in frame.f_locals:
            rec.update({k: frame.f_locals[k] for k in ("loss1", "loss2", "loss3", "train_loss")})

    with Profiler({mods.train.__code__: probe}).on(), quiet(), _margin_ranking_broadcast():
        mods.train(1, tg_model, ref_model, tg_optimizer, tg_lr_scheduler, [(normalise(x), y)],
                   [(normalise(x[:2]), y[:2])], 1 + PHASE, 1, cur_lamda, 0.5, 2, 1.0, device=CPU)  # run.sh flags
    return {"ce": rec["loss2"].item(), "less_forget": rec["loss1"].item(), "margin_ranking": rec["loss3"].item(),
            "total": float(rec["train_loss"]), "lambda": cur_lamda}, tg_optimizer


# ------------------------------------------------------------------------------------------------------------------
# suite side and the comparisons
HEAD = {"fc.weight": "head.weight", "fc.fc1.weight": "head.weight", "fc.fc2.weight": "head.weight",
        "fc.sigma": "head.sigma"}


def _suite_method(seed: int) -> UCIR:
    """The suite's ``UCIR`` as the runner builds it: ResNet-32 (with the official statistics, see the docstring),
    the method's defaults (4 exemplars a class here), the paper profile's UCIR recipe (SGD 0.1, momentum 0.9, wd
    5e-4)."""
    net = build_model("resnet32", GROUPS[-1][1], 3, OFFICIAL_MEAN, OFFICIAL_STD)
    params = {**METHODS.entry("ucir").extra["defaults"], "memory_per_class": M}
    recipe = PROFILES.get("paper").recipes("ucir")[1]
    return UCIR(MethodContext(net, FakeScenario(GROUPS), lambda k: recipe, params, CPU, seed))


def _index_of(xc: torch.Tensor, img: torch.Tensor) -> int:
    return int(next(i for i in range(len(xc)) if torch.equal(xc[i], img)))


def _official_picks(alpha: np.ndarray, m: int) -> list[int]:
    sel = np.where((alpha > 0) & (alpha < m + 1))[0]  # SCRIPT:445-447
    return [int(i) for i in sel[np.argsort(alpha[sel])]]  # in herding order (the protoset itself is by index)


def _herding_row(meta, mods, off, net, x_old, y_old, memory) -> tuple[Row, dict]:
    """Per class: the official herding (re-statement) against the suite's memory (``M`` of ``PER_CLASS``) and against
    the suite's ``herding_order`` on the same features for ``M_MORE`` (the official loop may pick an image again:
    ``alpha`` is not masked, ``w_t`` moves anyway, :411-414; the suite excludes picked images)."""
    herd, diff, picks = {}, {}, {}
    for c in range(GROUPS[1][1]):
        xc = x_old[y_old == c]
        picks[c] = [_index_of(xc, e) for e in memory.x[c]]
        more = herding_order(embed(net.backbone, xc, CPU), M_MORE).tolist()
        for m, s_order in ((M, picks[c]), (M_MORE, more)):
            alpha, repicks = _official_herding(mods, off, xc, m)
            o_order = _official_picks(alpha, m)
            key = f"class {c}, {m} of {len(xc)}"
            herd[key] = {"official": o_order, "suite": s_order, "official_repicks": repicks}
            diff[key] = 1.0 - len(set(o_order) & set(s_order)) / m
    differ = {m: sum(v > 0 for k, v in diff.items() if f", {m} of" in k) for m in (M, M_MORE)}
    order = sum(h["official"] != h["suite"] for h in herd.values())
    rep = sum(h["official_repicks"] > 0 for h in herd.values())
    row = make_row(meta, 2, f"herding: exemplar set per class ({M} and {M_MORE} of {PER_CLASS}; fraction differing)",
                   diff, 0.0, details={"herding": herd},
                   departure="kept on purpose: herding without replacement (iCaRL Alg. 4), "
                             "docs/official-code-cil-baselines.md",
                   note=f"sets differ in {differ[M]} / {differ[M_MORE]} of 9 classes ({M} / {M_MORE} exemplars), order "
                        f"in {order} of 18; the official argmax re-picked an image in {rep} of 18 (not masked, w_t "
                        f"moves anyway: lines 407-414), the suite's herding_order excludes picked images; reference "
                        f"re-statement of {SCRIPT}:388-414,445-447")
    return row, picks


def _exemplar_rows(meta, mods, off, method, x_old, y_old, x_test, y_test) -> list[Row]:
    """End of phase 1 on both sides from the same network: herding per class, class means (official formula on the
    suite's exemplars, so that the two are compared separately) and nearest-mean scores of a test batch."""
    net, u, s = method.model, method.ucir, method.strategy
    net.set_active_classes(GROUPS[1][1])
    first = y_old < GROUPS[1][0]
    u.memory.update(net.backbone, x_old[first], y_old[first], CPU)  # phase 0's after_training_exp, same network
    s.clock.train_exp_counter = 1
    s.experience = FakeExperience(TensorDataset(x_old[~first], y_old[~first]))
    u.after_training_exp(s)  # group 1's herding, the NME means, the previous model, n_old
    herd_row, picks = _herding_row(meta, mods, off, net, x_old, y_old, u.memory)
    means = np.zeros((net.embed_dim, GROUPS[1][1], 2))
    for c in range(GROUPS[1][1]):
        picked = np.zeros(PER_CLASS)
        picked[picks[c]] = 1
        means[:, c, 0] = means[:, c, 1] = _official_class_mean(mods, off, x_old[y_old == c], picked)  # :422-456
    rec = {}

    def probe(event, frame, arg):
        if event == "return":
            rec["score"] = frame.f_locals["score_icarl"]

    with Profiler({mods.compute_accuracy.__code__: probe}).on(), quiet():
        mods.compute_accuracy(off, nn.Sequential(*list(off.children())[:-1]), means,
                              [(normalise(x_test), y_test)], print_info=False, device=CPU)
    net.eval()
    with torch.no_grad():
        nme = method.scores(x_test)["ucir-nme"][:, : GROUPS[1][1]]
    net.train()
    mean_diffs = compare_tensors({"class means": torch.from_numpy(means[:, :, 0].T), "NME scores": rec["score"]},
                                 {"class means": u.class_means, "NME scores": nme})
    return [herd_row,
            make_row(meta, 2, "NME class means (exemplars + flips) and nearest-mean scores", mean_diffs, GRAD_RTOL,
                     note=f"scores by the official compute_accuracy; means: reference re-statement of "
                          f"{SCRIPT}:428-451 on the suite's exemplars")]


def _imprint_row(meta, mods, off, method, x_new, y_new) -> tuple[Row, nn.Module, float]:
    """Phase 2 starts: the official expansion and imprinting, the suite's ``before_training_exp``."""
    ref_model, cur_lamda = _official_expand(mods, off)
    novel = _official_imprint(mods, off, x_new, y_new)
    s = method.strategy
    s.clock.train_exp_counter = PHASE
    s.experience = FakeExperience(TensorDataset(x_new, y_new))
    method.ucir.before_training_exp(s)
    lo, hi = GROUPS[PHASE]
    w = method.model.head.weight.detach()
    diffs = compare_tensors({"new rows (imprinted)": novel, "old rows": off.fc.fc1.weight.detach()},
                            {"new rows (imprinted)": w[lo:hi], "old rows": w[:lo]})
    row = make_row(meta, 2, "imprinted weights of the new classes", diffs, GRAD_RTOL,
                   note=f"reference re-statement of {SCRIPT}:266-292 (features: official compute_features)")
    return row, ref_model, cur_lamda


def _suite_step(method, x, y) -> tuple[dict, list]:
    rec = {}

    def probe(event, frame, arg):
        loc = frame.f_locals
        if event == "call":
            rec["ce"] = loc["strategy"].loss.item()
        elif "lf" in loc:
            rec.update(less_forget=(loc["lam"] * loc["lf"]).item(), lambda_=loc["lam"],
                       margin_ranking=(loc["self"].p["lw_mr"] * loc["mr"]).item(), total=loc["strategy"].loss.item())

    with Profiler({UCIRPlugin.before_backward.__code__: probe}).on():
        batch = run_suite_step(method, PHASE, x, y)
    rec["lambda"] = rec.pop("lambda_")
    return rec, batch


def normalisation_row(meta, twin: nn.Module, x: torch.Tensor, loss_fn, what: str) -> Row:
    """Departure: the suite's CIFAR-100 statistics (every method's) against the official ones, on a copy of the
    pre-step network in train mode: ``loss_fn(logits)`` of the batch under each."""
    twin = frozen_copy(twin).train()
    spec = SCENARIOS.get("cifar100")
    with torch.no_grad():
        official = loss_fn(twin(x)).item()
        twin.backbone.normalize.mean.copy_(torch.tensor(spec.mean).view(1, -1, 1, 1))
        twin.backbone.normalize.std.copy_(torch.tensor(spec.std).view(1, -1, 1, 1))
        suite = loss_fn(twin(x)).item()
    return make_row(meta, 1, f"input normalisation statistics ({what} of the step's batch)",
                    compare_terms({what: official}, {what: suite}), LOSS_RTOL,
                    departure=f"suite normalises CIFAR-100 with the PASS statistics std {spec.std} for every "
                              f"method (README, Scenarios); official std {OFFICIAL_STD}: inputs x"
                              f"{spec.std[0] / OFFICIAL_STD[0]:.2f} smaller in the suite; the suite's batch "
                              "augmentation also adds PASS's brightness jitter (official: crop + flip)")


def momentum_buffers(opt: torch.optim.Optimizer, named: dict) -> dict:
    """``name -> momentum buffer`` of an SGD optimiser after its first step: ``g + wd p``, the update divided by the
    lr, unrounded (the parameters after the step are rounded to float32 near |p|, so the update read from them
    carries a round-off of one ulp of the parameter, ~3e-5 of a BN weight's update here)."""
    return {n: opt.state[p]["momentum_buffer"].detach().clone() for n, p in named.items()
            if "momentum_buffer" in opt.state.get(p, {})}


def _update_rows(meta, off, off_opt, method, before) -> list[Row]:
    """Gradients, the SGD update (momentum buffer after the first step) and the parameters after the step."""
    net, lo, hi = method.model, GROUPS[PHASE][0], GROUPS[PHASE][1]
    rows_n = {"head.weight": hi}
    g_suite, p_suite = suite_tensors(net, "grad", rows_n), suite_tensors(net, "param", rows_n)
    g_off = same_shapes(official_tensors(off, "grad", HEAD), g_suite)
    p_off = same_shapes(official_tensors(off, "param", HEAD), p_suite)
    named_off = {resnet_key(n) or HEAD[n]: p for n, p in off.named_parameters() if n != "fc.fc1.weight"}
    buf_off = same_shapes(momentum_buffers(off_opt, named_off), g_suite)
    buf_suite = momentum_buffers(method.strategy.optimizer, dict(net.named_parameters()))
    buf_suite = {k: (v[lo:hi] if k == "head.weight" else v) for k, v in buf_suite.items() if k in buf_off}
    upd = compare_tensors(buf_off, buf_suite)  # head.weight: the new rows (the old ones have lr 0 officially)
    after = compare_tensors(p_off, p_suite)
    moved = {"official": float((p_off["head.weight"][:lo] - before["head.weight"][:lo]).abs().max()),
             "suite": float((p_suite["head.weight"][:lo] - before["head.weight"][:lo]).abs().max())}
    return [make_row(meta, 2, "gradients of every parameter (backbone, old rows, new rows, sigma)",
                     compare_tensors(g_off, g_suite), GRAD_RTOL),
            make_row(meta, 2, "SGD step: update (g + wd p) of every parameter and parameters after it",
                     {**{"update " + k: v for k, v in upd.items()}, **{"after " + k: v for k, v in after.items()}},
                     GRAD_RTOL,
                     note=f"official fc1 (old rows) lr 0 / wd 0 (optimiser: reference re-statement of "
                          f"{SCRIPT}:325-339); suite restores the old rows after the step: old rows moved "
                          f"{moved['official']:.1e} / {moved['suite']:.1e} (official / suite)",
                     details={"old_rows_moved": moved,
                              "update_read_from_parameters": step_change_rel_diff(before, p_off, p_suite)})]


def _step_rows(meta, mods, off, ref_model, cur_lamda, method, xb, yb) -> list[Row]:
    net = method.model
    before = suite_tensors(net, "param", {"head.weight": GROUPS[PHASE][1]})
    twin = frozen_copy(net)
    suite_terms, (x, y, _) = _suite_step(method, xb, yb)
    official_terms, off_opt = _official_step(mods, off, ref_model, cur_lamda, x, y)
    terms = compare_terms(official_terms, suite_terms)
    b_diff = compare_tensors(official_tensors(off, "buffer", HEAD), suite_tensors(net, "buffer", {}))
    rows = [make_row(meta, 1, "loss terms of one phase-2 step: CE, lambda*LF, MR, total", terms, LOSS_RTOL,
                     note="official incremental_train_and_eval_MR_LF (one epoch of one batch) vs UCIR's Naive "
                          "training_epoch; lambda: reference re-statement of " + SCRIPT + ":207-211"),
            *_update_rows(meta, off, off_opt, method, before),
            make_row(meta, 2, "BN running statistics after the step", b_diff, GRAD_RTOL)]
    twin.set_active_classes(GROUPS[PHASE][1])
    rows.append(normalisation_row(meta, twin, x, lambda z: F.cross_entropy(z, y), "CE"))
    return rows


def _prepared(mods, seed: int, meta) -> SimpleNamespace:
    """The state every comparison starts from (module docstring): official and suite models at the end of phase 1,
    exemplars, phase-2 imprinting, then the mid-phase state; the level-1/2 rows made on the way; the generator after
    the draws.  Deterministic in ``seed``, so level 3 rebuilds it for each of its worlds."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_old, y_old = per_class_data(range(GROUPS[1][1]), PER_CLASS)
    x_new, y_new = per_class_data(range(*GROUPS[PHASE]), PER_CLASS)
    x_test, y_test = per_class_data(range(GROUPS[1][1]), 1, offset=PER_CLASS + 3)
    xb, yb = augmented_batch(OLD_IN_BATCH + NEW_IN_BATCH, gen, offset=PER_CLASS)
    off = _official_phase1_model(mods, gen, torch.cat([x_old, x_new]))
    method_obj = _suite_method(seed)
    load_mapped(method_obj.model, {**official_tensors(off, "param", HEAD), **official_tensors(off, "buffer", HEAD)})
    rows = _exemplar_rows(meta, mods, off, method_obj, x_old, y_old, x_test, y_test)
    row, ref_model, cur_lamda = _imprint_row(meta, mods, off, method_obj, x_new, y_new)
    rows.append(row)
    jitter(off, gen, 0.02, skip=("fc.fc1",))  # mid-phase: old rows stay frozen (official fc1 lr 0)
    load_mapped(method_obj.model, {**official_tensors(off, "param", HEAD), **official_tensors(off, "buffer", HEAD)})
    return SimpleNamespace(rows=rows, off=off, ref=ref_model, lam=cur_lamda, method=method_obj, xb=xb, yb=yb, gen=gen)


# -- level 3 --------------------------------------------------------------------------------------------------------
L3_PERTURB = 1e-7  # the floor: relative perturbation of the official weights (a float32 round-off's size)


def _l3_batches(gen: torch.Generator, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A new augmentation of the batch's images (and, cycling, of the next images of each class) for every step."""
    return [augmented_batch(OLD_IN_BATCH + NEW_IN_BATCH, gen, offset=PER_CLASS + i % 4) for i in range(steps)]


def _suite_run(method, batches) -> tuple[list[dict], list]:
    """``len(batches)`` steps of the suite's UCIR with one optimiser (one phase): the phase start once, then one
    Avalanche ``training_epoch`` per batch through a loader built as the phase start builds it.  Per step: the loss
    terms; and the batch as drawn (what the official side receives)."""
    from benchmark.training import TensorBatches

    s, plugin, terms, drawn = method.strategy, method.suite_plugin, [], []

    def probe(event, frame, arg):
        loc = frame.f_locals
        if event == "call":
            terms.append({"ce": loc["strategy"].loss.item()})
        elif "lf" in loc:
            terms[-1].update(less_forget=(loc["lam"] * loc["lf"]).item(),
                             margin_ranking=(loc["self"].p["lw_mr"] * loc["mr"]).item(),
                             total=loc["strategy"].loss.item())

    s.adapted_dataset = TensorDataset(*batches[0])
    plugin.phase = PHASE
    s.clock.train_exp_counter = PHASE
    plugin.before_training_exp(s)
    r = plugin.recipe_for(PHASE)
    with Profiler({UCIRPlugin.before_backward.__code__: probe}).on():
        for i, (x, y) in enumerate(batches):
            if i:
                s.dataloader = TensorBatches(x, y, r.batch_size, plugin.augment, plugin.generator,
                                             channels_last=r.channels_last, on_batch=plugin._count)
            b = list(s.dataloader)
            assert len(b) == 1
            s.dataloader = b
            s.model.train()
            s.training_epoch()
            drawn.append(b[0])
    plugin.leave_autocast()
    return terms, drawn


def _official_run(mods, off, ref_model, cur_lamda, drawn) -> list[dict]:
    """The official training function, one epoch of one batch per step, with one optimiser and scheduler (built as
    in ``_official_step``) kept across the steps."""
    ignored = list(map(id, off.fc.fc1.parameters()))
    base = filter(lambda p: id(p) not in ignored, off.parameters())
    opt = torch.optim.SGD([{"params": base, "lr": 0.1, "weight_decay": 5e-4},
                           {"params": off.fc.fc1.parameters(), "lr": 0, "weight_decay": 0}],
                          lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[80, 120], gamma=0.1)
    out = []
    for x, y, *_ in drawn:
        rec = {}

        def probe(event, frame, arg):
            if event == "return" and "loss3" in frame.f_locals:
                rec.update({k: frame.f_locals[k] for k in ("loss1", "loss2", "loss3", "train_loss")})

        with Profiler({mods.train.__code__: probe}).on(), quiet(), _margin_ranking_broadcast():
            mods.train(1, off, ref_model, opt, sched, [(normalise(x), y)], [(normalise(x[:2]), y[:2])], 1 + PHASE, 1,
                       cur_lamda, 0.5, 2, 1.0, device=CPU)
        out.append({"ce": rec["loss2"].item(), "less_forget": rec["loss1"].item(),
                    "margin_ranking": rec["loss3"].item(), "total": float(rec["train_loss"])})
    return out


def _curve(terms: list[dict]) -> list[float]:
    return [t[k] for t in terms for k in ("ce", "less_forget", "margin_ranking", "total")]


def _level3_rows(meta, mods, seed: int, steps: int) -> list[Row]:
    """Three worlds from the same start: the suite, the official code, and the official code with its weights moved
    by ``L3_PERTURB`` relative (the floor: how far the official run itself departs under a round-off-sized change).
    The loss curves (every term of every step) and the final parameters are compared; identical within
    ``LOSS_RTOL`` or 3x the floor."""
    t0 = time.time()
    world = _prepared(mods, seed, meta)
    batches = _l3_batches(world.gen, steps)
    suite_terms, drawn = _suite_run(world.method, batches)
    official = _official_run(mods, world.off, world.ref, world.lam, drawn)
    control = _prepared(mods, seed, meta)
    g = torch.Generator().manual_seed(seed + 31)
    with torch.no_grad():
        for p in control.off.parameters():
            p.mul_(1 + L3_PERTURB * torch.randn(p.shape, generator=g))
    floor_terms = _official_run(mods, control.off, control.ref, control.lam, drawn)
    a, b, c = _curve(official), _curve(suite_terms), _curve(floor_terms)
    curve = max(rel_diff(x, y) for x, y in zip(a, b))
    floor = max(rel_diff(x, y) for x, y in zip(a, c))
    rows_n = {"head.weight": GROUPS[PHASE][1]}
    p_suite = suite_tensors(world.method.model, "param", rows_n)
    p_off = same_shapes(official_tensors(world.off, "param", HEAD), p_suite)
    p_ctl = same_shapes(official_tensors(control.off, "param", HEAD), p_suite)
    params, params_floor = worst(compare_tensors(p_off, p_suite)), worst(compare_tensors(p_off, p_ctl))
    ok = all(d <= LOSS_RTOL or d <= 3.0 * f for d, f in ((curve, floor), (params[1], params_floor[1])))
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if rel_diff(x, y) > 1e-3), None)
    first_floor = next((i for i, (x, y) in enumerate(zip(a, c)) if rel_diff(x, y) > 1e-3), None)
    note = (f"{steps} phase-2 steps, one SGD optimiser each side, a new augmentation every step; loss curves (CE, "
            f"lambda*LF, MR, total of every step) {curve:.1e} against the official floor {floor:.1e} (official "
            f"weights moved by {L3_PERTURB:g} relative); first term above 1e-3 at "
            f"{'never' if first is None else first + 1} (floor {'never' if first_floor is None else first_floor + 1}"
            f"); final parameters {params[1]:.1e} at {params[0]} (floor {params_floor[1]:.1e}); "
            f"{'within' if ok else 'ABOVE'} 3x the floor; total loss {a[3]:.3f} -> {a[-1]:.3f} (official)")
    return [make_row(meta, 3, f"short run: {steps} identical phase-2 steps (loss curves, final parameters)",
                     {"loss curves": curve, "final parameters": params[1]}, LOSS_RTOL, note=note,
                     details={"curve_official": a, "curve_suite": b, "curve_floor": c, "floor": floor,
                              "params_floor": params_floor[1], "seconds": round(time.time() - t0, 1)},
                     verdict_override="identical" if ok else "differs")]


def run(method: str, official: Path, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """Levels 1 and 2 (module docstring); level 3 with ``steps`` > 0."""
    torch.set_num_threads(1)
    t0 = time.process_time()
    meta = SimpleNamespace(method=method, repository=REPOSITORY, commit=commit, patches=PATCHES)
    mods = _official_modules(official)
    w = _prepared(mods, seed, meta)
    rows = w.rows + _step_rows(meta, mods, w.off, w.ref, w.lam, w.method, w.xb, w.yb)
    if steps > 0:
        rows += _level3_rows(meta, mods, seed, steps)
    cpu = time.process_time() - t0
    for r in rows:
        r.details["cpu_seconds_whole_run"] = round(cpu, 1)
    return rows
