"""RGAL fidelity harness: the suite's ``rgal`` (``strategies/dfkd/rgal.py`` on ``strategies/rgal``) and the
class-incremental building blocks ``rgal-cil`` (``strategies/rgal/``) against the official code of Sharpiless/RGAL,
imported at run time from ``--official DIR`` (nothing of it is copied here).

What is compared
----------------
``rgal`` (data-free distillation), on tiny CPU states: WRN-16-2 teacher -> WRN-16-1 student, CMI generator (ngf 8,
nz 64), synthesis batch 8, student batch 16 (two augmented views of 8 pool images), CIFAR-10 shapes.

1. Loss terms of one synthesis step (official ``AdvTripletSynthesizer.synthesize`` with ``iterations=1``,
   ``datafree/synthesis/triplet.py:95-139``; suite ``RGAL.synthesize`` with ``g_steps=1``):
   the CMI-style terms of the paper's ``L_g`` (Algorithm 1): ``L_bn`` (``DeepInversionHook``,
   ``datafree/hooks.py:85-94``, summed over the teacher's BatchNorms, triplet.py:106), ``L_oh = CE(t, sorted random
   targets)`` (triplet.py:107), ``L_adv`` the masked ``-KL`` (triplet.py:109-113); ``L_tri`` (the paper's Eq. 3
   term as released: the *unswapped* ``TriLoss`` on the
   student's raw block-3 output ``s_layers[2:4]`` pooled, focal/"balanced" negatives on the teacher's logits,
   triplet.py:117-128, ``losses.py:29-67,112-149``) and the total ``bn + oh + adv + 0.1 tri`` (triplet.py:130-131).
   The suite runs ``variant="released"`` (the unswapped hinge) with its defaults ``g_feature="block"``.  A separate
   row measures the suite's default ``variant="paper"`` (Eq. 3's reversed hinge L_ntri), a documented departure.
   One student step (official ``main.train``, ``main.py:397-441``; suite ``RGAL.student_loss`` + the runner's SGD
   step): ``KD = KL_T=20 * T^2`` (``datafree/criterions.py``, main.py:412), ``0.1 * L_tri`` (paper Eq. 5;
   ``DistanceWeighted`` negatives on the student's logits, labels the teacher's argmax of the augmented batch,
   main.py:424-434), ``0.1 * CDLoss`` over the raw blocks ``[x1, x2, x3]`` through 1x1 convolutions (the released
   form of the paper's embedding term ``L_emb``, main.py:414-415, losses.py:174-190) and the total (main.py:438).  The
   suite runs ``emb="released"``, ``positive="image"``, ``student_batch=16`` (the released batch: both views of each
   image); its defaults (``emb="paper"``, ``positive="class"``, 64+64) are measured in their own row.  The pool
   images (official PNGs ``floor(255 x)``, ``_utils.py:89-112``) against the suite's uint8 pool.
2. Gradients of the generator and ``z`` and the Adam step on them (``adam_step_diff``: the update over the elements
   whose gradient is well above Adam's eps; ``step_change_rel_diff`` in the details); gradients of the student and
   the projection (official CD convolutions ``Conv2d(s, t, 1)`` <-> suite ``Linear(s, t)``, the same function on
   the pooled block) and the SGD update (lr 0.1, momentum 0.9, wd 1e-4, main.py:277-280 / dfkd_runner.py:173,
   ``step_change_rel_diff``); BN running statistics after.
3. With ``steps`` > 0: ``steps`` rounds from identical states, each a synthesis round of ``L3_G_STEPS`` (2)
   generator steps (so the Adam update and the lowest-loss selection enter the run) and one student step on the
   pool so far, cosine schedule over the rounds on both sides (main.py:284,350 with one round an epoch; the runner
   with ``ep_steps = kd_steps = 1``).  Each side synthesises into its own pool (official PNGs, suite tensors) and
   trains on it; the suite's draws (pool indices, crop offsets, flips, sampler uniforms) are replayed on the
   official side.  The row: the loss curves' largest relative difference (every generator and student step's total
   loss, in order) and the divergence of the final student, projection and generator BN statistics (the generator's
   weights are reset every round), against the round-off floor: the official code against itself with every
   student weight and buffer multiplied by ``1 + 2^-23 xi`` (about one float32 ulp); ``identical`` when both are
   within ``FLOOR_FACTOR`` (3) times the floor.  The note also gives the round where the curves first part by more
   than 1e-3 (and the floor's), the agreement before the floor parts, differing pool values and sampled negatives.
   These tiny random states are chaotic (argmax labels, sampled negatives, the lowest-loss pick and the uint8
   truncation are discrete): the floor itself reaches ~1e-1 within 50 rounds.

Further rows: the student-side setup probe (R10), the CIFAR-10 normalisation constants (R11).

``rgal-cil`` (no released code exists for the class-incremental L'_g / L'_s; the suite builds them from the same
``strategies/rgal`` functions as the distillation method): pure-function comparisons with the released ``losses.py``
-- ``TriLoss(balanced_sampling)`` with ``negative=False/True`` against ``sampled_triplet_loss(sampler, reverse)``
for C = 10 and 100 (losses, drawn triplets, sampler weights, gradients), the ``TripletLossPlugin`` (L'_s, paper
Eq. 5 in the CIL setting) against ``0.1 * TriLoss()``, one ``optimize_prototypes`` Adam step with only L_ntri
(L'_g's triplet term, paper Eq. 17) against ``TriLoss(balanced, negative=True)`` + Adam; the sampler's normalisation
in an underflow case (R8) and at distance 2 (R9).

Identical states and draws
--------------------------
Random weights made non-trivial (``make_nontrivial``: BN statistics calibrated on crop-padded near-gray images and
perturbed, classifier logits centred, the student made to agree with the teacher on gray images so that the
adversarial mask and the triplets are not empty), built in the official classes and mapped into the suite's
(``wrn_o2s``, ``cmigen_o2s``; every suite key covered).  The suite's models carry the official CIFAR-10
normalisation constants (R11).  ``z`` and the one-hot targets are drawn by the harness and handed to both sides;
both generator resets run from the same global seed (bit-identical: checked); the suite's crop/flip draws are read
from its ``torch.Generator`` state before each call and replayed on the official side (checked: the replay reproduces
the suite's augmented batch exactly); ``torch.multinomial`` is an inverse-CDF draw with uniforms shared by the sides.

Levels 1-2 verdicts: ``LOSS_RTOL`` / ``GRAD_RTOL``; above them a tensor is still ``identical`` when its difference is
within ``FLOOR_FACTOR`` times the official float32 code's own error against the official code run in float64 from
the same state (the same draws; the generator reset values copied), e.g. a bias gradient that is a cancelling sum
or an update that float32 parameters can only hold to one ulp.

Monkeypatches (``PATCHES`` lists them with their reasons; every row carries the list)
-------------------------------------------------------------------------------------
Import-time stubs, installed only when the package is missing and removed afterwards: P1 ``termcolor`` (the official
logger's colours), P2 ``kornia`` (the synthesiser's augmentation object, replaced by P6), P3
``torchvision.models.utils`` (removed in torchvision 0.13, imported by unused official model files).  While official
code runs: P5 ``triplet.DataIter`` lazy (no 4-worker loader over the PNG pool), P6 ``synthesizer.aug`` replays the
suite's crop/flip draws, P7 ``torch.randn`` / ``torch.randint`` serve the injected z and targets (and the CIFAR-10
train transform is rebuilt instead of downloading the data set), P8 ``main.train`` gets a sampler shim with the
replayed student batch (``tqdm`` identity, prints captured), P9 ``torch.multinomial`` shared inverse-CDF draws on
both sides, P10 recording-only wrappers.  Suite side: S0 injected z / targets and the official normalisation
constants.  F64: the float64 reference loads the float32 run's generator-reset values.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_terms, compare_tensors, official_imports,
                                        rel_diff, step_change_rel_diff, tensor_rel_diff, verdict, worst)

REPOSITORY = "Sharpiless/RGAL"
PATCHES: list[tuple[str, str]] = [
    ("P1: sys.modules['termcolor'] stub (only when termcolor is not installed)",
     "datafree/utils/logger.py imports it for coloured log prefixes; no logger is created"),
    ("P2: sys.modules['kornia'] stub (only when kornia is not installed)",
     "triplet.py builds its synthesis augmentation from kornia; that object is replaced by P6"),
    ("P3: sys.modules['torchvision.models.utils'] -> torch.hub.load_state_dict_from_url (torchvision >= 0.13)",
     "imported by official model files the harness never uses (resnet_in, mobilenetv2, deeplab)"),
    ("P5: datafree.synthesis.triplet.DataIter -> a lazy stub while synthesize() runs",
     "synthesize() ends by starting a 4-worker DataLoader over the PNG pool; the harness injects the student batch "
     "(P8); the PNG files are still written and read back"),
    ("P6: synthesizer.aug -> replay of the suite's crop/flip draws (zero-pad 4, crop, flip) + the official Normalizer",
     "kornia RandomCrop(padding=4)/RandomHorizontalFlip defaults with the suite's random draws"),
    ("P7: torch.randn / torch.randint return the injected z and targets inside synthesize(); the CIFAR train "
     "transform rebuilt as registry.py:111-117 (get_dataset would download CIFAR-10; its loader is never iterated)",
     "identical z and one-hot targets on both sides; the z object gives its gradient and its value after Adam"),
    ("P8: main.train receives a synthesizer shim whose sample() returns the replayed batch [view1, view2], "
     "normalised; main.tqdm / triplet.tqdm -> identity; prints captured",
     "the student batch is the suite's draw (pool indices, crop, flip) applied to the side's own pool images"),
    ("P9: torch.multinomial -> inverse-CDF draw with uniforms shared by the sides (both sides' samplers)",
     "the official samplers draw on the global RNG, the suite's on its torch.Generator: identical negatives "
     "given identical weights; weights and indices are recorded and compared"),
    ("P10: recording-only wrappers (Tensor.backward, F.cross_entropy, TriLoss/CDLoss/KLDiv forward, optimizer "
     "step hooks, reset_model / reset_generator, the suite's kd_loss / sampled_triplet_loss / embedding_loss / "
     "pool_batch / generator_loss / synthesis_augment)",
     "they record values and call the original unchanged"),
    ("S0: suite method.randn / method.random_targets return the injected z and targets; the suite's models are "
     "built with the official CIFAR-10 normalisation constants (registry.py:19)",
     "identical inputs; R11 (the suite's scenario std differs) is measured in its own row"),
    ("F64: the float64 reference run of the official code loads the float32 run's generator-reset values",
     "nn.init.normal_ draws different numbers in float64; the reference must start from the same state"),
]
B, NZ, NGF, C = 8, 64, 8, 10  # synthesis batch, z size, generator width, classes
FLOOR_EPS = 2.0 ** -23  # level-3 floor: relative perturbation of the student's weights, about one float32 ulp
FLOOR_FACTOR = 3.0  # within this factor of the floor: identical
ADAM_GRAD_FLOOR = 1e-4  # Adam rows: elements whose |gradient| exceeds this share of the tensor's largest (and 1e-6)
L3_G_STEPS = 2  # generator steps per level-3 synthesis round
OFFICIAL_PREFIXES = ("datafree", "losses", "main", "registry")
RELEASED = {"variant": "released", "nz": NZ, "student_batch": 2 * B, "positive": "image", "emb": "released"}


# ------------------------------------------------------------------------------------------------------------------
# generic helpers (also used by dfad_official)
@contextlib.contextmanager
def patched(*triples):
    """``patched((obj, name, value), ...)``: set attributes, restore afterwards (an instance attribute that shadowed
    a class attribute is deleted again)."""
    saved = []
    try:
        for obj, name, value in triples:
            had = isinstance(obj, (type, types.ModuleType)) or name in getattr(obj, "__dict__", {})
            saved.append((obj, name, getattr(obj, name), had))
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, old, had in reversed(saved):
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)


class _Placeholder:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        raise RuntimeError("fidelity harness stub: this official object is replaced before use")

    def __getattr__(self, name):
        return lambda *a, **k: None


@contextlib.contextmanager
def import_stubs(*names: str):
    """P1-P4: stub modules for packages the official code imports but the compared paths never use, installed only
    when missing and removed on exit."""
    added = []

    def add(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        added.append(name)
        return m

    if "termcolor" in names and importlib.util.find_spec("termcolor") is None:
        add("termcolor", colored=lambda s, *a, **k: s)
    if "kornia" in names and importlib.util.find_spec("kornia") is None:
        add("kornia", augmentation=add("kornia.augmentation", RandomCrop=_Placeholder,
                                       RandomHorizontalFlip=_Placeholder))
    if "torchvision.models.utils" in names:
        try:
            importlib.import_module("torchvision.models.utils")
        except ImportError:
            add("torchvision.models.utils", load_state_dict_from_url=torch.hub.load_state_dict_from_url)
    if "visdom" in names and importlib.util.find_spec("visdom") is None:
        add("visdom", Visdom=_Placeholder)
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def quiet():
    return contextlib.redirect_stdout(io.StringIO())


class SharedDraws:
    """P9: ``torch.multinomial(w, 1)`` for every side: row i of the k-th call of a side in a phase takes the first
    column whose cumulative normalised weight exceeds ``u[phase, k][i]``, the uniforms shared by the sides.  Invalid
    rows raise as ``torch.multinomial`` does.  ``record``: keep each call's weights and indices."""

    def __init__(self, seed: int, record: bool = True):
        self.g = torch.Generator().manual_seed(seed)
        self.u, self.log, self.record = {}, {}, record
        self.side, self.phase, self.k = None, None, 0

    def begin(self, side: str, phase=0):
        self.side, self.phase, self.k = side, phase, 0
        self.log[(side, phase)] = []

    def __call__(self, input, num_samples=1, replacement=False, *, generator=None, out=None):
        assert num_samples == 1 and input.dim() == 2, "SharedDraws handles multinomial(w, 1) on 2-d weights only"
        w = input.detach().to(torch.float64)
        if not torch.isfinite(w).all() or (w < 0).any():
            raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        if (w.sum(1) <= 0).any():
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        key = (self.phase, self.k)
        have = self.u.get(key, torch.zeros(0, dtype=torch.float64))
        if len(have) < w.shape[0]:
            have = torch.cat([have, torch.rand(w.shape[0] - len(have), generator=self.g, dtype=torch.float64)])
            self.u[key] = have
        cdf = torch.cumsum(w / w.sum(1, keepdim=True), 1)
        idx = torch.searchsorted(cdf, have[: w.shape[0], None].contiguous(), right=True).squeeze(1)
        idx = torch.minimum(idx, (w > 0).long().cumsum(1).argmax(1))
        if self.record:
            self.log[(self.side, self.phase)].append((input.detach().float().clone(), idx.clone()))
        self.k += 1
        return idx.unsqueeze(1).to(input.device)

    def compare(self, a: str, b: str, phase=0) -> dict:
        """Sides ``a`` and ``b`` in ``phase``: number of calls, largest weight difference, differing indices."""
        la, lb = self.log.get((a, phase), []), self.log.get((b, phase), [])
        out = {"calls": [len(la), len(lb)], "weights_max_abs": 0.0, "indices_differing": 0}
        if len(la) != len(lb):
            out["indices_differing"] = -1
            return out
        for (wa, ia), (wb, ib) in zip(la, lb):
            if wa.shape != wb.shape:
                out["indices_differing"] = -1
                return out
            out["weights_max_abs"] = max(out["weights_max_abs"], (wa - wb).abs().max().item() if wa.numel() else 0.0)
            out["indices_differing"] += int((ia != ib).sum())
        return out


class LossLog:
    """P10: the value of every tensor ``.backward()`` is called on (each step's total loss)."""

    def __init__(self):
        self.values: list[float] = []

    def patch(self):
        orig, log = torch.Tensor.backward, self

        def backward(t, *a, **k):
            log.values.append(float(t.detach().reshape(-1)[0]))
            return orig(t, *a, **k)

        return torch.Tensor, "backward", backward


def param_names(**modules) -> dict:
    """``id(parameter) -> prefix + name`` (keyword ``_`` for no prefix, else ``prefix=module``)."""
    out = {}
    for prefix, m in modules.items():
        for n, p in m.named_parameters():
            out[id(p)] = ("" if prefix == "_" else prefix + ".") + n
    return out


def record_steps(opt: torch.optim.Optimizer, names: dict) -> list:
    """P10: optimiser step hooks recording gradients, parameters before and after every step."""
    log = []

    def params():
        return [p for g in opt.param_groups for p in g["params"]]

    def pre(o, args, kwargs):
        log.append({"grads": {names[id(p)]: p.grad.detach().clone() for p in params() if p.grad is not None},
                    "before": {names[id(p)]: p.detach().clone() for p in params()}})

    def post(o, args, kwargs):
        log[-1]["after"] = {names[id(p)]: p.detach().clone() for p in params()}

    opt.register_step_pre_hook(pre)
    opt.register_step_post_hook(post)
    return log


def bn_modules(m: nn.Module) -> list:
    return [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def make_nontrivial(model, x, gen, fc=None, fc_scale=1.0):
    """Random BN affine parameters; running statistics set to the statistics of ``x`` (one cumulative pass in
    train mode), then perturbed; with ``fc``, the classifier scaled and its logits centred on ``x``."""
    for b in bn_modules(model):
        if b.affine:
            b.weight.copy_(1 + 0.1 * torch.randn(b.weight.shape, generator=gen))
            b.bias.copy_(0.1 * torch.randn(b.bias.shape, generator=gen))
        b.momentum = None
        b.reset_running_stats()
    model.train()
    model(x)
    for b in bn_modules(model):
        b.momentum = 0.1
        b.running_mean.add_(0.1 * torch.randn(b.running_mean.shape, generator=gen) * b.running_var.sqrt())
        b.running_var.mul_(torch.exp(0.2 * torch.randn(b.running_var.shape, generator=gen)))
        b.num_batches_tracked.fill_(7)
    model.eval()
    if fc is not None:
        fc.weight.mul_(fc_scale)
        out = model(x)
        fc.bias.sub_((out[0] if isinstance(out, tuple) else out).mean(0))


@torch.no_grad()
def perturb_floating(module: nn.Module, seed: int, eps: float = FLOOR_EPS) -> None:
    """The round-off floor's perturbation: every floating parameter and buffer times ``1 + eps * xi``."""
    g = torch.Generator().manual_seed(7919 + seed)
    for _, v in sorted(module.state_dict().items()):
        if v.is_floating_point():
            v.copy_((v.double() * (1 + eps * torch.randn(v.shape, generator=g, dtype=torch.float64))).to(v.dtype))


def map_state(sd: dict, fn) -> dict:
    return {fn(k): v.clone() for k, v in sd.items() if fn(k) is not None}


def load_mapped(model: nn.Module, sd: dict, fn, allowed_missing=()) -> None:
    """Load the official state ``sd`` into a suite model through the name map ``fn``; every suite key must be
    covered except ``allowed_missing``."""
    missing, unexpected = model.load_state_dict(map_state(sd, fn), strict=False)
    missing = [m for m in missing if m not in allowed_missing]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")


def adam_step_diff(before: dict, a_after: dict, b_after: dict, a_grad: dict, b_grad: dict) -> tuple[dict, dict]:
    """Per tensor: the difference of the two Adam updates relative to the largest update, over the elements whose
    gradient is above ``ADAM_GRAD_FLOOR`` times the tensor's largest gradient (and 1e-6) on both sides, and the
    number of elements left out.  Adam's first step moves an element by ``lr g / (|g| + eps)``: where ``|g|`` is
    small the update turns a round-off-sized absolute gradient difference into an order-one relative one
    (``step_change_rel_diff`` over all moving elements is in the details)."""
    diffs, excluded = {}, {}
    for k, w0 in before.items():
        ga, gb = a_grad[k].double(), b_grad[k].double()
        cut = max(ADAM_GRAD_FLOOR * max(ga.abs().max().item(), gb.abs().max().item()), 1e-6)
        mask = (ga.abs() > cut) & (gb.abs() > cut)
        da, db = a_after[k].double() - w0.double(), b_after[k].double() - w0.double()
        scale = max(da.abs().max().item(), db.abs().max().item())
        diffs[k] = (da - db)[mask].abs().max().item() / scale if mask.any() and scale > 0 else 0.0
        excluded[k] = int((~mask).sum())
    return diffs, excluded


def floor_check(diffs: dict, floors: dict, tol: float) -> tuple[bool, dict]:
    """Per name: within ``tol``, or within ``FLOOR_FACTOR`` times its floor.  Returns (all ok, the names above
    ``tol`` with their difference and floor)."""
    above = {k: {"diff": v, "floor": floors.get(k, 0.0)} for k, v in diffs.items() if v > tol}
    ok = all(a["diff"] <= FLOOR_FACTOR * a["floor"] for a in above.values())
    return ok, above


def floor_note(above: dict, ok: bool, what: str) -> str:
    """The tensor to name: the largest difference when all are within the floor, else the one furthest above it."""
    if not above:
        return ""
    if ok:
        k = max(above, key=lambda n: above[n]["diff"])
    else:
        k = max(above, key=lambda n: above[n]["diff"] / max(above[n]["floor"], 1e-300))
    bad = sum(a["diff"] > FLOOR_FACTOR * a["floor"] for a in above.values())
    return (f"{len(above)} above tolerance{'' if ok else f', {bad} above {FLOOR_FACTOR:g}x the floor'}; "
            f"{'largest' if ok else 'furthest'}: {k} {above[k]['diff']:.1e} against {what} {above[k]['floor']:.1e}: "
            f"{'within' if ok else 'ABOVE'} {FLOOR_FACTOR:g}x")


def level3_verdict(curve: float, curve_floor: float, params: float, params_floor: float, tol: float) -> str:
    ok = all(d <= tol or d <= FLOOR_FACTOR * f for d, f in ((curve, curve_floor), (params, params_floor)))
    return "identical" if ok else "differs"


def curve_diff(a: list, b: list) -> float:
    if len(a) != len(b):
        return 1.0
    return max((rel_diff(x, y) for x, y in zip(a, b)), default=0.0)


def make_row(method: str, level: int, commit: str, compared: str, max_diff: float, tol: float, verdict_: str,
             note: str = "", details: dict | None = None, repository: str = REPOSITORY, patches=None) -> Row:
    return Row(method, level, repository, commit, compared, float(max_diff), tol, verdict_, note, details or {},
               [list(p) for p in (PATCHES if patches is None else patches)])


# ------------------------------------------------------------------------------------------------------------------
# weight maps and the crop/flip replay
def wrn_o2s(k: str) -> str | None:
    """Official ``datafree`` wresnet -> suite ``benchmark.models.wrn`` (``Net``)."""
    if k.startswith("block"):
        head, _, b, rest = k.split(".", 3)  # block1 layer 0 bn1.weight
        return f"backbone.stages.{int(head[5:]) - 1}.{b}.{rest.replace('convShortcut', 'shortcut')}"
    if k.startswith("conv1."):
        return "backbone." + k
    if k.startswith("bn1."):
        return "backbone.bn." + k[4:]
    if k.startswith("fc."):
        return "head." + k[3:]
    return None


def cmigen_o2s(k: str) -> str:
    return k.replace("l1.0.", "l1.")


NORM_BUFS = ("backbone.normalize.mean", "backbone.normalize.std")


def crop_flip_draws(state: torch.Tensor, n: int, pad: int = 4):
    """The suite's crop/flip draws (``benchmark.augment.random_crop`` then ``random_flip``: two
    ``randint(0, 2 pad + 1, (n,))`` then ``rand(n) < 0.5``) read from a copy of its generator state."""
    g = torch.Generator()
    g.set_state(state)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    return oy, ox, torch.rand(n, generator=g) < 0.5


def replay_crop_flip(x: torch.Tensor, draws, pad: int = 4) -> torch.Tensor:
    """Zero-pad ``pad``, crop at the drawn offsets, flip where drawn: kornia's ``RandomCrop(padding=4)`` /
    torchvision's ``RandomCrop(32, padding=4)`` (fill 0) and ``RandomHorizontalFlip`` with the given draws."""
    oy, ox, flip = draws
    n, _, h, w = x.shape
    xp = F.pad(x, (pad,) * 4)
    out = torch.stack([xp[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(n)])
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class ReplayAug:
    """P6: the official synthesizer's ``aug`` with the suite's draws (one entry per call)."""

    def __init__(self, draws: list, normalizer):
        self.draws, self.normalizer, self.calls = list(draws), normalizer, 0

    def __call__(self, x):
        out = self.normalizer(replay_crop_flip(x, self.draws[self.calls]))
        self.calls += 1
        return out


# ------------------------------------------------------------------------------------------------------------------
# the official modules and the common initial state
def official_modules() -> SimpleNamespace:
    """Imports the official code (inside ``official_imports`` and ``import_stubs``)."""
    import datafree
    import losses
    import main
    import registry
    from datafree.criterions import KLDiv, kldiv
    from datafree.models.classifiers import wresnet
    from datafree.models.generator import Generator
    from datafree.synthesis import triplet
    from datafree.utils import Normalizer, dummy_ctx

    return SimpleNamespace(datafree=datafree, losses=losses, main=main, registry=registry, KLDiv=KLDiv, kldiv=kldiv,
                           wresnet=wresnet, Generator=Generator, triplet=triplet, Normalizer=Normalizer,
                           dummy_ctx=dummy_ctx, norm=registry.NORMALIZE_DICT["cifar10"])


class State:
    """Identical initial states of the two sides: official models made non-trivial, their state dicts, z, targets
    and a small pool of near-gray images for the level-1/2 student step."""

    def __init__(self, off: SimpleNamespace, seed: int):
        self.off, self.seed = off, seed
        self.normalizer = off.Normalizer(**off.norm)
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # the official constructors' default initialisation
        t, s = off.wresnet.wrn_16_2(num_classes=C), off.wresnet.wrn_16_1(num_classes=C)
        gen = off.Generator(nz=NZ, ngf=NGF, img_size=32, nc=3)
        gray = (0.5 + 0.04 * torch.randn(32, 3, 32, 32, generator=g)).clamp(0, 1)
        off_yx = torch.randint(0, 9, (32, 2), generator=g)
        calib = self.normalizer(replay_crop_flip(gray, (off_yx[:, 0], off_yx[:, 1], torch.zeros(32, dtype=bool))))
        make_nontrivial(t, calib, g, t.fc, 3.0)
        make_nontrivial(s, calib, g, s.fc, 3.0)
        with torch.no_grad():  # the student agrees with the teacher on near-gray images: L_adv's mask has ones
            plain = self.normalizer(gray)
            k = int(t(plain).argmax(1).mode().values)
            so = s(plain)
            s.fc.bias[k] += (so.max(1).values - so[:, k]).mean() + 0.2
            for b in bn_modules(gen):
                b.running_mean.normal_(0, 0.1, generator=g)
                b.running_var.uniform_(0.5, 1.5, generator=g)
        self.T_sd, self.S_sd, self.G_sd = ({k: v.clone() for k, v in m.state_dict().items()} for m in (t, s, gen))
        self.z0 = torch.randn(B, NZ, generator=g)
        self.targets0 = torch.randint(0, C, (B,), generator=g).sort().values
        self.pool_x01 = (0.5 + 0.08 * torch.randn(12, 3, 32, 32, generator=g)).clamp(0, 1)

    def official_models(self, dtype=torch.float32):
        off = self.off
        t, s = off.wresnet.wrn_16_2(num_classes=C), off.wresnet.wrn_16_1(num_classes=C)
        g = off.Generator(nz=NZ, ngf=NGF, img_size=32, nc=3)
        for m, sd in ((t, self.T_sd), (s, self.S_sd), (g, self.G_sd)):
            m.load_state_dict(sd)
            m.to(dtype)
        return t.eval(), s, g


# ------------------------------------------------------------------------------------------------------------------
# suite side
def suite_rgal(state: State, overrides: dict, pool_dir: Path, epochs: int = 1, mean_std=None):
    """The suite's RGAL on the common state; returns the method and the student's state right after the method's
    construction (``emb="released"`` probes the train-mode student: R10; undone before returning)."""
    from benchmark.augment import AugmentSpec
    from benchmark.dfkd_profiles import DistillRecipe, dfkd_profile
    from benchmark.models import build_model
    from strategies.dfkd import DFKD_METHODS, DFKDContext

    mean, std = mean_std or (tuple(state.off.norm["mean"]), tuple(state.off.norm["std"]))
    teacher = build_model("wrn16_2", C, 3, mean, std)
    load_mapped(teacher, state.T_sd, wrn_o2s, NORM_BUFS)
    teacher.eval().requires_grad_(False)
    student = build_model("wrn16_1", C, 3, mean, std)
    load_mapped(student, state.S_sd, wrn_o2s, NORM_BUFS)
    student.train()
    params = dfkd_profile("paper", "cifar10").params_for("rgal", DFKD_METHODS.entry("rgal").extra["defaults"])
    params.update(overrides)
    recipe = DistillRecipe(epochs=epochs, ep_steps=1, synthesis_batch=B, lr=0.1, weight_decay=1e-4, ngf=NGF)
    pool_dir.mkdir(parents=True, exist_ok=True)
    ctx = DFKDContext(teacher, student, params, recipe, C, (3, 32, 32), mean, std,
                      AugmentSpec(crop_padding=4, flip=True), torch.device("cpu"),
                      torch.Generator().manual_seed(state.seed + 1), pool_dir=pool_dir, pool_key="fidelity")
    method = DFKD_METHODS.get("rgal")(ctx)
    probed = {k: v.clone() for k, v in student.state_dict().items()}
    load_mapped(student, state.S_sd, wrn_o2s, NORM_BUFS)
    load_mapped(method.generator, state.G_sd, cmigen_o2s)
    return method, probed


class SuiteSide:
    """The suite's RGAL driven as ``benchmark/dfkd_runner.py`` drives it (SGD over ``trainable()``, cosine over
    the rounds), with the recording wrappers and injections (S0, P9, P10)."""

    def __init__(self, method, epochs: int = 1, record: bool = False):
        self.m, self.log = method, LossLog()
        self.opt = torch.optim.SGD(method.trainable(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, epochs)
        self.steps = record_steps(self.opt, param_names(_=method.student, proj=method.proj)) if record else None

    def synthesize(self, z: torch.Tensor, targets: torch.Tensor, shared: SharedDraws, phase=0, reset_seed=0) -> dict:
        import strategies.dfkd.rgal as rgal_module

        m, rec = self.m, {"aug": [], "parts": [], "reset": {}}
        z = z.clone()
        orig_aug, orig_gl, orig_reset = m.synthesis_augment, m.generator_loss, rgal_module.reset_generator

        def aug(x):
            st = m.gen.get_state()
            out = orig_aug(x)
            rec["aug"].append((st, x.detach().clone(), out.detach().clone()))
            return out

        def gl(x_aug, targets=None):
            loss, parts = orig_gl(x_aug, targets)
            rec["parts"].append(parts)
            return loss, parts

        def reset(module):
            orig_reset(module)
            rec["reset"].update({k: v.clone() for k, v in module.state_dict().items()})

        with patched((m, "randn", lambda *shape: z), (m, "random_targets", lambda n: targets.clone()),
                     (m, "synthesis_augment", aug), (m, "generator_loss", gl), (torch, "multinomial", shared),
                     (rgal_module, "reset_generator", reset), self.log.patch()):
            shared.begin("suite", phase)
            torch.manual_seed(reset_seed)  # reset_generator draws on the global RNG, as the official reset_model
            rec["out"] = m.synthesize()
        rec["z"] = z
        rec["draws"] = [crop_flip_draws(st, len(x)) for st, x, _ in rec["aug"]]
        rec["replay_exact"] = all(torch.equal(replay_crop_flip(x, d), o)
                                  for (_, x, o), d in zip(rec["aug"], rec["draws"]))
        return rec

    def student_step(self, shared: SharedDraws, phase=0) -> dict:
        import strategies.dfkd.rgal as rgal_module

        m, rec = self.m, {}
        orig_pb, orig_kd, orig_tri, orig_emb = (m.pool_batch, rgal_module.kd_loss, rgal_module.sampled_triplet_loss,
                                                m.embedding_loss)

        def pb(idx):
            rec["idx"], rec["state"] = idx.clone(), m.gen.get_state()
            xb, y = orig_pb(idx)
            rec["xb"] = xb.detach().clone()
            return xb, y

        def keep(key, fn):
            def wrapped(*a, **k):
                out = fn(*a, **k)
                rec[key] = float(out.detach())
                return out
            return wrapped

        with patched((m, "pool_batch", pb), (rgal_module, "kd_loss", keep("kd", orig_kd)),
                     (rgal_module, "sampled_triplet_loss", keep("tri", orig_tri)),
                     (m, "embedding_loss", keep("emb", orig_emb)), (torch, "multinomial", shared), self.log.patch()):
            shared.begin("suite", phase)
            loss, _ = m.student_loss()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        rec["terms"] = {"kd": rec["kd"], "tri": m.p["triplet_weight"] * rec.get("tri", 0.0), "cd": rec["emb"],
                        "total": self.log.values[-1]}
        rec["draws"] = crop_flip_draws(rec["state"], len(rec["idx"]))
        return rec


# ------------------------------------------------------------------------------------------------------------------
# official side
class LazyDataIter:  # P5
    def __init__(self, dataloader):
        self.dataloader = dataloader

    def next(self):
        raise RuntimeError("fidelity harness: the official pool loader is not iterated (P5/P8)")


class OfficialSide:
    """One official world: models, ``AdvTripletSynthesizer`` (its PNG pool in ``work/tag``), the CD layers, SGD and
    cosine as ``main.py:214-284`` builds them (the CD layers initialised as the suite's projection)."""

    def __init__(self, state: State, work: Path, tag: str, proj: nn.Module, dtype=torch.float32, iterations: int = 1,
                 epochs: int = 1, perturb: bool = False, record: bool = False):
        from torchvision import transforms as T

        off = self.off = state.off
        self.state, self.tag, self.dtype, self.epochs = state, tag, dtype, epochs
        self.t, self.s, self.g = state.official_models(dtype)
        if perturb:
            perturb_floating(self.s, state.seed)
        self.outs, self.log, self.pool = {}, LossLog(), []
        for name, net in (("t", self.t), ("s", self.s)):
            net.register_forward_hook(lambda m, i, o, name=name: self.outs.__setitem__(
                name, (o[0] if isinstance(o, tuple) else o).detach()))
        transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                               T.Normalize(**off.norm)])  # P7b: registry.py:111-117
        self.synth = off.triplet.AdvTripletSynthesizer(
            self.t, self.s, self.g, True, nz=NZ, num_classes=C, img_size=(3, 32, 32), start_layer=2, end_layer=4,
            iterations=iterations, lr_g=1e-3, progressive_scale=False, synthesis_batch_size=B,
            sample_batch_size=B, adv=1.0, bn=1.0, oh=1.0, triplet=0.1, save_dir=str(work / tag), transform=transform,
            normalizer=state.normalizer, device="cpu", triplet_target="student", balanced_sampling=True)
        self.gram = self._cd_layers(proj)
        self.cd, self.gram_loss = off.losses.CDLoss(linears=self.gram), off.losses.GRAMLoss(linears=self.gram)
        self.kl = off.KLDiv(T=20.0)  # main.py:214
        self.opt = torch.optim.SGD([{"params": self.s.parameters(), "lr": 0.1},
                                    {"params": self.gram_loss.parameters(), "lr": 0.1}],
                                   weight_decay=1e-4, momentum=0.9)  # main.py:277-280
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=epochs)  # main.py:284
        self.steps = record_steps(self.opt, param_names(_=self.s, proj=self.gram)) if record else None

    def _cd_layers(self, proj: nn.Module) -> nn.ModuleList:
        """main.py:260-270: a probe of one ``torch.rand`` image sizes ``Conv2d(s, t, 1)`` per block; the probe moves
        the train-mode student's BN statistics (R10), which are restored here; weights copied from ``proj``."""
        keep = {k: v.clone() for k, v in self.s.state_dict().items()}
        fake = torch.rand((1, 3, 32, 32), dtype=self.dtype)
        _, _, t_layers = self.t(fake, return_features=True)
        _, _, s_layers = self.s(fake, return_features=True)
        layers = nn.ModuleList([nn.Conv2d(s.size(1), t.size(1), 1) for t, s in zip(t_layers, s_layers)]).to(self.dtype)
        self.s.load_state_dict(keep)
        with torch.no_grad():
            for conv, lin in zip(layers, proj):
                conv.weight.copy_(lin.weight[:, :, None, None])
                conv.bias.copy_(lin.bias)
        return layers

    def synthesize(self, z, targets, draws: list, shared: SharedDraws, phase=0, reset_seed=0, reset_values=None):
        """One official synthesis round with z, targets and crop/flip draws injected (P5-P7, P9, P10)."""
        off, synth, rec = self.off, self.synth, {"reset": {}}
        z_o = z.to(self.dtype).clone()
        orig_reset, tri = off.triplet.reset_model, synth.compute_triplet_loss
        orig_tri, orig_ce = tri.forward, F.cross_entropy

        def fake_randn(*a, size=None, **k):
            assert tuple(size) == tuple(z.shape), size
            return z_o

        def fake_randint(*a, low=0, high=None, size=None, **k):
            assert high == C and tuple(size) == (len(targets),)
            return targets.clone()

        def reset(module):
            orig_reset(module)
            if reset_values is not None:  # F64
                with torch.no_grad():
                    for k, p in module.named_parameters():
                        p.copy_(reset_values[k])
            rec["reset"].update({k: v.clone() for k, v in module.state_dict().items()})

        def keep(key, fn):
            def wrapped(*a, **k):
                out = fn(*a, **k)
                rec[key] = float(out.detach().reshape(-1)[0])
                return out
            return wrapped

        synth.aug = ReplayAug(draws, synth.normalizer)  # P6
        torch.manual_seed(reset_seed)
        with patched((torch, "randn", fake_randn), (torch, "randint", fake_randint),
                     (off.triplet, "DataIter", LazyDataIter), (off.triplet, "reset_model", reset),
                     (off.triplet, "tqdm", lambda it, **k: it), (torch, "multinomial", shared),
                     (F, "cross_entropy", keep("oh", orig_ce)), (tri, "forward", keep("tri", orig_tri)),
                     self.log.patch()), quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the never-iterated 4-worker DataLoader (P5)
            shared.begin(self.tag, phase)
            res = synth.synthesize()
        self.pool.append(self._read_pngs(synth.data_pool.root, synth.data_pool._idx - 1))
        rec.update(z=z_o, best=res["synthetic"], total=self.log.values[-1])
        return rec

    def terms(self, rec: dict) -> dict:
        """The synthesis terms of the last step: the hooks' ``r_feature`` (triplet.py:106), recorded CE and TriLoss,
        the adversarial term recomputed from the recorded outputs as triplet.py:109-113 computes it."""
        t, s = self.outs["t"], self.outs["s"]
        mask = (s.argmax(1) == t.argmax(1)).float()
        adv = -(self.off.kldiv(s, t, reduction="none").sum(1) * mask).mean().item()
        return {"bn": sum(h.r_feature for h in self.synth.hooks).item(), "oh": rec["oh"], "adv": adv,
                "tri_g": rec["tri"], "total": rec["total"]}

    @staticmethod
    def _read_pngs(root: str, idx: int) -> torch.Tensor:
        from PIL import Image

        files = [Path(root) / f"{idx}-{i}.png" for i in range(B)]  # _utils.py:109-112
        return torch.from_numpy(np.stack([np.array(Image.open(f)) for f in files])).permute(0, 3, 1, 2).contiguous()

    def student_step(self, views01: torch.Tensor, shared: SharedDraws, phase=0, epoch: int = 0) -> dict:
        """One step of ``main.train`` (kd_steps 1) on the given [0, 1] batch (P8); returns its terms and labels."""
        off, rec, half = self.off, {}, len(views01) // 2
        x = views01.to(self.dtype)
        norm = self.state.normalizer

        class Shim:  # P8
            def sample(self):
                return [norm(x[:half]), norm(x[half:])]

        class RecTriLoss(off.losses.TriLoss):  # P10
            def forward(self, *a, **k):
                out = super().forward(*a, **k)
                rec["tri"] = float(out.detach().reshape(-1)[0])
                return out

        def keep(key, fn):
            def wrapped(*a, **k):
                out = fn(*a, **k)
                rec[key] = float(out.detach())
                return out
            return wrapped

        args = SimpleNamespace(kd_steps=1, fmix=False, gpu=None, autocast=off.dummy_ctx, cd_loss=0.1, gram_loss=0.0,
                               custom_steps=1.0, epochs=self.epochs, striplet=0.1, striplet_feature="global",
                               start_layer=2, end_layer=4, print_freq=0)
        with patched((off.main, "TriLoss", RecTriLoss), (off.main, "tqdm", lambda it, **k: it),
                     (torch, "multinomial", shared), (self.kl, "forward", keep("kd", self.kl.forward)),
                     (self.cd, "forward", keep("cd", self.cd.forward)), self.log.patch()), quiet():
            shared.begin(self.tag, phase)
            off.main.train(Shim(), [self.s, self.t], self.kl, self.opt, args, epoch, self.cd, self.gram_loss, 32)
        rec["terms"] = {"kd": rec["kd"], "tri": 0.1 * rec.get("tri", 0.0), "cd": 0.1 * rec["cd"],
                        "total": self.log.values[-1]}
        rec["labels"] = self.outs["t"].argmax(1)
        return rec

    def student_state(self) -> dict:
        """Student and CD layers under the suite's names (1x1 kernels squeezed to Linear weights)."""
        out = map_state(self.s.state_dict(), wrn_o2s)
        for i, conv in enumerate(self.gram):
            out[f"proj.{i}.weight"] = conv.weight.detach()[:, :, 0, 0].clone()
            out[f"proj.{i}.bias"] = conv.bias.detach().clone()
        return out


def squeeze_proj(d: dict) -> dict:
    """Official step records -> suite names (student via ``wrn_o2s``, CD kernels squeezed)."""
    out = {}
    for k, v in d.items():
        if k.startswith("proj."):
            out[k] = v[:, :, 0, 0] if v.dim() == 4 else v
        elif wrn_o2s(k) is not None:
            out[wrn_o2s(k)] = v
    return out


# ------------------------------------------------------------------------------------------------------------------
# rgal, levels 1 and 2
def _floors_terms(o32: dict, o64: dict) -> dict:
    return {k: rel_diff(o32[k], o64[k]) for k in o32 if k in o64}


def _terms_row(commit, level, compared, off: dict, suite: dict, floors: dict, extra_note="", details=None) -> Row:
    terms = compare_terms(off, suite)
    name, diff = worst(terms)
    ok, above = floor_check({k: v["rel"] for k, v in terms.items()}, floors, LOSS_RTOL)
    head = floor_note(above, ok, "the official float32-vs-float64 error") or f"largest: {name}"
    note = "; ".join(x for x in (head, extra_note) if x)
    return make_row("rgal", level, commit, compared, diff, LOSS_RTOL, "identical" if ok else "differs", note,
                    {"terms": terms, "float64_floor": floors, **(details or {})})


def _tensor_row(commit, level, compared, diffs: dict, floors: dict, extra_note="", details=None) -> Row:
    name, diff = worst(diffs)
    ok, above = floor_check(diffs, floors, GRAD_RTOL)
    head = floor_note(above, ok, "the official float32-vs-float64 error") or f"largest: {name}"
    note = "; ".join(x for x in (head, extra_note) if x)
    return make_row("rgal", level, commit, compared, diff, GRAD_RTOL, "identical" if ok else "differs", note,
                    {"per_tensor": diffs, "float64_floor": floors, **(details or {})})


def _official_synthesis(state, work, proj, s_rec, shared, reset_seed) -> dict:
    """The official synthesis step in float32 and its float64 reference (same draws, the float32 reset values)."""
    out = {}
    for tag, dtype in (("official", torch.float32), ("official64", torch.float64)):
        side = OfficialSide(state, work, tag, proj, dtype)
        reset_values = None if tag == "official" else {
            k: v.double() for k, v in out["official"][1]["reset"].items() if k in dict(side.g.named_parameters())}
        rec = side.synthesize(state.z0, state.targets0, s_rec["draws"], shared, reset_seed=reset_seed,
                              reset_values=reset_values)
        out[tag] = (side, rec)
    return out


def _synthesis_tensors(side: OfficialSide, rec: dict) -> tuple[dict, dict, dict]:
    """Official gradients, parameters before and after the Adam step, under the suite's names (+ ``z``)."""
    grads = {cmigen_o2s(k): p.grad.detach() for k, p in side.g.named_parameters()}
    after = {cmigen_o2s(k): p.detach() for k, p in side.g.named_parameters()}
    before = {cmigen_o2s(k): rec["reset"][k] for k, _ in side.g.named_parameters()}
    grads["z"], after["z"] = rec["z"].grad.detach(), rec["z"].detach()
    return grads, before, after


def synthesis_rows(state: State, work: Path, commit: str) -> list[Row]:
    shared, reset_seed = SharedDraws(state.seed + 3), state.seed + 1234
    method, _ = suite_rgal(state, {**RELEASED, "g_steps": 1}, work / "suite_synth")
    s = SuiteSide(method).synthesize(state.z0, state.targets0, shared, reset_seed=reset_seed)
    sides = _official_synthesis(state, work, method.proj, s, shared, reset_seed)
    (o32, r32), (o64, r64) = sides["official"], sides["official64"]
    t32, t64 = o32.terms(r32), o64.terms(r64)
    s_terms = {**{k: s["parts"][0][k] for k in ("bn", "oh", "adv", "tri_g")}, "total": s["out"]["loss_g"]}
    reset = max(tensor_rel_diff(r32["reset"][k], s["reset"][cmigen_o2s(k)]) for k in r32["reset"])
    draws = shared.compare("official", "suite")
    checks = {"generator_reset_max_rel": reset, "crop_flip_replay_exact": s["replay_exact"], "sampler": draws,
              "teacher_labels": o32.outs["t"].argmax(1).tolist(),
              "adversarial_mask": (o32.outs["s"].argmax(1) == o32.outs["t"].argmax(1)).int().tolist()}
    rows = [_terms_row(commit, 1, "synthesis step terms bn, oh, adv, tri_g, total (variant=released)", t32, s_terms,
                       _floors_terms(t32, t64), f"focal negatives identical: {draws['indices_differing'] == 0}",
                       checks)]
    rows.append(_pool_row(commit, o32.pool[0], method.pool.batches[0][0]))
    g32, before, a32 = _synthesis_tensors(o32, r32)
    g64, _, a64 = _synthesis_tensors(o64, r64)
    g_s = {k: p.grad for k, p in method.generator.named_parameters()}
    g_s["z"] = s["z"].grad
    a_s = {k: p.detach() for k, p in method.generator.named_parameters()}
    a_s["z"] = s["z"].detach()
    before["z"] = state.z0
    rows.append(_tensor_row(commit, 2, "generator + z gradients of the synthesis step", compare_tensors(g32, g_s),
                            compare_tensors(g32, g64)))
    running = compare_tensors({cmigen_o2s(k): v for k, v in o32.g.state_dict().items() if "running" in k},
                              {k: v for k, v in method.generator.state_dict().items() if "running" in k})
    diffs, excluded = adam_step_diff(before, a32, a_s, g32, g_s)
    floors, _ = adam_step_diff(before, a32, a64, g32, g64)
    rows.append(_tensor_row(commit, 2, "generator + z after the Adam step (update where abs(grad) is well above eps)",
                            diffs, floors, f"{sum(excluded.values())} small-gradient elements left out; generator BN "
                                           f"running stats after: {worst(running)[1]:.1e}",
                            {"bn_running_stats": running, "params_after": compare_tensors(a32, a_s),
                             "excluded": excluded, "step_change_rel_diff": step_change_rel_diff(before, a32, a_s)}))
    rows.append(_paper_variant_row(state, work, commit, t32, shared, reset_seed))
    return rows


def _pool_row(commit: str, png: torch.Tensor, suite_pool: torch.Tensor) -> Row:
    diff = png.int() - suite_pool.int()
    n = int((diff != 0).sum())
    return make_row("rgal", 1, commit, "pool images of the synthesis round (official PNG vs suite uint8)",
                    float(diff.abs().max()) / 255, 0.0, "identical" if n == 0 else "differs",
                    f"{n}/{diff.numel()} values differ (both floor(255 x): _utils.py:91, pool_rounding='floor')",
                    {"values_differing": n, "max_levels": int(diff.abs().max())})


def _paper_variant_row(state, work, commit, t32: dict, shared, reset_seed) -> Row:
    """The suite's default generator-side triplet (``variant="paper"``: Eq. 3's reversed hinge) on the same step."""
    method, _ = suite_rgal(state, {"g_steps": 1, "nz": NZ}, work / "suite_paper")
    s = SuiteSide(method).synthesize(state.z0, state.targets0, shared, reset_seed=reset_seed)
    s_terms = {**{k: s["parts"][0][k] for k in ("bn", "oh", "adv", "tri_g")}, "total": s["out"]["loss_g"]}
    terms = compare_terms(t32, s_terms)
    name, diff = worst(terms)
    note = (f"documented (rgal.py docstring, docs): default variant='paper' is the reversed hinge L_ntri, the "
            f"released code adds the unswapped L_tri: tri_g {t32['tri_g']:.4f} (official) vs {s_terms['tri_g']:.4f} "
            f"(suite default), total {terms['total']['rel']:.1e} relative; the other terms "
            f"{max(terms[k]['rel'] for k in ('bn', 'oh', 'adv')):.1e}")
    return make_row("rgal", 1, commit, "synthesis step terms, suite defaults (variant=paper)", diff, LOSS_RTOL,
                    verdict(diff, LOSS_RTOL, "variant='paper'"), note, {"terms": terms, "largest": name})


def student_rows(state: State, work: Path, commit: str) -> list[Row]:
    shared = SharedDraws(state.seed + 4)
    method, _ = suite_rgal(state, {**RELEASED, "g_steps": 1}, work / "suite_student")
    method.add_to_pool(state.pool_x01)
    sides = {tag: OfficialSide(state, work, tag, method.proj, dtype, record=True)
             for tag, dtype in (("official", torch.float32), ("official64", torch.float64))}
    suite = SuiteSide(method, record=True)
    s = suite.student_step(shared)
    recs = {tag: side.student_step(s["xb"], shared) for tag, side in sides.items()}
    o32, o64 = sides["official"], sides["official64"]
    t32, t64 = recs["official"]["terms"], recs["official64"]["terms"]
    _, pool_y = method.pool.tensors()
    draws = shared.compare("official", "suite")
    checks = {"sampler": draws, "teacher_labels": recs["official"]["labels"].tolist(),
              "stored_pool_labels_differing": int((pool_y[s["idx"]] != recs["official"]["labels"]).sum())}
    rows = [_terms_row(commit, 1, "student step terms kd, tri, cd, total (emb=released, positive=image, 2x8 views)",
                       t32, s["terms"], _floors_terms(t32, t64),
                       f"distance-weighted negatives identical: {draws['indices_differing'] == 0}", checks)]
    st32, st64, st_s = o32.steps[0], o64.steps[0], suite.steps[0]
    g32, g64 = squeeze_proj(st32["grads"]), squeeze_proj(st64["grads"])
    rows.append(_tensor_row(commit, 2, "student + projection gradients", compare_tensors(g32, st_s["grads"]),
                            compare_tensors(g32, g64)))
    before, a32 = squeeze_proj(st32["before"]), squeeze_proj(st32["after"])
    a64 = squeeze_proj(st64["after"])  # float64: the floor includes official float32's parameter quantisation
    running = compare_tensors({k: v for k, v in map_state(o32.s.state_dict(), wrn_o2s).items() if "running" in k},
                              {k: v for k, v in method.student.state_dict().items() if "running" in k})
    rows.append(_tensor_row(commit, 2, "student + projection after the SGD step (update, step_change_rel_diff)",
                            step_change_rel_diff(before, a32, st_s["after"]), step_change_rel_diff(before, a32, a64),
                            f"student BN running stats after: {worst(running)[1]:.1e}",
                            {"bn_running_stats": running, "params_after": compare_tensors(a32, st_s["after"])}))
    rows.append(_student_defaults_row(state, work, commit, t32))
    return rows


def _student_defaults_row(state, work, commit, t32: dict) -> Row:
    """The suite's default student step (``emb="paper"``, ``positive="class"``, 64 + 64 images scaled to 4 + 4) on
    the same pool, against the official step's terms."""
    method, _ = suite_rgal(state, {"g_steps": 1, "nz": NZ, "student_batch": B}, work / "suite_student_defaults")
    method.add_to_pool(state.pool_x01)
    s = SuiteSide(method).student_step(SharedDraws(state.seed + 4))
    terms = compare_terms(t32, s["terms"])
    name, diff = worst(terms)
    note = (f"documented (rgal.py docstring): defaults emb='paper' (MSE of the teacher embedding and a linear map of "
            f"the student's; released: 0.1 x CDLoss over blocks), positive='class' and 64+64 images (released: two "
            f"views of 128 images): cd/emb {t32['cd']:.4f} (official) vs {s['terms']['cd']:.4f}, total "
            f"{terms['total']['rel']:.1e} relative (the batches differ, so kd and tri differ too)")
    return make_row("rgal", 1, commit, "student step terms, suite defaults (emb=paper, positive=class, 4+4)", diff,
                    LOSS_RTOL, verdict(diff, LOSS_RTOL, "emb='paper', positive='class'"), note,
                    {"terms": terms, "largest": name})


def probe_row(state: State, work: Path, commit: str) -> Row:
    """R10: the student's BN running statistics after each side's setup probe (official main.py:260-262: one
    ``torch.rand`` image in the normalised input space through the train-mode student; suite ``_make_projection``
    for ``emb="released"``: the same, drawn from the method's generator and mapped back through mean / std because
    the suite's networks normalise inside).  The draw is injected: the official side gets the image the suite's
    generator (seeded ``seed + 1`` in ``suite_rgal``) draws first."""
    t_o, s_o, _ = state.official_models()
    fake = torch.rand((1, 3, 32, 32), generator=torch.Generator().manual_seed(state.seed + 1))
    with torch.no_grad():
        t_o(fake, return_features=True)
        s_o(fake, return_features=True)
    official = {k: v for k, v in map_state(s_o.state_dict(), wrn_o2s).items() if "running_" in k}
    _, probed = suite_rgal(state, {**RELEASED, "g_steps": 1}, work / "suite_probe")
    initial = map_state(state.S_sd, wrn_o2s)
    diffs = compare_tensors(official, {k: probed[k] for k in official})
    name, diff = worst(diffs)
    moved_o = worst(compare_tensors(official, {k: initial[k] for k in official}))[1]
    moved_s = worst(compare_tensors({k: probed[k] for k in official}, {k: initial[k] for k in official}))[1]
    note = (f"R10: both setups move the train-mode student's BN running statistics once (official by "
            f"{moved_o:.2f}, the suite's by {moved_s:.2f}, relative); after them the two differ by {diff:.1e} "
            f"({name}); harness rows restore the common state after both probes")
    return make_row("rgal", 1, commit, "setup: student BN running stats after the CD-layer probe (R10)", diff,
                    GRAD_RTOL, "differs" if diff > GRAD_RTOL else "identical", note,
                    {"per_tensor": diffs, "official_move": moved_o, "suite_move": moved_s})


def normalisation_row(state: State, work: Path, commit: str) -> Row:
    """R11: the teacher's logits on near-gray images with the suite's CIFAR-10 scenario constants instead of the
    official ones (what a converted official checkpoint gives when its normalisation buffers are not set)."""
    from benchmark.scenarios import SCENARIOS

    spec = SCENARIOS.get("cifar10")
    a, _ = suite_rgal(state, {**RELEASED, "g_steps": 1}, work / "suite_norm_a")
    b, _ = suite_rgal(state, {**RELEASED, "g_steps": 1}, work / "suite_norm_b", mean_std=(spec.mean, spec.std))
    with torch.no_grad():
        la, lb = a.teacher(state.pool_x01), b.teacher(state.pool_x01)
    diff = tensor_rel_diff(la, lb)
    ratio = [round(s / o, 3) for s, o in zip(spec.std, state.off.norm["std"])]
    agree = float((la.argmax(1) == lb.argmax(1)).float().mean())
    note = ("kept on purpose (docs/official-code-dfkd.md, CIFAR-10 normalisation): the suite normalises with "
            "CIFAR-10's per-pixel statistics, an official checkpoint keeps its own constants in backbone.normalize. "
            f"R11: official std {tuple(state.off.norm['std'])} (registry.py:19), "
            f"suite scenario std {spec.std} (ratio {ratio}); no effect on the suite's own teachers; an official "
            f"checkpoint given to --teacher-checkpoint needs backbone.normalize.std set to the official values, else "
            f"its logits differ by {diff:.2f} relative here (argmax agreement {agree:.0%})")
    return make_row("rgal", 1, commit, "CIFAR-10 normalisation constants (official checkpoints, R11)", diff,
                    LOSS_RTOL, "departs on purpose", note, {"std_ratio": ratio, "argmax_agreement": agree})


# ------------------------------------------------------------------------------------------------------------------
# rgal, level 3
def _l3_round(r: int, suite: SuiteSide, sides: dict, z, targets, shared: SharedDraws, seed: int) -> dict:
    """One level-3 round: the suite's synthesis round and student step, then each official world's with the
    suite's draws replayed on its own pool."""
    s = suite.synthesize(z, targets, shared, ("g", r), reset_seed=seed)
    for side in sides.values():
        side.synthesize(z, targets, s["draws"], shared, ("g", r), reset_seed=seed)
    st = suite.student_step(shared, ("s", r))
    x_s, _ = suite.m.pool.tensors()
    exact = torch.equal(replay_crop_flip(x_s[st["idx"]], st["draws"]).float() / 255, st["xb"])
    for side in sides.values():
        views = replay_crop_flip(torch.cat(side.pool)[st["idx"]], st["draws"]).float() / 255
        side.student_step(views, shared, ("s", r), epoch=r)
    for sched in [suite.sched] + [side.sched for side in sides.values()]:
        sched.step()
    return {"replay_exact": exact and s["replay_exact"]}


def _final_state(side) -> dict:
    """Student, projection and the generator's BN running statistics after the run under the suite's names (the
    generator's weights are re-initialised every round: after the run they hold only the last round's two Adam steps,
    whose first moves every element by about lr, including the round-off-only gradients of biases before a BN)."""
    if isinstance(side, SuiteSide):
        gen = side.m.generator.state_dict()
        st = {**side.m.student.state_dict(), **{f"proj.{k}": v for k, v in side.m.proj.state_dict().items()}}
    else:
        gen = {cmigen_o2s(k): v for k, v in side.g.state_dict().items()}
        st = side.student_state()
    st.update({f"generator.{k}": v for k, v in gen.items() if "running_" in k})
    return {k: v.float() for k, v in st.items() if v.is_floating_point() and k not in NORM_BUFS}


def first_above(a: list, b: list, level: float = 1e-3) -> int | None:
    """The first index where two curves differ by more than ``level`` relative (None: never)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if rel_diff(x, y) > level), None)


def level3_rows(state: State, work: Path, steps: int, commit: str) -> list[Row]:
    g = torch.Generator().manual_seed(state.seed + 77)
    zs = [torch.randn(B, NZ, generator=g) for _ in range(steps)]
    ts = [torch.randint(0, C, (B,), generator=g).sort().values for _ in range(steps)]
    method, _ = suite_rgal(state, {**RELEASED, "g_steps": L3_G_STEPS}, work / "l3_suite", epochs=steps)
    suite, shared = SuiteSide(method, epochs=steps), SharedDraws(state.seed + 5)
    sides = {tag: OfficialSide(state, work, tag, method.proj, iterations=L3_G_STEPS, epochs=steps,
                               perturb=tag == "l3_control") for tag in ("l3_official", "l3_control")}
    t0, exact = time.time(), True
    for r in range(steps):
        exact &= _l3_round(r, suite, sides, zs[r], ts[r], shared, state.seed + 5000 + r)["replay_exact"]
    o, c = sides["l3_official"], sides["l3_control"]
    curve, floor = curve_diff(o.log.values, suite.log.values), curve_diff(o.log.values, c.log.values)
    fo, fs, fc = _final_state(o), _final_state(suite), _final_state(c)
    params, params_floor = worst(compare_tensors(fo, fs)), worst(compare_tensors(fo, fc))
    pool_o, pool_s, pool_c = torch.cat(o.pool), suite.m.pool.tensors()[0], torch.cat(c.pool)
    idx_s = sum(max(shared.compare("l3_official", "suite", (k, r))["indices_differing"], 0)
                for r in range(steps) for k in ("g", "s"))
    idx_c = sum(max(shared.compare("l3_official", "l3_control", (k, r))["indices_differing"], 0)
                for r in range(steps) for k in ("g", "s"))
    v = level3_verdict(curve, floor, params[1], params_floor[1], LOSS_RTOL)
    per_round = L3_G_STEPS + 1
    first_s, first_c = (first_above(o.log.values, x.log.values) for x in (suite, c))
    k = len(o.log.values) if first_c is None else first_c
    early = curve_diff(o.log.values[:k], suite.log.values[:k])
    note = (f"{steps} rounds ({L3_G_STEPS} generator steps + 1 student step, cosine over the rounds): loss curves "
            f"{curve:.1e} (floor {floor:.1e}), first above 1e-3 in round "
            f"{'-' if first_s is None else first_s // per_round + 1} (floor "
            f"{'-' if first_c is None else first_c // per_round + 1}), {early:.1e} over the {k} losses before the "
            f"floor's departure; final student, projection and generator BN "
            f"statistics {params[1]:.1e} at {params[0]} (floor {params_floor[1]:.1e}); pool values differing "
            f"{int((pool_o != pool_s).sum())} (floor "
            f"{int((pool_o != pool_c).sum())}) of {pool_o.numel()}; sampled negatives differing {idx_s} (floor "
            f"{idx_c}); {'within' if v == 'identical' else 'ABOVE'} {FLOOR_FACTOR:g}x the floor")
    details = {"curve_official": o.log.values, "curve_suite": suite.log.values, "curve_control": c.log.values,
               "curve_floor": floor, "final_params": compare_tensors(fo, fs), "final_params_floor": params_floor[1],
               "draw_replay_exact": exact, "seconds": time.time() - t0}
    return [make_row("rgal", 3, commit, f"short run: {steps} rounds from one state (loss curves, final params)",
                     curve, LOSS_RTOL, v, note, details)]


# ------------------------------------------------------------------------------------------------------------------
# rgal-cil: the shared triplet / sampler functions against the released losses.py
def _cil_logits(g, n: int, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels, logits (a common direction plus noise: normalised distances over ~0.3-1.3, inside and outside the
    samplers' windows) and an embedding."""
    labels = torch.randint(0, 4, (n,), generator=g)
    noise = 0.9 if c == 10 else 0.12 * c ** 0.5
    logits = 2.0 * torch.randn(1, c, generator=g) + torch.randn(n, c, generator=g) * noise
    return labels, logits, torch.randn(n, 24, generator=g)


def _cil_case(off, g, c: int, sampler: str, reverse: bool, seed: int) -> dict:
    """``TriLoss(balanced_sampling)([e], logits, y, negative=reverse)`` against ``sampled_triplet_loss``."""
    from strategies.rgal.losses import sampled_triplet_loss
    from strategies.rgal.samplers import sample_triplets

    kw = {"distance": {"cutoff": 0.5, "nonzero_loss_cutoff": 1.4}, "focal": {"lower": 0.5, "upper": 1.0}}[sampler]
    labels, logits, emb = _cil_logits(g, 16, c)
    shared = SharedDraws(seed)
    e_o, e_s = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    tl = off.losses.TriLoss(balanced_sampling=sampler == "focal")
    with patched((torch, "multinomial", shared)):
        shared.begin("official")
        lo = tl([e_o], logits, labels, negative=reverse)
        lo.sum().backward()
        shared.begin("suite")
        ls = sampled_triplet_loss(e_s, labels, sample_on=logits, sampler=sampler, reverse=reverse,
                                  generator=torch.Generator(), sampler_kw=kw, margin=0.2, squared=False)
        ls.backward()
        shared.begin("official", 1)
        io_ = tl.sampler(logits, labels)
        shared.begin("suite", 1)
        is_ = sample_triplets(logits, labels, sampler, torch.Generator(), **kw)
    same = all(torch.equal(a, b) for a, b in zip(io_, is_))
    return {"loss": rel_diff(lo.item(), ls.item()), "grad": tensor_rel_diff(e_o.grad, e_s.grad),
            "triplets_identical": same, "n_triplets": len(io_[0]), "draws": shared.compare("official", "suite")}


def _stress_focal(off, seed: int) -> dict:
    """R8: 100 classes, a positive at normalised-logit distance 0.02, negatives at chord distances 0.6-1.35."""
    from strategies.rgal.samplers import sample_triplets

    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    base = F.normalize(torch.randn(100, generator=g), dim=0)

    def orthogonal():
        v = torch.randn(100, generator=g)
        return F.normalize(v - (v @ base) * base, dim=0)

    logits = torch.empty(8, 100)
    logits[0], logits[1] = base, base * (1 - 0.0002) + 0.02 * orthogonal()
    for i, chord in zip(range(2, 8), (0.6, 0.75, 0.9, 1.2, 1.35, 0.8)):
        th = 2 * np.arcsin(chord / 2)
        logits[i] = float(np.cos(th)) * base + float(np.sin(th)) * orthogonal()
    shared = SharedDraws(seed)
    with patched((torch, "multinomial", shared)):
        shared.begin("official")
        off.losses.BalancedWeighted()(logits, labels)
        shared.begin("suite")
        sample_triplets(logits, labels, "focal", torch.Generator(), lower=0.5, upper=1.0)
    wo, ws = shared.log[("official", 0)][0][0][0], shared.log[("suite", 0)][0][0][0]
    logits2 = logits.clone()
    logits2[2] = -logits2[0]  # R9: a negative at distance 2
    try:
        off.losses.DistanceWeighted()(logits2, labels)
        official = "no error"
    except RuntimeError as e:
        official = f"RuntimeError: {str(e).splitlines()[0][:80]}"
    suite = sample_triplets(logits2, labels, "distance", torch.Generator().manual_seed(0))
    return {"row_official": wo.tolist(), "row_suite": ws.tolist(), "diff": (wo - ws).abs().max().item(),
            "antipodal_official": official, "antipodal_suite": f"{len(suite[0])} triplets"}


def _plugin_case(off, seed: int) -> dict:
    """L'_s: ``TripletLossPlugin.before_backward`` against the released ``0.1 * TriLoss()([f], logits, y)``."""
    from strategies.rgal.triplet_plugin import TripletLossPlugin

    g = torch.Generator().manual_seed(seed)
    y, f0 = torch.randint(0, 4, (16,), generator=g), torch.randn(16, 32, generator=g)
    head = nn.Linear(32, C)
    with torch.no_grad():
        head.weight.copy_(torch.randn(C, 32, generator=g))
        head.bias.zero_()
    shared = SharedDraws(seed)
    f_o, f_s = f0.clone().requires_grad_(True), f0.clone().requires_grad_(True)
    plugin = TripletLossPlugin(SimpleNamespace(features=f_s), weight=0.1, generator=torch.Generator())
    strat = SimpleNamespace(mb_output=head(f_s), mb_y=y, experience=SimpleNamespace(current_experience=1),
                            loss=torch.zeros(()))
    with patched((torch, "multinomial", shared)):
        shared.begin("official")
        lo = 0.1 * off.losses.TriLoss()([f_o], head(f_o), y)
        lo.sum().backward()
        shared.begin("suite")
        plugin.before_backward(strat)
    strat.loss.backward()
    return {"loss": rel_diff(lo.item(), strat.loss.item()), "grad": tensor_rel_diff(f_o.grad, f_s.grad),
            "draws": shared.compare("official", "suite")}


def _lg_case(off, seed: int) -> dict:
    """L'_g: ``optimize_prototypes(steps=1, w_adv=0, w_oh=0)`` (L_ntri only, focal, reversed) against the released
    ``TriLoss(balanced_sampling=True)([p], head_old(p), c, negative=True)`` followed by ``Adam(lr 1e-3)``."""
    from strategies.rgal.prototype_optimization import optimize_prototypes

    g = torch.Generator().manual_seed(seed)
    p0, c = torch.randn(16, 32, generator=g), torch.randint(0, 5, (16,), generator=g)
    head_old, head_cur = nn.Linear(32, C), nn.Linear(32, C)
    with torch.no_grad():
        head_old.weight.copy_(torch.randn(C, 32, generator=g))
    shared = SharedDraws(seed)
    x = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=1e-3)
    with patched((torch, "multinomial", shared)):
        shared.begin("official")
        n_old = int(c.max()) + 1
        off.losses.TriLoss(balanced_sampling=True)([x], head_old(x)[:, :n_old], c, negative=True).sum().backward()
        opt.step()
        shared.begin("suite")
        p_s = optimize_prototypes(p0.clone(), c, head_old, head_cur, steps=1, lr=1e-3, w_adv=0.0, w_oh=0.0,
                                  w_ntri=1.0, sampler="focal", generator=torch.Generator(),
                                  triplet_kw={"margin": 0.2, "sampler_kw": {"lower": 0.5, "upper": 1.0}})
    return {"update": step_change_rel_diff({"p": p0}, {"p": x.detach()}, {"p": p_s})["p"],
            "draws": shared.compare("official", "suite")}


def cil_rows(off, seed: int, commit: str) -> list[Row]:
    g = torch.Generator().manual_seed(seed + 11)
    cases = {f"C={c} {s} {'L_ntri' if r else 'L_tri'}": _cil_case(off, g, c, s, r, seed + 100 + c)
             for c in (10, 100) for s in ("distance", "focal") for r in (False, True)}
    plugin, lg, stress = _plugin_case(off, seed + 6), _lg_case(off, seed + 7), _stress_focal(off, seed + 5)
    rows = []

    def add(level, compared, diffs: dict, tol, note="", details=None, departure=""):
        name, diff = worst(diffs)
        v = verdict(diff, tol, departure)
        rows.append(make_row("rgal-cil", level, commit, compared, diff, tol, v, note or f"largest: {name}",
                             {"per_case": diffs, **(details or {})}))

    same = all(c["triplets_identical"] and c["draws"]["indices_differing"] == 0 for c in cases.values())
    add(1, "triplet losses TriLoss vs sampled_triplet_loss (distance/focal x L_tri/L_ntri x C=10/100)",
        {k: c["loss"] for k, c in cases.items()}, LOSS_RTOL,
        f"anchors, positives and sampled negatives identical in all 8 cases: {same}", {"cases": cases})
    add(1, "negative-sampler weights (8 cases + L'_s + L'_g)",
        {**{k: c["draws"]["weights_max_abs"] for k, c in cases.items()},
         "L's": plugin["draws"]["weights_max_abs"], "L'g": lg["draws"]["weights_max_abs"]}, 1e-6,
        "max absolute difference of the normalised weight rows; indices identical: "
        f"{same and plugin['draws']['indices_differing'] == 0 and lg['draws']['indices_differing'] == 0}")
    add(1, "L'_s TripletLossPlugin loss vs 0.1 x TriLoss()", {"loss": plugin["loss"]}, LOSS_RTOL)
    add(2, "triplet-loss gradients wrt the embedding (8 cases)", {k: c["grad"] for k, c in cases.items()}, GRAD_RTOL)
    add(2, "L'_s TripletLossPlugin gradient wrt the features", {"grad": plugin["grad"]}, GRAD_RTOL)
    add(2, "L'_g one Adam step of optimize_prototypes (L_ntri only) vs TriLoss(negative=True) + Adam",
        {"update": lg["update"]}, GRAD_RTOL)
    add(1, "focal sampler normalisation, underflow case (R8: C=100, positive at distance 0.02)",
        {"anchor_row": stress["diff"]}, 1e-6,
        f"documented departure (samplers.py docstring): the released row maximum over all columns (losses.py:53) "
        f"makes the window weights underflow against the close positive and the row falls back to uniform over all "
        f"negatives; the suite's maximum over valid negatives keeps the paper's focal window: anchor-0 weights differ "
        f"by {stress['diff']:.2f}; expected with many classes whenever a positive is much closer than the window",
        {"official_row": stress["row_official"], "suite_row": stress["row_suite"]},
        departure="samplers.py: row maximum over valid negatives keeps the focal window (R8)")
    add(1, "distance-weighted sampler with a negative at distance 2 (R9)", {"outcome": 1.0}, 0.0,
        f"documented (samplers.py): official {stress['antipodal_official']}; suite {stress['antipodal_suite']}",
        departure="samplers.py: row maximum over valid negatives")
    return rows


# ------------------------------------------------------------------------------------------------------------------
def run(method: str, official: Path, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """The rows of ``method`` ("rgal" or "rgal-cil")."""
    with import_stubs("termcolor", "kornia", "torchvision.models.utils"), \
            official_imports(official, *OFFICIAL_PREFIXES), tempfile.TemporaryDirectory() as tmp:
        off = official_modules()
        if method == "rgal-cil":
            return cil_rows(off, seed, commit)
        if method != "rgal":
            raise ValueError(f"rgal_official compares rgal and rgal-cil, not {method!r}")
        state, work = State(off, seed), Path(tmp)
        rows = synthesis_rows(state, work, commit) + student_rows(state, work, commit)
        rows += [probe_row(state, work, commit), normalisation_row(state, work, commit)]
        if steps > 0:
            rows += level3_rows(state, work, steps, commit)
        return rows
