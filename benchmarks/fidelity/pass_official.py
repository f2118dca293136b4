"""PASS fidelity harness: the suite's ``pass`` (strategies/pass_method.py, pass_plugins.py, prototypes.py, driven
through its real Avalanche ``Naive`` strategy and ``SuiteTrainingPlugin``) against the official code
Impression2805/CVPR21_PASS (``PASS.py``, ``ResNet.py``, ``myNetwork.py``), imported at run time from the checkout
passed as ``--official`` (``common.official_imports``); no official code is copied into this repository.

Compared terms (paper: Zhu et al., "Prototype Augmentation and Self-Supervision for Incremental Learning", CVPR 2021,
Sec. 3; named by the paper's symbols, official lines at commit 8b79993)
-----------------------------------------------------------------------------------------------------------------
* ``ce`` = L_t,ce of the self-supervised label augmentation: every image rotated by 0/90/180/270 degrees
  (X'_t = rotate(X_t, theta)), labels 4y + k, ``CE(logits / T, 4y + k)`` with T = 0.1 over the 4K outputs
  (official PASS.py:103-105 rotation, :133-135 CE; suite ``RotationPlugin``, ``TemperatureCE``).
* ``proto`` = L_t,protoAug: CE(fc(mu_c + e * r) / T, 4c), e ~ N(0, I), c an old class drawn uniformly, batch-size
  samples a step (PASS.py:143-155; suite ``PrototypeAugmentationPlugin``, ``PrototypeBank.sample``).
* ``kd`` = L_t,kd = ||F_t(X'_t) - F_t-1(X'_t)||: the un-averaged Frobenius norm over the rotated batch's embeddings
  (PASS.py:139-141; suite ``FeatureDistillationPlugin``).
* ``total`` = L_t,total = L_t,ce + lambda L_t,protoAug + gamma L_t,kd, lambda = gamma = 10 (PASS.py:157, main.py
  defaults; phase 0 has L_t,ce only, :136-137).
* prototypes mu_t,k = class means of the embedding and the radius r^2 = 1/(K_1 D) sum_k Tr(Sigma_1,k) from phase 0
  only (official ``protoSave``, PASS.py:170-206; suite ``phase_features`` + ``PrototypeBank.update``).
* the optimiser step: Adam(lr 1e-3, weight decay 2e-4), fresh every phase, StepLR(45, 0.1) (PASS.py:94-98).

Rows (``run``)
--------------
Level 1: the loss terms of one step in phase 0 and in phase 1 (ResNet-18, 8 random images = 32 rotated samples,
4 + 2 classes); the brightness jitter's uint8 re-quantisation and its effect on a step's loss.
Level 2: per phase, the gradient of every mapped parameter (max over tensors of max|dg| / max|g|) and the parameters
after Adam's step; prototypes and radius; BatchNorm running statistics after a phase-1 step; the learning rate of
every epoch of a 101-epoch phase, from both real loops (the official ``train()`` on a tiny 512-d stand-in
backbone, the suite's strategy on a 4-filter net: only the schedule matters there).
* Gradient tolerance: max(GRAD_RTOL, 3 x the official code's own round-off floor), the floor being its gradients on
  the same batch with the rotated samples in reversed order (the same sums, reassociated).  At random
  initialisation with train-mode BatchNorm the step is ill-conditioned (a channels_last instead of NCHW input moves
  the official gradients by ~10 %), so agreement at 1e-6 .. 1e-5 needs the same kernels on both sides (H1 below).
* Parameters after Adam: its first step moves an element by lr * e / (|e| + eps), e = g + wd * w, i.e. by about
  +-lr, so an element whose e is round-off may flip sign between two equal computations and the updates are then
  2 lr apart (``common.step_change_rel_diff`` reports ~2, kept in the details).  The robust measure
  (``adam_step_diff``): for every element whose e has the same sign on both sides the two updates differ by exactly
  lr * eps * |e_o - e_s| / ((|e_o| + eps)(|e_s| + eps)); the part of |p_o - p_s| beyond that, one ulp of the
  stored parameter and a few ulps of lr, relative to the step's size, is what the two optimisers do differently
  given the gradients (0 = the same Adam step; the gradients themselves are compared above).  The elements whose e
  changed sign are counted and left out; the details also give max |p_o - p_s| where |e| > 1e-5, beyond 1 ulp.
Level 3 (``steps`` > 0): a phase-1 run of ``steps`` batches from one injected start (the official phase-0 model
after 4 official steps, its prototypes and radius; current model = old model as at the start of a real phase), the
suite through its strategy, the official ``train()`` loop fed the suite's batches and prototype draws.  To fit one
CPU core (``--steps 100``: about 8 CPU minutes in all, levels 1-2 included) level 3 uses the official
``ResNet(BasicBlock, [1, 1, 1, 1])`` (one block per stage, same stem, widths and 512-d embedding; the suite's
``CifarResNet([1, 1, 1, 1], ...)``) and 2 images (8 rotated samples) a step.  Reported: the max relative difference
of the loss curves (also over the first 1 / 10 / 30 steps), the final parameters' divergence (max over tensors of
||p_o - p_s|| / ||p_o - p_start||), held-out eval-mode logits and accuracy (these also carry the BatchNorm departure
below; its size at the run's final weights -- the run's batches accumulated with one or two updates a step -- goes
to the BatchNorm row).  float32 round-off grows over a run (Adam's near-zero-gradient elements flip, BatchNorm
amplifies); the floor is the official run against itself with every batch's samples in reversed order.  Verdict
``identical`` when the suite's loss-curve and parameter divergences are both within 3x the floor's (and at least
LOSS_RTOL / GRAD_RTOL), else ``differs``.

Identical state and draws
-------------------------
* Weights: the official ``network(4 * classes, backbone)`` is built first (``torch.manual_seed(seed)``) and mapped
  onto the suite ``Net`` (``official_to_suite``: ``feature.conv1/bn1`` -> ``backbone.stem.0/1``,
  ``feature.layerL.b.*`` -> ``backbone.stages.L-1.b.*`` with ``downsample`` -> ``shortcut``, ``fc`` -> the first rows
  of ``head``); the official CBAM modules and ``ResNet.fc`` are never called in its forward and have no counterpart.
  The suite's normalisation buffers equal the official ``Normalize`` constants (checked).
* Batches: the suite draws its own (``TensorBatches``: shuffle, batched crop / flip / brightness); an observer plugin
  placed first in the strategy records each batch before ``RotationPlugin``; the official side gets exactly those
  [0, 1] images through the official ``Normalize`` instance as its ``train_loader`` (P4).  Both sides rotate.
* Prototype draws: the suite's generator state is recorded before each step and replayed (``randint`` then
  ``randn``, as ``PrototypeBank.sample`` draws; checked bit for bit against the samples the plugin used); P3 serves
  the same class and N(0, I) row to the official ``np.random.shuffle`` / ``np.random.normal``.
* Phase 1: official ``afterTrain`` (torch.save / torch.load -> old model, eval) and ``beforeTrain(1)`` (new fc rows);
  at levels 1-2 the current backbone is then scaled by (1 + 0.02 N(0, 1)) so that f != f_old; current model, old
  model (``OldModelHolder.update``), prototypes, labels and radius (``PrototypeBank``) are mapped into the suite.

Patches (``PATCHES``; nothing of the official or suite code is edited)
----------------------------------------------------------------------
P1 ``PASS.iCIFAR100`` -> a stub: ``protoAugSSL.__init__`` builds CIFAR-100 with ``download=True`` (needs files or
   network) and ``beforeTrain`` calls ``getTrainData`` / ``getTestData``; the stub holds nothing and its loaders are
   replaced (P4) before use.
P2 ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` while the official code runs: ``afterTrain`` does ``torch.load`` of a pickled
   ``nn.Module``, which torch >= 2.6 refuses by default (the official code ran torch 1.10); ``save_path`` is a
   temporary directory.
P3 ``PASS.np`` -> a shim during phase-1 steps: ``np.random.shuffle`` / ``np.random.normal`` in ``_compute_loss``
   return the injected draws (every other ``np`` attribute is numpy's); all draws must be consumed.
P4 ``obj.train_loader`` / ``obj.test_loader`` := lists of (indices, normalised images, labels) after ``beforeTrain``.
H1 (suite side, values untouched) the suite batch is made NCHW-contiguous before ``RotationPlugin``: the batched crop
   returns channels_last, which runs other convolution kernels than the official NCHW ones (same numbers,
   different round-off, amplified by the conditioning above).
Not needed: CUDA patches (PASS.py moves tensors to a device argument).  ``main.py`` is not imported (it parses argv);
``args`` is a namespace with its defaults except epochs, batch size and the tiny class split.  The official code's
prints are captured.

Departures found (rows with their measured size; docs/fidelity-pass-ssre.md describes them)
-------------------------------------------------------------------------------------------
* Later phases: the official step runs the current backbone twice in train mode (``model(imgs)``, then
  ``model.feature(imgs)``), so BatchNorm running statistics take two momentum updates per step; the suite captures
  the embedding of its single forward.  Losses and gradients are unaffected; eval-mode outputs are (level 2 / 3).
* StepLR: ``scheduler.step()`` at the start of every epoch (torch >= 1.1: decays at 0-based epochs 44 and 89), the
  suite after every epoch (45 and 90).
* Brightness: PIL re-quantises the jittered image to uint8 (floor), the suite keeps the float product.
Documented departures that identical injected states hide: the new classes' head rows (``benchmark/models/base.py``),
the RNG streams (``benchmark/augment.py``, ``training.py``), the old model run without autograd (pass_plugins.py).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_tensors, compare_terms, official_imports,
                                        rel_diff, step_change_rel_diff, tensor_rel_diff, verdict, worst)

REPOSITORY = "Impression2805/CVPR21_PASS"
PATCHES: list[tuple[str, str]] = [
    ("P1: PASS.iCIFAR100 replaced by an empty stub dataset",
     "protoAugSSL.__init__ downloads CIFAR-100 and beforeTrain reads it; the harness feeds its own batches (P4)"),
    ("P2: env TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 while the official code runs; save_path in a temporary directory",
     "afterTrain torch.load()s a pickled nn.Module, which torch >= 2.6 refuses by default (official: torch 1.10)"),
    ("P3: PASS.np replaced by a shim during phase-1 steps (np.random.shuffle / normal return injected draws)",
     "the official prototype draws must equal the suite's (replayed from its generator); the rest is numpy's"),
    ("P4: obj.train_loader / obj.test_loader assigned lists of (indices, images, labels)",
     "train() and _test() then run on the suite's exact batches and a fixed held-out batch"),
    ("H1 (suite side): the suite batch made NCHW-contiguous before RotationPlugin, values unchanged",
     "its batched crop returns channels_last, whose convolution kernels round differently from the official NCHW"),
]
DOCS = "docs/fidelity-pass-ssre.md"
ENV_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"

MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)  # official Normalize (PASS.py:34)
WIDTHS = (64, 128, 256, 512)
FG, TS = 4, 2  # classes of phase 0 and of phase 1
BATCH, LAYERS = 8, (2, 2, 2, 2)  # levels 1-2: ResNet-18 on 8 images
PERTURB = 0.02  # levels 1-2, phase 1: relative noise on the current backbone
L3_BATCH, L3_LAYERS, L3_PHASE0_BATCHES = 2, (1, 1, 1, 1), 4  # level 3 (see the module docstring)
FLOOR_FACTOR = 3.0
SETTLED = 1e3  # x Adam's eps: effective gradients above it have a round-off-proof sign
TERMS = ("loss_cls", "loss_protoAug", "loss_kd")


# ------------------------------------------------------------------------------------------------ patches (P1, P3)
class _StubICIFAR100(torch.utils.data.Dataset):
    """P1: stands in for the official iCIFAR100 (no files, no download)."""

    def __init__(self, root, train=True, transform=None, target_transform=None, test_transform=None,
                 target_test_transform=None, download=False):
        self.transform, self.test_transform, self.targets = transform, test_transform, []

    def getTrainData(self, classes):  # noqa: N802 (official name)
        pass

    getTestData = getTestData_up2now = getTrainData

    def __len__(self):
        return 1  # DataLoader(shuffle=True) refuses an empty dataset; never iterated (P4)

    def __getitem__(self, i):
        raise RuntimeError("stub dataset: the harness replaces the official loaders")


class _RandomShim:
    """P3: ``np.random`` whose ``shuffle`` puts the injected prototype position first and whose ``normal`` returns
    the injected noise row; every other attribute is numpy's."""

    def __init__(self, positions, noise: np.ndarray):
        self._pos, self._noise = list(positions), noise.astype(np.float64)
        self.n_shuffle = self.n_normal = 0

    def __getattr__(self, name):
        return getattr(np.random, name)

    def shuffle(self, x):
        j = x.index(self._pos[self.n_shuffle])
        x[0], x[j] = x[j], x[0]
        self.n_shuffle += 1

    def normal(self, loc=0.0, scale=1.0, size=None):
        assert loc == 0 and scale == 1 and size == self._noise.shape[1], (loc, scale, size)
        row = self._noise[self.n_normal]
        self.n_normal += 1
        return row


class _NumpyShim:
    def __init__(self, random):
        self.random = random

    def __getattr__(self, name):
        return getattr(np, name)


@contextlib.contextmanager
def injected_draws(off_pass, positions, noise):
    """P3 for the duration of the block; checks that every injected draw was consumed."""
    shim = _RandomShim(positions, noise)
    off_pass.np = _NumpyShim(shim)
    try:
        yield shim
    finally:
        off_pass.np = np
    assert shim.n_shuffle == shim.n_normal == len(shim._pos), (shim.n_shuffle, shim.n_normal, len(shim._pos))


@contextlib.contextmanager
def official_code(official: Path):
    """The official modules with P1 and P2 in force: ``SimpleNamespace(PASS=..., ResNet=...)``."""
    before = os.environ.get(ENV_NO_WEIGHTS_ONLY)
    os.environ[ENV_NO_WEIGHTS_ONLY] = "1"  # P2
    try:
        with official_imports(official, "PASS", "ResNet", "myNetwork", "iCIFAR100"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            import PASS as off_pass  # noqa: N813 (official module names)
            import ResNet as off_resnet  # noqa: N813
            off_pass.iCIFAR100 = _StubICIFAR100  # P1
            yield SimpleNamespace(PASS=off_pass, ResNet=off_resnet)
    finally:
        if before is None:
            os.environ.pop(ENV_NO_WEIGHTS_ONLY, None)
        else:
            os.environ[ENV_NO_WEIGHTS_ONLY] = before


def quiet():
    """The official code prints progress; keep the harness output to the table."""
    return contextlib.redirect_stdout(io.StringIO())


# ------------------------------------------------------------------------------------------------ state mapping
def official_to_suite(key: str) -> str | None:
    """Official ``network`` state-dict key -> suite ``Net`` key (None: unused in the official forward)."""
    if key.startswith("fc."):
        return "head." + key[3:]
    assert key.startswith("feature."), key
    k = key[len("feature."):]
    if k.startswith("fc."):
        return None
    for off, suite in (("conv1.", "backbone.stem.0."), ("bn1.", "backbone.stem.1.")):
        if k.startswith(off):
            return suite + k[len(off):]
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", k)
    assert m, key
    rest = m.group(3)
    if rest.startswith(("ca.", "sa.")):
        return None
    return f"backbone.stages.{int(m.group(1)) - 1}.{m.group(2)}.{rest.replace('downsample.', 'shortcut.')}"


def load_official_into_suite(suite_net, official_net) -> None:
    """Copies the official weights and buffers into the suite net (its head's first rows for ``fc``)."""
    sd = suite_net.state_dict()
    covered = set()
    for k, v in official_net.state_dict().items():
        sk = official_to_suite(k)
        if sk is None:
            continue
        if sk.startswith("head."):
            sd[sk][: v.shape[0]] = v
        else:
            assert sd[sk].shape == v.shape, (k, sk)
            sd[sk] = v.clone()
        covered.add(sk)
    missing = [k for k in sd if k not in covered and not k.startswith("backbone.normalize.")]
    assert not missing, missing
    suite_net.load_state_dict(sd)


def suite_as_official(suite_sd: dict, official_names, n_rows: int) -> dict:
    """The suite's tensors under the official names (head rows cut to the official classifier's)."""
    out = {}
    for name in official_names:
        sk = official_to_suite(name)
        if sk is not None:
            out[name] = suite_sd[sk][:n_rows] if sk.startswith("head.") else suite_sd[sk]
    return out


# ------------------------------------------------------------------------------------------------ observers
class StepRecorder:
    """Global optimizer hooks (a context): per ``step()`` the hyper-parameters, whether the optimizer was fresh and,
    with ``tensors``, every parameter's gradient and value before and after the step (keyed by ``id``)."""

    def __init__(self, tensors=True):
        self.tensors, self.records, self._hooks = tensors, [], []

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        self._hooks = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]
        return self

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()

    def _pre(self, opt, args, kwargs):
        rec = {"fresh": len(opt.state) == 0, "type": type(opt).__name__,
               "hyper": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
               "grad": {}, "before": {}, "after": {}}
        if self.tensors:
            for p in (p for g in opt.param_groups for p in g["params"]):
                rec["grad"][id(p)] = None if p.grad is None else p.grad.detach().clone()
                rec["before"][id(p)] = p.detach().clone()
        self.records.append(rec)

    def _post(self, opt, args, kwargs):
        if self.tensors:
            rec = self.records[-1]
            for p in (p for g in opt.param_groups for p in g["params"]):
                rec["after"][id(p)] = p.detach().clone()

    def pop(self) -> dict:
        assert len(self.records) == 1, f"expected one optimizer step, saw {len(self.records)}"
        return self.records.pop()


def _num(v):
    if isinstance(v, torch.Tensor):
        return float(v.detach().double().sum()) if v.numel() == 1 else None
    return float(v) if isinstance(v, (int, float, np.floating)) else None


class LocalsRecorder:
    """``sys.setprofile``: at each return of a watched function (code object -> local names) those locals and the
    return value, as floats (no autograd graph is kept)."""

    def __init__(self, watch: dict):
        self.watch, self.calls = watch, {code: [] for code in watch}

    def __enter__(self):
        self._old = sys.getprofile()
        sys.setprofile(self._prof)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._old)

    def _prof(self, frame, event, arg):
        if event == "return" and frame.f_code in self.watch:
            loc = frame.f_locals
            rec = {n: _num(loc[n]) for n in self.watch[frame.f_code] if n in loc}
            rec["__return__"] = _num(arg)
            self.calls[frame.f_code].append(rec)


def install_observers(method, contiguous=True) -> dict:
    """Plugins around the suite's: the batch before rotation (H1 applied), the prototype generator state, the loss
    after the CE, after the prototype term (and the samples used) and after distillation, per step."""
    from avalanche.core import SupervisedPlugin

    rec = {k: [] for k in ("x", "y", "gen", "train_mode", "after_ce", "after_proto", "after_kd", "samples")}

    class Grab(SupervisedPlugin):
        def before_training_iteration(self, strategy, **kw):
            if contiguous:  # H1
                strategy.mbatch[0] = strategy.mbatch[0].contiguous()
            rec["x"].append(strategy.mbatch[0].detach().clone())
            rec["y"].append(strategy.mbatch[1].detach().clone())
            rec["gen"].append(method.proto_gen.get_state())
            rec["train_mode"].append(strategy.model.training)

    class LossAt(SupervisedPlugin):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def before_backward(self, strategy, **kw):
            rec[self.tag].append(_num(strategy.loss))
            if self.tag == "after_proto":  # one entry a step (None: empty bank, no prototype term)
                used = method.proto_aug.last_samples if len(method.bank) else None
                rec["samples"].append(None if used is None else tuple(t.detach().clone() for t in used))

    pl = method.strategy.plugins
    i_proto, i_kd = pl.index(method.proto_aug), pl.index(method.kd)
    assert i_proto + 1 == i_kd, [type(p).__name__ for p in pl]
    method.strategy.plugins = ([Grab()] + pl[:i_proto] + [LossAt("after_ce"), method.proto_aug, LossAt("after_proto"),
                                                         method.kd, LossAt("after_kd")] + pl[i_kd + 1:])
    return rec


# ------------------------------------------------------------------------------------------------ construction
@dataclass
class Pair:
    """The official ``protoAugSSL`` and the suite's PASS built from one state."""

    off: SimpleNamespace
    obj: object
    normalize: object  # the official Normalize instance
    method: object
    rec: dict
    net: torch.nn.Module
    sc: object
    bench: object
    layers: tuple
    batch: int
    seed: int
    start: dict | None = None  # level 3: the injected start state

    def official_batch(self, x, y, order=None):
        """An official loader item for suite [0, 1] or uint8 images (``order``: a permutation of the samples)."""
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        if order is not None:
            x, y = x[order], y[order]
        return torch.arange(len(y)), self.normalize(x), y

    def test_set(self):
        return self.sc.data.x_test, self.sc.data.y_test


def make_scenario(n0: int, n1: int, n_test: int, seed: int):
    """Random uint8 images: ``n0`` of the FG phase-0 classes, ``n1`` of the TS phase-1 classes, ``n_test`` test
    images per class; returns the suite Scenario and its Avalanche benchmark."""
    from benchmark.augment import CIFAR_PASS
    from benchmark.data import ArrayData
    from benchmark.scenarios import Scenario, ScenarioSpec, make_avalanche_benchmark

    g = torch.Generator().manual_seed(seed + 11)
    ytr = torch.cat([torch.arange(FG).repeat_interleave(n0 // FG), FG + torch.arange(TS).repeat_interleave(n1 // TS)])
    xtr = torch.randint(0, 256, (len(ytr), 3, 32, 32), generator=g, dtype=torch.uint8)
    yte = torch.arange(FG + TS).repeat_interleave(n_test)
    xte = torch.randint(0, 256, (len(yte), 3, 32, 32), generator=g, dtype=torch.uint8)
    spec = ScenarioSpec("fidelity-tiny", "random", FG + TS, None, CIFAR_PASS, MEAN, STD)
    data = ArrayData("random", xtr, ytr, xte, yte, [str(c) for c in range(FG + TS)], "random")
    sc = Scenario(spec, data, list(range(FG + TS)), [FG, TS], 0)
    return sc, make_avalanche_benchmark(sc)


def official_args(tmp: str, batch: int, epochs: int = 1) -> argparse.Namespace:
    """main.py's defaults (main.py:26-38) except epochs, batch size and the tiny class split."""
    return argparse.Namespace(epochs=epochs, batch_size=batch, print_freq=10, data_name="cifar100",
                              total_nc=FG + TS, fg_nc=FG, task_num=1, learning_rate=1e-3, protoAug_weight=10.0,
                              kd_weight=10.0, temp=0.1, gpu="0", save_path=str(Path(tmp)) + "/")


def official_backbone(off, layers):
    if tuple(layers) == (2, 2, 2, 2):
        return off.ResNet.resnet18_cbam()  # main.py:64
    return off.ResNet.ResNet(off.ResNet.BasicBlock, list(layers))


def make_official(off, args, backbone):
    with quiet():
        obj = off.PASS.protoAugSSL(args, "fidelity", backbone, TS, torch.device("cpu"))
    normalize = obj.train_transform.transforms[-1]
    assert tuple(normalize.mean) == MEAN and tuple(normalize.std) == STD, (normalize.mean, normalize.std)
    return obj, normalize


def suite_net(layers, widths=WIDTHS):
    from benchmark.models.base import Net
    from benchmark.models.resnet_cifar import CifarResNet

    # (2, 2, 2, 2) with WIDTHS is the suite's registered resnet18 (benchmark/models/resnet_cifar.py)
    return Net(CifarResNet(list(layers), list(widths), in_channels=3, mean=MEAN, std=STD), 4 * (FG + TS))


def paper_recipe(batch: int, epochs: int | None = 1):
    """The ``paper`` profile's later-phase PASS recipe (Adam 1e-3, wd 2e-4, StepLR(45, 0.1), 101 epochs) at the
    harness's batch size and ``epochs`` (None: the profile's)."""
    from benchmark.profiles import PROFILES

    r = PROFILES.get("paper").recipes("pass")[1]
    return replace(r, batch_size=batch, epochs=r.epochs if epochs is None else epochs)


def make_suite(sc, net, recipe, seed):
    from benchmark.methods import MethodContext
    from benchmark.methods import METHODS
    from strategies.pass_method import PASS

    ctx = MethodContext(net, sc, lambda k: recipe, dict(METHODS.entry("pass").extra["defaults"]), torch.device("cpu"), seed=seed)
    method = PASS(ctx)
    return method, install_observers(method)


def suite_phase(p: Pair, k: int, epochs: int = 1) -> None:
    """The suite's own phase ``k`` (its plugin generator seeded as the runner seeds it)."""
    p.method.suite_plugin.generator.manual_seed(p.seed * 1000 + k)
    p.method.train_phase(k, p.bench.train_stream[k], epochs)


def build_pair(off, tmp, seed, layers, batch, n0, n1, n_test=2) -> Pair:
    sc, bench = make_scenario(n0, n1, n_test, seed)
    torch.manual_seed(seed)
    obj, normalize = make_official(off, official_args(tmp, batch), official_backbone(off, layers))
    net = suite_net(layers)
    load_official_into_suite(net, obj.model)
    method, rec = make_suite(sc, net, paper_recipe(batch), seed)
    return Pair(off, obj, normalize, method, rec, net, sc, bench, tuple(layers), batch, seed)


def enter_phase1(p: Pair, perturb: float) -> tuple:
    """Official ``afterTrain`` + ``beforeTrain(1)`` (+ a perturbed current backbone), mapped into the suite: model,
    old model, prototypes and radius.  Returns the suite bank's (prototypes, labels) as the steps will see them."""
    with quiet():
        p.obj.afterTrain()
        p.obj.beforeTrain(1)
    if perturb:
        g = torch.Generator().manual_seed(p.seed + 5)
        with torch.no_grad():
            for prm in p.obj.model.feature.parameters():
                prm.mul_(1 + perturb * torch.randn(prm.shape, generator=g))
    load_official_into_suite(p.net, p.obj.model)
    old_net = suite_net(p.layers)
    load_official_into_suite(old_net, p.obj.old_model)
    p.method.old.update(old_net)
    p.method.bank.means = {int(c): torch.from_numpy(np.asarray(v, dtype=np.float32)).clone()
                           for v, c in zip(p.obj.prototype, p.obj.class_label)}
    p.method.bank.radius = float(p.obj.radius)
    assert not p.obj.old_model.training and not p.method.old.model.training
    return p.method.bank.matrix()


def replay_draws(p: Pair, bank: tuple, steps) -> tuple:
    """The suite's prototype draws of the given steps, replayed from the recorded generator states and checked
    against the samples its plugin used; as official prototype positions and N(0, I) rows (P3)."""
    protos, labels = bank
    n, positions, noise = p.method.proto_aug.n, [], []
    official_labels = [int(c) for c in p.obj.class_label]
    for i in steps:
        g = torch.Generator()
        g.set_state(p.rec["gen"][i])
        idx = torch.randint(0, len(labels), (n,), generator=g)
        e = torch.randn((n, protos.shape[1]), generator=g)
        used, c_used = p.rec["samples"][i]
        assert torch.equal(labels[idx], c_used) and torch.equal(protos[idx] + e * p.method.bank.radius, used), \
            f"replayed prototype draws of step {i} differ from the suite's"
        positions += [official_labels.index(int(c)) for c in c_used]
        noise.append(e)
    return positions, torch.cat(noise).numpy()


# ------------------------------------------------------------------------------------------------ step comparisons
def paired_tensors(off_rec, off_net, suite_rec, suite_net, n_rows) -> tuple[dict, dict]:
    """{official name: (grad, before, after)} for each side over the mapped parameters (suite head cut to
    ``n_rows``)."""
    sid = {n: id(q) for n, q in suite_net.named_parameters()}
    official, suite = {}, {}
    for name, q in off_net.named_parameters():
        sk = official_to_suite(name)
        if sk is None:
            continue
        cut = slice(0, n_rows) if sk.startswith("head.") else slice(None)
        official[name] = tuple(off_rec[k][id(q)] for k in ("grad", "before", "after"))
        suite[name] = tuple(suite_rec[k][sid[sk]][cut] for k in ("grad", "before", "after"))
    return official, suite


def adam_step_diff(o: tuple, s: tuple, lr: float, wd: float, eps: float) -> tuple[float, float, int]:
    """Parameters after Adam's first step.  With the effective gradient e = g + wd * w of the same sign on both
    sides, the first step's update lr * e / (|e| + eps) differs by exactly lr * eps * |e_o - e_s| / ((|e_o| + eps)
    (|e_s| + eps)) (``pred``): returns max(|p_o - p_s| - 1.01 pred - 1 ulp(p) - 4 ulp(lr), 0) / max|p_after -
    p_before| (the parameter difference the two gradients do not explain, relative to the step), the same without
    ``pred`` over the elements with |e| > SETTLED * eps, and the number of elements whose e changed sign (left
    out: their update is +-lr on either side)."""
    (go, bo, ao), (gs, bs, as_) = o, s
    eo, es = (go + wd * bo).double(), (gs + wd * bs).double()
    same = torch.sign(eo) == torch.sign(es)
    pred = lr * eps * (eo - es).abs() / ((eo.abs() + eps) * (es.abs() + eps))
    mag = torch.maximum(ao.abs(), as_.abs())
    ulp = (torch.nextafter(mag, torch.tensor(float("inf"))) - mag).double()
    ulp_lr = float(np.spacing(np.float32(lr)))
    dp = (ao.double() - as_.double()).abs()
    step = (ao.double() - bo.double()).abs().max().item() or 1.0
    unexplained = (dp - 1.01 * pred - ulp - 4 * ulp_lr).clamp(min=0)[same]
    settled = same & (eo.abs() > SETTLED * eps) & (es.abs() > SETTLED * eps)
    raw = (dp - ulp).clamp(min=0)[settled]
    return (unexplained.max().item() / step if unexplained.numel() else 0.0,
            raw.max().item() / step if raw.numel() else 0.0, int((~same).sum()))


def compare_step(off_rec, off_net, suite_rec, suite_net, n_rows) -> dict:
    """Level 2 of one step: gradients, the Adam step (``adam_step_diff``), the optimisers' settings."""
    o, s = paired_tensors(off_rec, off_net, suite_rec, suite_net, n_rows)
    grads = compare_tensors({k: v[0] for k, v in o.items()}, {k: v[0] for k, v in s.items()})
    h_o, h_s = off_rec["hyper"][0], suite_rec["hyper"][0]
    lr, wd, eps = h_o["lr"], h_o["weight_decay"], h_o["eps"]
    adam = {k: adam_step_diff(o[k], s[k], lr, wd, eps) for k in o}
    unexplained, settled = {k: v[0] for k, v in adam.items()}, {k: v[1] for k, v in adam.items()}
    common = step_change_rel_diff({k: v[1] for k, v in o.items()}, {k: v[2] for k, v in o.items()},
                                  {k: v[2] for k, v in s.items()})
    same_opt = (off_rec["type"], off_rec["fresh"], lr, wd, eps, h_o["betas"]) == \
        (suite_rec["type"], suite_rec["fresh"], h_s["lr"], h_s["weight_decay"], h_s["eps"], h_s["betas"])
    unused = [n for n, q in off_net.named_parameters() if official_to_suite(n) is None]
    assert all(off_rec["grad"][id(q)] is None for n, q in off_net.named_parameters() if n in unused)
    return {"grads": grads, "grad_worst": worst(grads), "official_grads": {k: v[0] for k, v in o.items()},
            "adam_unexplained": unexplained, "adam_worst": worst(unexplained),
            "adam_settled_dp_worst": worst(settled), "adam_sign_flips": sum(v[2] for v in adam.values()),
            "n_elements": sum(v[0].numel() for v in o.values()),
            "common_step_change_worst": worst(common), "optimizer_equal": same_opt,
            "optimizer": f"{off_rec['type']} lr {lr} wd {wd} betas {h_o['betas']} eps {eps} fresh {off_rec['fresh']}",
            "n_tensors": len(o), "official_unused_tensors": len(unused)}


def grad_floor(p: Pair, pre: dict, x, y, old_class, draws, official_grads) -> float:
    """The official code's round-off floor of one step: its ``_compute_loss`` gradients from the pre-step state
    (model, prototype list: ``protoSave`` has since extended it) on the same rotated batch with the samples in
    reversed order, against the step's own (max over tensors)."""
    from strategies.pass_plugins import rotate_batch

    imgs, target = rotate_batch(p.normalize(x), y)
    order = torch.arange(len(target) - 1, -1, -1)
    model, saved = copy.deepcopy(pre["model"]), (p.obj.model, p.obj.prototype, p.obj.class_label)
    p.obj.model, p.obj.prototype, p.obj.class_label = model, pre["prototype"], pre["class_label"]
    try:
        ctx = injected_draws(p.off.PASS, *draws) if draws else contextlib.nullcontext()
        with ctx:
            loss = p.obj._compute_loss(imgs[order], target[order], old_class)
        model.zero_grad()
        loss.backward()
    finally:
        p.obj.model, p.obj.prototype, p.obj.class_label = saved
    grads = {n: q.grad for n, q in model.named_parameters() if n in official_grads}
    return worst(compare_tensors(official_grads, grads))[1]


def official_train(p: Pair, task: int, old_class: int, draws=None):
    """The official ``train(task)`` on the loaders already set; returns the ``_compute_loss`` and ``_test`` records."""
    cls = p.off.PASS.protoAugSSL
    watch = {cls._compute_loss.__code__: TERMS, cls._test.__code__: ()}
    ctx = injected_draws(p.off.PASS, *draws) if draws else contextlib.nullcontext()
    with ctx, LocalsRecorder(watch) as rec, quiet():
        p.obj.train(task, old_class=old_class)
    return rec.calls[cls._compute_loss.__code__], rec.calls[cls._test.__code__]


def official_terms(call: dict) -> dict:
    names = {"loss_cls": "ce", "loss_protoAug": "proto", "loss_kd": "kd", "__return__": "total"}
    return {names[k]: v for k, v in call.items() if k in names}


def suite_terms(rec: dict, i: int, w_proto: float, w_kd: float, phase: int) -> dict:
    """The suite's terms of step ``i`` from the loss recorded around its loss plugins (weights divided out)."""
    t = {"ce": rec["after_ce"][i], "total": rec["after_kd"][i]}
    if phase:
        t["proto"] = (rec["after_proto"][i] - rec["after_ce"][i]) / w_proto
        t["kd"] = (rec["after_kd"][i] - rec["after_proto"][i]) / w_kd
    return t


# ------------------------------------------------------------------------------------------------ levels 1-2
def level0_check(p: Pair) -> dict:
    """The mapped models compute the same eval-mode embedding and logits (no state change)."""
    x = p.sc.data.x_train[: p.batch]
    p.obj.model.eval(), p.net.eval()
    with torch.no_grad():
        xf = x.float() / 255
        emb = tensor_rel_diff(p.obj.model.feature(p.normalize(xf)), p.net.backbone(xf))
        logits = tensor_rel_diff(p.obj.model(p.normalize(xf)), p.net(xf)[:, : 4 * FG])
    p.obj.model.train(), p.net.train()
    return {"eval_embedding_rel": emb, "eval_logits_rel": logits}


def run_step(p: Pair, phase: int, draws_for=None) -> dict:
    """One suite step of ``phase`` (its own batch), then the official ``train(phase)`` on that batch; loss terms,
    gradients, Adam step and the official round-off floor."""
    with StepRecorder() as steps:
        suite_phase(p, phase)
        s_rec = steps.pop()
        x, y = p.rec["x"][-1], p.rec["y"][-1]
        draws = draws_for(len(p.rec["x"]) - 1) if draws_for else None
        pre = {"model": copy.deepcopy(p.obj.model), "prototype": p.obj.prototype, "class_label": p.obj.class_label}
        p.obj.train_loader = [p.official_batch(x, y)]  # P4
        xt, yt = p.test_set()
        p.obj.test_loader = [p.official_batch(xt, yt)]
        calls, _ = official_train(p, phase, FG if phase else 0, draws)
        o_rec = steps.pop()
    assert p.rec["train_mode"][-1], "suite model not in train mode"
    prm = p.method.ctx.params
    terms = compare_terms(official_terms(calls[-1]),
                          suite_terms(p.rec, -1, prm["proto_weight"], prm["kd_weight"], phase))
    step = compare_step(o_rec, p.obj.model, s_rec, p.net, 4 * (FG + TS if phase else FG))
    step["floor"] = grad_floor(p, pre, x, y, FG if phase else 0, draws, step.pop("official_grads"))
    return {"terms": terms, "step": step, "x": x, "y": y}


def prototype_check(p: Pair, x, y) -> dict:
    """Official ``protoSave`` (run by ``train(0)`` on the phase-0 batch with the post-step weights) against the
    suite's ``phase_features`` + ``PrototypeBank.update`` on a suite net holding the same weights, same images."""
    from benchmark.augment import NONE
    from strategies.pass_plugins import phase_features
    from strategies.prototypes import PrototypeBank

    net = suite_net(p.layers)
    load_official_into_suite(net, p.obj.model)
    f, labels = phase_features(net, x, y, p.batch, NONE, torch.Generator().manual_seed(1), "cpu")
    bank = PrototypeBank()
    bank.update(f, labels)
    protos = {int(c): tensor_rel_diff(torch.from_numpy(np.asarray(v)), bank.means[int(c)])
              for v, c in zip(p.obj.prototype, p.obj.class_label)}
    return {"prototypes": protos, "radius": {"official": float(p.obj.radius), "suite": bank.radius,
                                             "rel": rel_diff(float(p.obj.radius), bank.radius)}}


def bn_check(p: Pair, before: dict) -> dict:
    """BatchNorm buffers after a phase-1 step, and whether the official ones are the suite's after one more momentum
    update with the same batch statistics (s = 0.9 v0 + 0.1 b  =>  official = 0.9 s + 0.1 b)."""
    sd = p.net.state_dict()
    rel, pred_err, nbt = {}, 0.0, None
    for k, v in p.obj.model.state_dict().items():
        sk = official_to_suite(k)
        if sk is None or not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        if k.endswith("num_batches_tracked"):
            nbt = nbt or (int(v), int(sd[sk]))
            continue
        rel[k] = tensor_rel_diff(v, sd[sk])
        s, v0 = sd[sk].double(), before[sk].double()
        batch_stat = (s - 0.9 * v0) / 0.1
        pred_err = max(pred_err, (v.double() - (0.9 * s + 0.1 * batch_stat)).abs().max().item())
    return {"buffers": rel, "worst": worst(rel), "one_more_update_max_abs_err": pred_err,
            "num_batches_tracked_official_suite": nbt, "eval_effect": bn_eval_effect(p, sd)}


def bn_eval_effect(p: Pair, suite_sd: dict) -> dict:
    """The official post-step model in eval mode on the held-out batch, with its own BatchNorm buffers and with the
    suite's (same weights): the relative logit difference and both accuracies."""
    xt, yt = p.test_set()
    x = p.official_batch(xt, yt)[1]
    model = copy.deepcopy(p.obj.model).eval()
    out = []
    for buffers in ("official", "suite"):
        if buffers == "suite":
            sd = model.state_dict()
            for k in sd:
                sk = official_to_suite(k)
                if sk is not None and k.endswith(("running_mean", "running_var", "num_batches_tracked")):
                    sd[k] = suite_sd[sk].clone()
            model.load_state_dict(sd)
        with torch.no_grad():
            out.append(model(x))
    acc = [float((o[:, ::4].argmax(1) == yt).float().mean()) for o in out]
    return {"logits_rel": tensor_rel_diff(*out), "acc_official_buffers": acc[0], "acc_suite_buffers": acc[1]}


def brightness_check(p: Pair) -> dict:
    """The suite's brightness jitter (float ``x * f``, clamped) against torchvision's PIL path that the official
    ``ColorJitter`` takes (uint8 result), same images and factors; and the effect on the official phase-0 loss."""
    import torchvision.transforms.functional as tvf
    from PIL import Image

    from benchmark.augment import CIFAR_PASS, random_brightness

    x8, y = p.sc.data.x_train[: p.batch], p.sc.data.y_train[: p.batch]
    b = CIFAR_PASS.brightness
    g = torch.Generator().manual_seed(p.seed + 3)
    state = g.get_state()
    xs = random_brightness(x8.float() / 255, b, g)
    g.set_state(state)  # replay the suite's factors (augment.py: U[max(0, 1 - b), 1 + b])
    lo, hi = max(0.0, 1.0 - b), 1.0 + b
    f = torch.rand(len(x8), generator=g) * (hi - lo) + lo
    assert torch.equal((x8.float() / 255 * f[:, None, None, None]).clamp(0, 1), xs)
    xo = torch.stack([tvf.to_tensor(tvf.adjust_brightness(Image.fromarray(img.permute(1, 2, 0).numpy()), float(fi)))
                      for img, fi in zip(x8, f)])
    d = (xo - xs).double()
    losses = [official_ce(p, x, y) for x in (xo, xs)]
    return {"pixel_diff_min": d.min().item(), "pixel_diff_max": d.max().item(), "pixel_diff_mean": d.mean().item(),
            "loss_pil_uint8": losses[0], "loss_float": losses[1], "loss_rel": rel_diff(*losses)}


def official_ce(p: Pair, x, y) -> float:
    """The official phase-0 loss (``_compute_loss``, train mode, on a copy of the model) of a [0, 1] batch."""
    from strategies.pass_plugins import rotate_batch

    saved, p.obj.model = p.obj.model, copy.deepcopy(p.obj.model)
    try:
        with torch.no_grad():
            return float(p.obj._compute_loss(*rotate_batch(p.normalize(x), y), 0))
    finally:
        p.obj.model = saved


def levels_1_2(off, tmp: str, seed: int) -> dict:
    """Levels 1-2 on ResNet-18 and 8 images: phase 0, prototypes, phase 1 (perturbed backbone), BN buffers."""
    p = build_pair(off, tmp, seed, LAYERS, BATCH, n0=BATCH, n1=BATCH)
    out = {"level0": level0_check(p), "brightness": brightness_check(p)}
    with quiet():
        p.obj.beforeTrain(0)
    out["p0"] = run_step(p, 0)
    out["proto"] = prototype_check(p, out["p0"]["x"], out["p0"]["y"])
    bank = enter_phase1(p, PERTURB)
    bn_before = {k: v.clone() for k, v in p.net.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    out["p1"] = run_step(p, 1, lambda i: replay_draws(p, bank, [i]))
    out["bn"] = bn_check(p, bn_before)
    return out


# ------------------------------------------------------------------------------------------------ learning rate
class _StandIn(torch.nn.Module):
    """A 512-d feature extractor small enough to run the official ``train()`` for 101 epochs (schedule only)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                        torch.nn.Linear(4, 512))

    def forward(self, x):
        return self.body(x)


def lr_schedules(off, tmp: str, seed: int) -> dict:
    """The learning rate of every epoch of a paper-length phase (one step an epoch) from both real loops: the
    official ``train()`` (with ``_StandIn``) and the suite's strategy with the ``paper`` recipe (4-filter net)."""
    epochs = paper_recipe(1, None).epochs
    torch.manual_seed(seed)
    obj, normalize = make_official(off, official_args(tmp, 2, epochs), _StandIn())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with quiet():
        obj.beforeTrain(0)
    obj.train_loader = obj.test_loader = [(torch.arange(2), normalize(x), torch.zeros(2, dtype=torch.long))]
    with StepRecorder(tensors=False) as rec_o, quiet():
        obj.train(0, old_class=0)
    sc, bench = make_scenario(2 * FG, 2 * TS, 1, seed)
    method, _ = make_suite(sc, suite_net((1,), (4,)), paper_recipe(2 * FG, epochs), seed)
    with StepRecorder(tensors=False) as rec_s:
        method.suite_plugin.generator.manual_seed(seed * 1000)
        method.train_phase(0, bench.train_stream[0], epochs)
    lr_o = [r["hyper"][0]["lr"] for r in rec_o.records]
    lr_s = [r["hyper"][0]["lr"] for r in rec_s.records]
    assert len(lr_o) == len(lr_s) == epochs, (len(lr_o), len(lr_s))
    return {"official": lr_o, "suite": lr_s, "epochs": epochs}


# ------------------------------------------------------------------------------------------------ level 3
def level3_start(off, tmp: str, seed: int, steps: int) -> Pair:
    """The official phase 0 (L3_PHASE0_BATCHES steps, then ``protoSave``), ``afterTrain``, ``beforeTrain(1)``: the
    injected start of the level-3 run (current model = old model), mapped into a fresh suite PASS."""
    n0 = L3_BATCH * L3_PHASE0_BATCHES
    p = build_pair(off, tmp, seed, L3_LAYERS, L3_BATCH, n0=n0, n1=steps * L3_BATCH, n_test=2)
    x0, y0 = p.sc.data.x_train[:n0], p.sc.data.y_train[:n0]
    order = torch.randperm(n0, generator=torch.Generator().manual_seed(seed + 7))
    with quiet():
        p.obj.beforeTrain(0)
    p.obj.train_loader = [p.official_batch(x0[i], y0[i]) for i in order.split(L3_BATCH)]  # P4
    xt, yt = p.test_set()
    p.obj.test_loader = [p.official_batch(xt, yt)]
    official_train(p, 0, 0)
    p.start = {"bank": enter_phase1(p, 0.0), "model": copy.deepcopy(p.obj.model),
               "old": copy.deepcopy(p.obj.old_model), "prototype": list(p.obj.prototype),
               "class_label": list(p.obj.class_label), "radius": p.obj.radius}
    return p


def suite_eval(net, x8, y, n_classes) -> dict:
    was = net.training
    net.eval()
    with torch.no_grad():
        logits = net(x8)[:, : 4 * n_classes]
    net.train(was)
    return {"logits": logits, "acc": float((logits[:, ::4].argmax(1) == y).float().mean())}


def level3_suite(p: Pair, steps: int) -> dict:
    from benchmark.models.base import frozen_copy

    t0 = time.process_time()
    suite_phase(p, 1)
    assert len(p.rec["x"]) == steps, (len(p.rec["x"]), steps)
    n_rows = 4 * (FG + TS)
    names = [n for n, _ in p.obj.model.named_parameters()]
    state = {k: v.clone() for k, v in suite_as_official(p.net.state_dict(), names, n_rows).items()}
    xt, yt = p.test_set()
    own = suite_eval(p.net, xt, yt, FG + TS)
    prm = p.method.ctx.params
    losses = [suite_terms(p.rec, i, prm["proto_weight"], prm["kd_weight"], 1) for i in range(steps)]
    bn = bn_window_effect(frozen_copy(p.net), p.rec["x"], p.rec["y"], xt, yt)
    return {"losses": losses, "state": state, "eval": own, "bn_window": bn, "seconds": time.process_time() - t0}


def bn_window_effect(net, xs, ys, xt, yt) -> dict:
    """The BatchNorm departure at fixed (final) weights: the run's rotated batches passed through the suite net in
    train mode once each (the suite's statistics) or twice each (the official's), then held-out eval logits."""
    from strategies.pass_plugins import rotate_batch

    out = {}
    for updates in (1, 2):
        m = copy.deepcopy(net).train()
        with torch.no_grad():
            for x, y in zip(xs, ys):
                xr = rotate_batch(x, y)[0]
                for _ in range(updates):
                    m.backbone(xr)
        out[updates] = suite_eval(m, xt, yt, FG + TS)
    return {"logits_rel": tensor_rel_diff(out[2]["logits"], out[1]["logits"]), "acc_one_update": out[1]["acc"],
            "acc_two_updates": out[2]["acc"]}


def level3_official(p: Pair, draws, reverse: bool) -> dict:
    """The official ``train(1)`` from the start state over the suite's batches (``reverse``: each batch's samples in
    reversed order, the round-off floor) with the suite's prototype draws."""
    t0 = time.process_time()
    st = p.start
    p.obj.model, p.obj.old_model = copy.deepcopy(st["model"]), copy.deepcopy(st["old"])
    p.obj.prototype, p.obj.class_label, p.obj.radius = list(st["prototype"]), list(st["class_label"]), st["radius"]
    order = torch.arange(L3_BATCH - 1, -1, -1) if reverse else None
    p.obj.train_loader = [p.official_batch(x, y, order) for x, y in zip(p.rec["x"], p.rec["y"])]  # P4
    xt, yt = p.test_set()
    p.obj.test_loader = [p.official_batch(xt, yt)]
    calls, tests = official_train(p, 1, FG, draws)
    model = p.obj.model
    model.eval()
    with torch.no_grad():
        logits = model(p.official_batch(xt, yt)[1])
    model.train()
    state = {n: q.detach().clone() for n, q in model.named_parameters()}
    return {"losses": [official_terms(c) for c in calls], "acc": tests[-1]["__return__"], "logits": logits,
            "state": state, "seconds": time.process_time() - t0}


def curve_diff(a: list, b: list) -> dict:
    """Max relative difference over the steps, per loss term."""
    assert len(a) == len(b), (len(a), len(b))
    return {k: max(rel_diff(x[k], y[k]) for x, y in zip(a, b)) for k in a[0] if k in b[0]}


def prefix_diffs(official: list, suite: list, floor: list) -> dict:
    """The total loss's max relative difference over the first n steps (suite, floor): round-off grows over a run,
    the first steps are the sharper test."""
    out = {}
    for n in sorted({1, 10, 30, len(official)}):
        if n <= len(official):
            out[n] = {"suite": curve_diff(official[:n], suite[:n])["total"],
                      "floor": curve_diff(official[:n], floor[:n])["total"]}
    return out


def param_divergence(a: dict, b: dict, start: dict) -> dict:
    """Per tensor ||a - b|| / ||a - start|| (the run's movement); the max and the global ratio."""
    per, num, den = {}, 0.0, 0.0
    for k in a:
        if k not in b:
            continue
        d = (a[k].double() - b[k].double()).norm().item()
        m = (a[k].double() - start[k].double()).norm().item()
        if m > 0:
            per[k] = d / m
            num, den = num + d * d, den + m * m
    return {"worst": worst(per), "global": (num / den) ** 0.5 if den else 0.0}


def level3(off, tmp: str, seed: int, steps: int) -> dict:
    """Level 3: the suite's phase-1 run, the official run on its batches and draws, and the official floor."""
    p = level3_start(off, tmp, seed, steps)
    suite = level3_suite(p, steps)
    print(f"pass fidelity: level 3 suite run, {steps} steps: {suite['seconds']:.0f} CPU s", file=sys.stderr)
    draws = replay_draws(p, p.start["bank"], range(steps))
    official = level3_official(p, draws, reverse=False)
    floor = level3_official(p, draws, reverse=True)
    print(f"pass fidelity: level 3 official runs: {official['seconds']:.0f} + {floor['seconds']:.0f} CPU s",
          file=sys.stderr)
    start = {n: q.detach() for n, q in p.start["model"].named_parameters()}
    return {"steps": steps, "batch": L3_BATCH, "layers": L3_LAYERS,
            "loss": curve_diff(official["losses"], suite["losses"]),
            "loss_floor": curve_diff(official["losses"], floor["losses"]),
            "loss_total_by_prefix": prefix_diffs(official["losses"], suite["losses"], floor["losses"]),
            "params": param_divergence(official["state"], suite["state"], start),
            "params_floor": param_divergence(official["state"], floor["state"], start),
            "acc": {"official": official["acc"], "suite": suite["eval"]["acc"], "floor": floor["acc"]},
            "logits": {"suite": tensor_rel_diff(official["logits"], suite["eval"]["logits"]),
                       "floor": tensor_rel_diff(official["logits"], floor["logits"])},
            "bn_window": suite["bn_window"],
            "final_loss": {"official": official["losses"][-1]["total"], "suite": suite["losses"][-1]["total"]},
            "seconds": {"suite": suite["seconds"], "official": official["seconds"], "floor": floor["seconds"]}}


# ------------------------------------------------------------------------------------------------ rows
def _row(commit, level, compared, max_diff, tol, verdict_, note, details) -> Row:
    return Row("pass", level, REPOSITORY, commit, compared, float(max_diff), float(tol), verdict_, note, details,
               [list(x) for x in PATCHES])


def _g(x: float) -> str:
    return f"{x:.1e}"


def rows_level1(r: dict, commit: str) -> list[Row]:
    rows = []
    for ph, what in (("p0", "phase 0: L_ce on the rotated batch (= total)"),
                     ("p1", "phase 1: L_ce, L_protoAug, L_kd, total")):
        terms = r[ph]["terms"]
        name, d = worst(terms)
        note = ", ".join(f"{k} {_g(v['rel'])}" for k, v in terms.items())
        details = {"terms": terms}
        if ph == "p0":
            details["level0_mapped_models"] = r["level0"]
        rows.append(_row(commit, 1, f"{what} of one step", d, LOSS_RTOL, verdict(d, LOSS_RTOL),
                         f"worst {name}; {note}", details))
    b = r["brightness"]
    dep = "departs on purpose" if b["loss_rel"] > LOSS_RTOL else "identical"
    rows.append(_row(commit, 1, "brightness jitter: PIL uint8 (official) vs float (suite), effect on a phase-0 loss",
                     b["loss_rel"], LOSS_RTOL, dep,
                     f"official pixels {_g(b['pixel_diff_min'])}..{_g(b['pixel_diff_max'])} (mean "
                     f"{_g(b['pixel_diff_mean'])}) from the suite's, same factors; the phase-0 CE of the batch moves "
                     f"by {_g(b['loss_rel'])} relative; undocumented in the suite, described in {DOCS}", b))
    return rows


def step_row(r: dict, phase: int, commit: str) -> Row:
    st = r[f"p{phase}"]["step"]
    (gname, g), (aname, a) = st["grad_worst"], st["adam_worst"]
    tol = max(GRAD_RTOL, FLOOR_FACTOR * st["floor"])
    d = max(g, a)
    ok = st["optimizer_equal"]
    note = (f"gradients: worst {gname} {_g(g)} (official floor, same batch in reversed sample order: "
            f"{_g(st['floor'])}; tolerance max({GRAD_RTOL:g}, {FLOOR_FACTOR:g}x floor)); parameters after Adam: "
            f"{_g(a)} of the step unexplained by the gradient difference ({aname}; {st['adam_sign_flips']} of "
            f"{st['n_elements']} elements left out, their g + wd w changed sign; max |dp| where |g + wd w| > 1e-5: "
            f"{_g(st['adam_settled_dp_worst'][1])} of the step beyond 1 ulp; common step_change_rel_diff "
            f"{_g(st['common_step_change_worst'][1])}); same fresh {st['optimizer']}: {ok}")
    details = {k: v for k, v in st.items()}
    return _row(commit, 2, f"phase {phase}: gradients of {st['n_tensors']} tensors, parameters after one Adam step",
                d, tol, verdict(d, tol) if ok else "differs", note, details)


def rows_level2(r: dict, lrs: dict, l3: dict | None, commit: str) -> list[Row]:
    rows = [step_row(r, 0, commit), step_row(r, 1, commit)]
    pr = r["proto"]
    d = max(worst(pr["prototypes"])[1], pr["radius"]["rel"])
    rows.append(_row(commit, 2, "prototypes and radius: protoSave vs phase_features + PrototypeBank.update", d,
                     LOSS_RTOL, verdict(d, LOSS_RTOL), f"prototypes {_g(worst(pr['prototypes'])[1])}, radius "
                     f"{_g(pr['radius']['rel'])} (same weights and images)", pr))
    rows.append(bn_row(r["bn"], l3, commit))
    rows.append(lr_row(lrs, commit))
    return rows


def bn_row(bn: dict, l3: dict | None, commit: str) -> Row:
    name, d = bn["worst"]
    e = bn["eval_effect"]
    note = (f"official = suite + one more momentum update with the same batch statistics (max abs err "
            f"{_g(bn['one_more_update_max_abs_err'])}), num_batches_tracked {bn['num_batches_tracked_official_suite']}"
            f"; losses and gradients unaffected; eval mode after this step, official weights with the suite's "
            f"buffers: held-out logits {_g(e['logits_rel'])} relative, accuracy {e['acc_official_buffers']:.2f} -> "
            f"{e['acc_suite_buffers']:.2f}")
    if l3:
        w = l3["bn_window"]
        note += (f"; at the final weights of the {l3['steps']}-step level-3 run, its batches accumulated with two "
                 f"updates a step instead of one: logits {_g(w['logits_rel'])}, accuracy {w['acc_one_update']:.2f} "
                 f"-> {w['acc_two_updates']:.2f}")
    note += f"; undocumented in the suite, described in {DOCS}"
    details = dict(bn, level3_window=None if l3 is None else l3["bn_window"])
    return _row(commit, 2, "phase 1: BatchNorm running statistics after one step (official: 2 forwards)", d,
                LOSS_RTOL, "departs on purpose" if d > LOSS_RTOL else "identical", note, details)


def lr_row(lrs: dict, commit: str) -> Row:
    o, s = lrs["official"], lrs["suite"]
    d = max(rel_diff(a, b) for a, b in zip(o, s))

    def changes(v):
        return [e for e in range(1, len(v)) if v[e] != v[e - 1]]

    note = (f"StepLR(45, 0.1) over {lrs['epochs']} epochs: official decays at 0-based epochs {changes(o)} "
            f"(scheduler.step() before each epoch), suite at {changes(s)} (after each epoch); summed lr "
            f"{_g(rel_diff(sum(o), sum(s)))} relative apart; undocumented in the suite, described in {DOCS}")
    return _row(commit, 2, "learning rate of every epoch of a 101-epoch phase (both real loops)", d, 0.0,
                "departs on purpose" if d > 0 else "identical", note, dict(lrs, changes_official=changes(o),
                                                                         changes_suite=changes(s)))


def row_level3(l3: dict, commit: str) -> Row:
    loss, loss_floor = l3["loss"]["total"], l3["loss_floor"]["total"]
    par, par_floor = l3["params"]["worst"][1], l3["params_floor"]["worst"][1]
    tol = max(FLOOR_FACTOR * loss_floor, LOSS_RTOL)
    ok = loss <= tol and par <= max(FLOOR_FACTOR * par_floor, GRAD_RTOL)
    ratio = (f"{loss / loss_floor:.2f}x" if loss_floor else "n/a", f"{par / par_floor:.2f}x" if par_floor else "n/a")
    pre = l3["loss_total_by_prefix"]
    early = ", ".join(f"{n}: {_g(v['suite'])} / {_g(v['floor'])}" for n, v in pre.items() if n < l3["steps"])
    a = l3["acc"]
    note = (f"{l3['steps']} phase-1 steps, ResNet(BasicBlock, {list(l3['layers'])}), {l3['batch']} images a step: "
            f"total-loss curve {_g(loss)} vs the official-vs-itself floor (each batch's samples reversed) "
            f"{_g(loss_floor)} ({ratio[0]}); first n steps, suite / floor: {early}; final parameters {_g(par)} vs "
            f"floor {_g(par_floor)} ({ratio[1]}; max over tensors of ||p_o - p|| / ||p_o - p_start||); held-out "
            f"eval logits {_g(l3['logits']['suite'])} (floor {_g(l3['logits']['floor'])}; eval mode also carries the "
            f"BatchNorm departure of the level-2 row), accuracy official "
            f"{a['official']:.2f} suite {a['suite']:.2f} floor {a['floor']:.2f}; identical = loss and parameter "
            f"divergence both within {FLOOR_FACTOR:g}x the floor's")
    return _row(commit, 3, f"{l3['steps']}-step phase-1 run: loss curves, final parameters, held-out accuracy",
                loss, tol, "identical" if ok else "differs", note, l3)


# ------------------------------------------------------------------------------------------------ entry point
def run(method: str, official: Path, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """Levels 1-2 (and 3 when ``steps`` > 0) of the suite's PASS against the official checkout ``official``."""
    if method != "pass":
        raise ValueError(f"this harness compares the suite's 'pass', not {method!r}")
    tmp = tempfile.mkdtemp(prefix="pass_fidelity_")  # afterTrain's pickled models
    t0, wall = time.process_time(), time.time()
    try:
        with official_code(Path(official)) as off:
            r = levels_1_2(off, tmp, seed)
            lrs = lr_schedules(off, tmp, seed)
            print(f"pass fidelity: levels 1-2: {time.process_time() - t0:.0f} CPU s", file=sys.stderr)
            l3 = level3(off, tmp, seed, steps) if steps > 0 else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = rows_level1(r, commit) + rows_level2(r, lrs, l3, commit)
    if l3 is not None:
        rows.append(row_level3(l3, commit))
    print(f"pass fidelity: {time.process_time() - t0:.0f} CPU s, {time.time() - wall:.0f} s wall in all",
          file=sys.stderr)
    return rows
