"""SSRE fidelity harness: the suite's ``ssre`` (``strategies/ssre_method.py``, ``ssre_plugins.py``, ``reparam.py``)
against the official code of zhukaii/SSRE (``utils/Trainer_cvpr.py``), imported at run time from ``--official DIR``
(``common.official_imports``; nothing of it is copied here).

What is compared
----------------
A toy class-incremental scenario (``Toy``: 4 base classes, 2 per later phase, 3 later phases, 4 uint8 images per
phase = one batch, held-out images of every class; images are half a class template, half noise) is run on both
sides.  Phase 0 is a stand-in for a trained one (``_stand_in_phase0``: a ResNet-18 with random BatchNorm statistics
and a nearest-class-mean classifier), written as the released base checkpoint for the official side.

* official: a ``Trainer`` built by its own ``__init__`` from the released script's flags (``train_cvpr.sh`` plus the
  parser defaults, ``_official_args``) and driven by its own ``training(session)``: session 0 on the released
  ``--val`` path (checkpoint load, ``structure_reorganization`` BN folding, ``protoSave``, ``afterTrain``), later
  sessions with the backbone rebuilt with parallel adapters, ``fix_backbone_adapter``, ``Incremental_learning``,
  Adam, StepLR, ``_compute_loss`` / backward / step, the validation every 10 epochs, ``protoSave`` and the merge;
* suite: ``SSRE`` on an Avalanche benchmark of the same images, driven by ``train_phase(k, experience, epochs)`` as
  ``benchmark/runner.py`` drives it (phase 0 as a phase-0 cache hit: 0 epochs, i.e. BN folding, adapters and the
  prototypes only; ``seed_everything`` and the generators seeded as the runner seeds them).

Levels (rows):
1. loss terms and ``s`` of the first step of phase 1 (zero adapters, as at every phase start: ``f == f_old`` and the
   distillation term is exactly 0) and of phase 2 (adapters ``N(0, 0.002^2)`` put into both sides first, so that
   ``f != f_old``); departures: the phase-0 objective, the class order;
2. for both phases the gradients of the 18 trainable tensors (16 adapters, classifier weight and bias) and the
   parameters after the Adam step; BN folding, prototypes and the adapter merge (kernels and embeddings; the merge
   also alone, both sides applied to the same pre-merge weights); departure: the classifier rows;
3. with ``steps`` > 0: phase 3 from one state, ``steps`` epochs of one batch (the phase's images, in the suite's
   order of each epoch) on each side through its own loop (StepLR(45) per epoch on both, the official validation
   every 10 epochs): the loss curves (every term), the trainable tensors at the end, the held-out logits, accuracy
   and predictions after the merge.

Identical state and draws
-------------------------
Before every later phase the official current model, previous model and prototypes (in its newest-first order) are
overwritten with the suite's through ``suite_to_official_name`` (asserted to cover every official key).  The random
draws are injected: (1) the official fresh classifier rows (``nn.Linear`` default init in ``Incremental_learning``,
after the rebuilt backbone's draws, global torch RNG) are replayed from the RNG state and copied into the suite's
head, and that state is restored right before ``training(k)``; (2) the suite's prototype indices (``torch.randint``
on its generator seeded ``seed*1000+k+700``) are replayed and forced into the official ``np.random.shuffle`` draws
(P3); (3) the suite's batch permutation of every epoch (generator seeded ``seed*1000+k``) is replayed and the
official loader yields the same batches.  Augmentation is off on both sides (the suite's ``AugmentSpec()``; the
official side gets ``Normalize(ToTensor(x))`` of the same uint8 images, its test transform): the two augmentation
pipelines draw differently (``benchmark/augment.py`` documents them).  The harness asserts that both optimisers hold
the same 18 tensors and that the drawn prototype labels agree; the pre-step parameters differ by 0.

Monkeypatches (official side only; ``PATCHES`` lists them, every row carries the list)
--------------------------------------------------------------------------------------
* P1 ``torch.nn.Module.cuda`` / ``torch.Tensor.cuda`` return ``self`` while official code runs: it calls ``.cuda()``
  unconditionally (``Trainer_cvpr.py:97,107,196,217,239,240,278``) and the machine has no GPU.
* P2 new keys ``'fidelity'`` in the official ``utils.data.datatypes`` / ``loadertypes`` dicts (nothing replaced): a
  training set that only records the requested classes, a test set serving the held-out images, and a loader
  yielding the harness's batches.  ``prepare_CL`` would download CIFAR-100; the batches must be the suite's.
* P3 ``numpy.random.shuffle`` is an injector while a later ``training(k)`` runs: ``Trainer_cvpr.py:233-237`` takes
  ``index[0]`` after each shuffle, so the injector moves the suite's drawn prototype there.
Not patched: ``torch.save`` in ``afterTrain`` (``args.dir_name`` is a temporary directory), ``torch.load`` of the
checkpoint the harness writes, tqdm and prints (captured), ``nn.CrossEntropyLoss(reduce=False)`` (its deprecation
warning silenced), the validation's ``DataLoader(num_workers=4)``.  Observation only: ``sys.setprofile`` reads the
locals of ``Trainer._compute_loss`` / ``validation`` and of the suite's criterion and loss plugins when they return
(the suite's prototype and distillation terms are re-evaluated there with the plugin's own expression on its own
tensors, rather than by subtracting running sums); global optimiser step hooks record parameters and gradients.

Compared terms, the SSRE paper (Zhu et al., CVPR 2022) and the official lines
-----------------------------------------------------------------------------
* ``s_i = max_c cos(f_i, p_c)`` over the old prototypes: Eq. 10, ``Trainer_cvpr.py:214-221``; not detached on
  either side.
* weighted CE ``mean_i CE(z_i / 0.1, y_i) (1 - s_i)``: Eq. 2 under Eq. 11's ``Mask_ce``, ``:223-225``.  The code
  weights by ``1 - s`` where the paper thresholds ``s`` at sigma = 0.8; the suite follows the code.
* distillation ``sum_i s_i ||f_i - f_old_i||_2``: Eq. 3 (main-branch distillation) under Eq. 11's ``Mask_kd``,
  ``:227-228``; weight 1 and a sum over the batch in the code (the paper states lambda = 10).
* prototype CE ``10 CE(fc(p_j) / 0.1, c_j)`` over ``batch_size`` prototypes drawn uniformly with replacement,
  without noise: Eq. 4 (prototypes over-sampled to the batch size), gamma = 10, ``:230-242``.
* total ``L_cls + 10 L_proto + L_kd``: Eq. 5 / 11, ``:243``; Adam lr 2e-4, weight decay 5e-4, StepLR(45, 0.1) per
  epoch, ``:110-115,132-133``; one step ``:126-129``.
* BN folding: section 4.3 (re-parameterisation with BatchNorm), ``structure_reorganization`` ``:245-269``; adapters
  beside every residual 3x3 convolution: Eq. 8, ``resnet18_no1.py:21-36`` and ``Trainer_cvpr.py:95-104``; merge
  ``conv += pad(adapter)``: Eq. 9, ``afterTrain`` ``:199-206``; prototypes: ``protoSave`` ``:271-301``.

Verdicts and tolerances
-----------------------
Levels 1 and 2 use a float64 yardstick (``_float64_reference``: the same formula from the same state in float64, and
Adam's first step applied to its gradients): a term or tensor is ``identical`` when suite-vs-official is within
``max(LOSS_RTOL or GRAD_RTOL, 3x the official side's own float32 error against float64)`` (for the total: its terms'
absolute errors).  A suite bug cannot widen the official side's error; it matters where float32 is poorly
conditioned: at a phase start ``1 - s`` is ~3e-3 on this toy, so a one-ulp difference of ``s`` changes the CE
weights by ~1e-4 relative, and a saturated prototype CE of ~1e-5 has a float32 error of a few percent.  Parameters
after the step: Adam's first step moves an element by ``lr g / (|g| + 1e-8)``, which amplifies a gradient error where
``|g|`` is small (an element whose gradient is round-off noise moves by up to ``lr`` either way); the row compares the
elements where the amplification is at most 0.1 on both sides (``_robust_param_diff``) and counts the others
(``common.step_change_rel_diff``, whose 1 % cut keeps some of them, is in the note too).  BN folding and the merge
compare kernels and embeddings (the toy's nearest-mean logits cancel, so the embedding is the well-conditioned
function); predictions are compared too.  Each level-1/2 row also gives the official side against itself on the
reversed batch (same maths, other summation order).

Level 3 shows how float32 round-off grows over a run: the official side is also run against itself with every
weight of its current and previous model multiplied by ``1 + 2^-23 xi`` (``xi ~ N(0, 1)``, the same for both models
so that ``f == f_old`` still holds at the start; about one float32 ulp), the *round-off floor*.  The floor grows over
the run (Adam normalises gradients element by element, so an element whose gradient is round-off noise moves by up
to ``lr`` each step, and the distillation term, a sum of norms of small embedding changes, follows), so a level-3
row is ``identical`` when at every step ``t`` suite-vs-official is within 3x the floor's largest value up to ``t``
(at least ``LOSS_RTOL`` / ``GRAD_RTOL``; ``_envelope``), ``differs`` otherwise: a bug shows in the first steps, where
the floor is still ~1e-6, and a late divergence is judged against the late floor.  The loss-curve row checks every
term at every step and shows the step closest to its tolerance; the parameter row checks the trainable tensors'
worst ``norm(a - b) / norm(a)`` after steps 1, 2, 5, 10, 25, 50 and the last, and requires the elementwise maximum
and the held-out logits after the run to be within 3x their floors.

Departures reported as rows (measured here): phase 0 (PASS's recipe instead of the released checkpoint), class order
(the suite's PASS order vs the released script's natural order), the classifier rows of new and unseen classes.  The
others are described in ``docs/fidelity-pass-ssre.md`` (section SSRE).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import io
import re
import sys
import tempfile
import warnings
from argparse import Namespace
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.training.templates.base_sgd import BaseSGDTemplate
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from benchmark.augment import AugmentSpec
from benchmark.data import ArrayData
from benchmark.methods import METHODS, MethodContext
from benchmark.models import build_model
from benchmark.models.base import frozen_copy
from benchmark.profiles import PROFILES
from benchmark.scenarios import Scenario, ScenarioSpec, class_order
from benchmark.training import materialize, seed_everything
from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_terms, compare_tensors, official_imports,
                                        rel_diff, step_change_rel_diff, tensor_rel_diff, verdict, worst)
from strategies.pass_plugins import PrototypeAugmentationPlugin, TemperatureCE, rotate_batch
from strategies.reparam import adapters, merge_adapters
from strategies.ssre_method import SSRE
from strategies.ssre_plugins import SelectionDistillationPlugin, SelectionWeightedCE

REPOSITORY = "zhukaii/SSRE"
PATCHES: list[tuple[str, str]] = [
    ("P1: torch.nn.Module.cuda and torch.Tensor.cuda return self while official code runs",
     "the official code calls .cuda() unconditionally (Trainer_cvpr.py:97,107,196,217,239,240,278); no GPU here"),
    ("P2: new keys 'fidelity' in utils.data.datatypes / utils.data.loadertypes (nothing replaced): a training set "
     "recording the requested classes, a test set of the harness's held-out images, a loader of the harness's "
     "batches",
     "no CIFAR-100 files (prepare_CL downloads them), and both sides must see the same batches"),
    ("P3: numpy.random.shuffle replaced by an injector while a later-phase training(k) runs",
     "inject the suite's prototype draws: Trainer_cvpr.py:233-237 takes index[0] after each shuffle"),
]
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)  # both sides' CIFAR-100 statistics
ADAM_EPS = 1e-8  # torch.optim.Adam's default eps (both sides)
ADAM_AMPLIFICATION = 0.1  # level 2 compares the step where it turns a gradient error into at most 0.1x its size
FLOOR_EPS = 2.0 ** -23  # level-3 round-off floor: relative weight perturbation, about one float32 ulp
FLOOR_FACTOR = 3.0  # identical within this factor of the official error (levels 1-2: vs float64; 3: the floor)


@dataclass(frozen=True)
class Toy:
    """The toy scenario: ``base`` classes in phase 0, ``way`` per later phase (3 later phases), ``batch`` images per
    phase (= one batch = the official ``args.batch_size`` = prototype draws per step)."""

    base: int = 4
    way: int = 2
    batch: int = 4
    test_per_class: int = 2
    adapter_std: float = 0.002  # adapters put into both sides before phase 2 (embeddings move by ~5 %)

    @property
    def n_classes(self) -> int:
        return self.base + 3 * self.way

    def seen(self, k: int) -> int:
        return self.base + self.way * k


# ------------------------------------------------------------------------------------------------------------------
# patches and observation
@contextlib.contextmanager
def _cpu_cuda():
    """P1."""
    m, t = torch.nn.Module.cuda, torch.Tensor.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.nn.Module.cuda, torch.Tensor.cuda = m, t


@contextlib.contextmanager
def _shuffle_injection(positions: list[int]):
    """P3: the i-th ``np.random.shuffle(index)`` puts ``positions[i]`` first."""
    orig, state = np.random.shuffle, {"i": 0}

    def shuffle(lst):
        j = lst.index(positions[state["i"]])
        state["i"] += 1
        lst[0], lst[j] = lst[j], lst[0]

    np.random.shuffle = shuffle
    try:
        yield state
    finally:
        np.random.shuffle = orig


@contextlib.contextmanager
def _quiet():
    """Official prints and tqdm bars (and the ``reduce=`` deprecation warning) are captured, not shown."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        warnings.filterwarnings("ignore", message="size_average and reduce args will be deprecated")
        yield buf


def _snap(v):
    return v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v)


class _Tracer:
    """``sys.setprofile``: per step, the official loss terms at ``_compute_loss``'s return, the official validation
    accuracy, and the suite's terms as its criterion and loss plugins return (observation only)."""

    def __init__(self, codes: dict):
        self.codes = codes
        self.reset()

    def reset(self):
        self.off, self.suite, self.val, self._cur = [], [], [], {}

    def __call__(self, frame, event, arg):
        if event not in ("call", "return"):
            return
        tag = self.codes.get(frame.f_code)
        if tag is not None:
            getattr(self, "_" + tag)(frame.f_locals, event, arg)

    def _off(self, loc, event, arg):
        if event == "return" and "loss_kd" in loc:
            rec = {k: _snap(loc[k]) for k in ("loss_cls", "loss_kd", "loss_protoAug", "cos_dist", "proto_aug_label")}
            rec["total"] = arg.detach().clone()
            self.off.append(rec)

    def _val(self, loc, event, arg):
        if event == "return":
            self.val.append(float(arg))

    def _ce(self, loc, event, arg):
        if event == "return":
            s = loc["s"]
            self._cur.update(ce=arg.detach().clone(), s=None if s is None else s.detach().clone())

    def _pa(self, loc, event, arg):
        if event == "return" and "c" in loc:
            me = loc["self"]
            with torch.no_grad():  # the plugin's own expression on its own tensors: the term it added
                self._cur["pa"] = me.weight * F.cross_entropy(me.head(loc["p"]) / me.t, loc["c"] * me.scale)
            self._cur["proto_labels"] = loc["c"].clone()

    def _kd(self, loc, event, arg):
        if event == "return" and "dist" in loc:
            with torch.no_grad():
                self._cur["kd"] = loc["self"].weight * (loc["dist"] * loc["s"]).sum()

    def _bw(self, loc, event, arg):
        if event == "call":
            self._cur["total"] = loc["self"].loss.detach().clone()
            self.suite.append(self._cur)
            self._cur = {}

    @contextlib.contextmanager
    def on(self):
        sys.setprofile(self)
        try:
            yield self
        finally:
            sys.setprofile(None)


class _StepRecorder:
    """Global optimiser step hooks: for the watched model, the first and the last step's parameters before, gradients
    and parameters after, by parameter name, and the parameters after the steps numbered in ``keep`` (from 1)."""

    def __init__(self):
        self.model, self.first, self.last, self.on_post = None, None, None, None
        self.keep, self.snaps, self.n = set(), {}, 0
        self._handles = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]

    def watch(self, model_fn, on_post=None, keep=()):
        self.model, self.first, self.last, self.on_post = model_fn, None, None, on_post
        self.keep, self.snaps, self.n = set(keep), {}, 0

    def stop(self) -> dict:
        """Stops watching; the first and last records and the kept parameters."""
        self.model, self.on_post = None, None
        return {"first": self.first, "last": self.last, "snaps": self.snaps}

    def close(self):
        for h in self._handles:
            h.remove()

    def _params(self, opt):
        names = {id(p): n for n, p in self.model().named_parameters()}
        return [(names[id(p)], p) for g in opt.param_groups for p in g["params"]]

    def _pre(self, opt, *a):
        if self.model is None:
            return
        ps = self._params(opt)
        self.last = {"pre": {n: p.detach().clone() for n, p in ps},
                     "grad": {n: p.grad.detach().clone() for n, p in ps if p.grad is not None},
                     "lr": opt.param_groups[0]["lr"], "wd": opt.param_groups[0]["weight_decay"],
                     "type": type(opt).__name__}

    def _post(self, opt, *a):
        if self.model is None:
            return
        self.last["post"] = {n: p.detach().clone() for n, p in self._params(opt)}
        self.first = self.first or self.last
        self.n += 1
        if self.n in self.keep:
            self.snaps[self.n] = self.last["post"]
        if self.on_post:
            self.on_post()


# ------------------------------------------------------------------------------------------------------------------
# state-dict mapping suite <-> official
def suite_to_official_name(k: str) -> str | None:
    """The official ``my_model`` key of a suite key (converted network, or the unconverted one for the checkpoint);
    None for keys with no official counterpart (input normalisation buffers, BN batch counters)."""
    if k.startswith("backbone.normalize.") or k.endswith("num_batches_tracked"):
        return None
    if k.startswith("head."):
        return "classifier.fc." + k[5:]
    m = re.fullmatch(r"backbone\.stem\.([01])\.(\w+)", k)
    if m:  # stem conv (folded: with bias) or its BN (unconverted: the checkpoint's bn1)
        return ("backbone.conv1." if m.group(1) == "0" else "backbone.bn1.") + m.group(2)
    m = re.fullmatch(r"backbone\.stages\.(\d+)\.(\d+)\.(.+)", k)
    if not m:
        raise KeyError(k)
    rest = re.sub(r"^shortcut\.([01])\.", r"downsample.\1.", m.group(3))
    rest = re.sub(r"^(conv[12])\.(weight)$", r"\1.conv.\2", rest)  # unconverted conv -> conv_block.conv
    rest = re.sub(r"^bn([12])\.", r"conv\1.bn.", rest)  # unconverted BN -> conv_block.bn (checkpoint only)
    return f"backbone.layer{int(m.group(1)) + 1}.{m.group(2)}.{rest}"


def suite_to_official_state(sd: dict, off_keys, n_rows: int, head_rows=None) -> dict:
    out = {}
    for k, v in sd.items():
        nk = suite_to_official_name(k)
        if nk is None:
            continue
        if k.startswith("head."):
            v = (v[head_rows] if head_rows is not None else v)[:n_rows]
        if off_keys is None or nk in off_keys:
            out[nk] = v.detach().clone()
    if off_keys is not None:
        missing = set(off_keys) - set(out)
        assert not missing, f"official keys not covered by the mapping: {sorted(missing)[:5]}"
    return out


def _load_into_official(model, suite_module) -> None:
    keys = model.state_dict().keys()
    model.load_state_dict(suite_to_official_state(suite_module.state_dict(), keys, model.classifier.fc.out_features))


def _official_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """``Normalize(ToTensor(x))``: the official test transform (``utils/data/para.py``)."""
    mean, std = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    return x_uint8.float().div(255).sub_(mean).div_(std)


def _perturb(models, seed: int, eps: float = FLOOR_EPS) -> None:
    """Level-3 floor: every floating weight multiplied by ``1 + eps * xi`` (float64, then rounded), the same ``xi``
    for the same key of every model in ``models``."""
    g = torch.Generator().manual_seed(7919 + seed)
    ref = models[0].state_dict()
    xi = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in ref.items() if v.is_floating_point()}
    with torch.no_grad():
        for m in models:
            for k, v in m.state_dict().items():
                if k in xi:
                    v.copy_((v.double() * (1 + eps * xi[k])).to(v.dtype))


# ------------------------------------------------------------------------------------------------------------------
# data and the official side's fakes (P2)
def _make_data(toy: Toy, seed: int):
    """uint8 class-template images (half template, half noise): phase 0 ``batch`` images of the base classes, each
    later phase ``batch`` images of its classes; ``test_per_class`` held-out images of every class."""
    g = torch.Generator().manual_seed(1234 + seed)
    templates = torch.rand((toy.n_classes, 3, 32, 32), generator=g)

    def images(labels):
        noise = torch.rand((len(labels), 3, 32, 32), generator=g)
        return ((0.5 * templates[labels] + 0.5 * noise) * 255).round().to(torch.uint8)

    ys = [torch.arange(toy.batch) % toy.base]
    ys += [toy.seen(k - 1) + torch.arange(toy.batch) % toy.way for k in (1, 2, 3)]
    y_train = torch.cat(ys)
    y_test = torch.arange(toy.n_classes).repeat(toy.test_per_class)
    return images(y_train), y_train, images(y_test), y_test


class _FakeTrain:
    def getTrainData(self, classes):
        self.classes = classes


class _FakeTest(torch.utils.data.Dataset):
    """The held-out images as the official validation reads them: ``(index, image, label)``."""

    def __init__(self, x, y):
        self.x_all, self.y_all = _official_input(x), y
        self.getTestData_up2now([0, int(y.max()) + 1])

    def getTestData_up2now(self, classes):
        keep = (self.y_all >= classes[0]) & (self.y_all < classes[1])
        self.x, self.y = self.x_all[keep], self.y_all[keep]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return i, self.x[i], int(self.y[i])


class _Loader:
    """The official train loader: epoch ``e`` yields ``batches[e]`` (``protoSave``'s pass after the last epoch
    reuses the last batch)."""

    def __init__(self, batches):
        self.batches, self.epoch = batches, 0

    def __iter__(self):
        b = self.batches[min(self.epoch, len(self.batches) - 1)]
        self.epoch += 1
        return iter([b])


def _official_args(toy: Toy, tmp: str, ckpt: str) -> Namespace:
    """``train_cvpr.sh``'s flags and ``train_cvpr.py``'s parser defaults (the parser lives inside ``main()``), with
    the toy's classes, batch and the P2 keys; ``new_epochs`` is set per phase."""
    return Namespace(
        data_dir=tmp, dataset_name="CIFAR100", dataset_type="fidelity", loader_type="fidelity", base_class=toy.base,
        way=toy.way, shot=5, orders=None, orders_path="", no_order=True, model_name="my", model_path=ckpt,
        pretrained=False, backbone_name="resnet18_no1", init_fic="None", batch_task=3, embedding=64, latent_dim=512,
        classifier="fc_IL_base", mode="normal", base_train="base", no_cuda=True, cudnn=True, gpu_ids="0",
        loss_type="ce", loss_weight=1, seed=1993, session=4, base_epochs=60, new_epochs=1, batch_size=toy.batch,
        batch_size_test=256, lr=0.001, lr_new=0.0002, lr_scheduler="step", no_lr_scheduler=False,
        lr_coefficient=[1, 1, 1, 1], momentum=0.9, weight_decay=5e-4, nesterov=False, opt="opt1", optim="adam",
        eval_interval=1, val=True, checkname="my-IL", alpha=0.75, cuda=False, tasks=3, all_class=toy.n_classes,
        dir_name=tmp)


@torch.no_grad()
def _stand_in_phase0(net, x, y, base: int) -> None:
    """A "trained" phase-0 network for the toy: random BatchNorm statistics and affine parameters, and as unrotated
    classifier rows ``4c`` the nearest-class-mean rule on the phase-0 images' embeddings, centred
    (``w_c = a (mu_c - mean_c mu_c)``, ``b_c = -a (|mu_c|^2 - mean_c |mu_c|^2) / 2``) and scaled to unit logit spread,
    so that old classes are recognised and held-out accuracy is not trivial."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
    net.eval()
    f = net.backbone(x)
    mu = torch.stack([f[y == c].mean(0) for c in range(base)])
    sq = mu.pow(2).sum(1)
    w, b = mu - mu.mean(0), -(sq - sq.mean()) / 2
    a = 1 / (f @ w.t() + b).std()
    net.head.weight[0:4 * base:4] = a * w
    net.head.bias[0:4 * base:4] = a * b
    net.train()


# ------------------------------------------------------------------------------------------------------------------
class _Harness:
    """Both sides of the toy scenario, kept in step (one instance per ``run``)."""

    def __init__(self, toy: Toy, seed: int, tmp: str):
        self.toy, self.seed, self.tmp = toy, seed, tmp
        self.off_T = importlib.import_module("utils.Trainer_cvpr")
        self.off_data = importlib.import_module("utils.data")
        self.off_backbones = importlib.import_module("utils.model").backbones
        self._build_suite()
        self._build_official()
        self.tracer = _Tracer({self.off_T.Trainer._compute_loss.__code__: "off",
                               self.off_T.Trainer.validation.__code__: "val",
                               SelectionWeightedCE.forward.__code__: "ce",
                               PrototypeAugmentationPlugin.before_backward.__code__: "pa",
                               SelectionDistillationPlugin.before_backward.__code__: "kd",
                               BaseSGDTemplate.backward.__code__: "bw"})
        self.recorder = _StepRecorder()

    def _build_suite(self):
        toy, n = self.toy, self.toy.n_classes
        self.x_train, self.y_train, self.x_test, self.y_test = _make_data(toy, self.seed)
        spec = ScenarioSpec("fidelity", "fidelity", n, None, AugmentSpec(), MEAN, STD)
        data = ArrayData("fidelity", self.x_train, self.y_train, self.x_test, self.y_test,
                         [str(c) for c in range(n)], "synthetic")
        scenario = Scenario(spec, data, list(range(n)), [toy.base, toy.way, toy.way, toy.way], 0)
        self.bench = scenario.benchmark
        base_r, inc_r = PROFILES.get("paper").recipes("ssre")
        base_r, inc_r = replace(base_r, batch_size=toy.batch), replace(inc_r, batch_size=toy.batch)
        torch.manual_seed(self.seed)
        self.net = build_model("resnet18", n * SSRE.outputs_per_class, 3, MEAN, STD)
        _stand_in_phase0(self.net, self.x_train[:toy.batch], self.y_train[:toy.batch], toy.base)
        ctx = MethodContext(self.net, scenario, lambda k: base_r if k == 0 else inc_r, dict(METHODS.entry("ssre").extra["defaults"]),
                            torch.device("cpu"), self.seed)
        self.method = SSRE(ctx)
        self.recipes = (base_r, inc_r)

    def _build_official(self):
        self._batches = [None]
        test_set = _FakeTest(self.x_test, self.y_test)
        self.off_data.datatypes["fidelity"] = lambda name, args: [_FakeTrain(), test_set]
        self.off_data.loadertypes["fidelity"] = lambda dataset, args: _Loader(self._batches)
        assert self.off_T.datatypes is self.off_data.datatypes and self.off_T.loadertypes is self.off_data.loadertypes
        # the released base checkpoint, made from the suite's unconverted phase-0 network (PASS head: rows ::4)
        ckpt = str(Path(self.tmp) / "base_checkpoint.pth")
        torch.save({"state_dict": suite_to_official_state(self.net.state_dict(), None, self.toy.base,
                                                          head_rows=slice(None, None, 4))}, ckpt)
        self.args = _official_args(self.toy, self.tmp, ckpt)
        with _cpu_cuda(), _quiet():
            self.trainer = self.off_T.Trainer(self.args)

    # -- driving both sides ------------------------------------------------------------------------------------
    def official_run(self, trainer, k: int, batches, positions, rng, epochs: int, keep=()) -> dict:
        """``trainer.training(k)`` through its own loop with the injected batches, draws and RNG state."""
        self._batches[:] = batches
        trainer.args.new_epochs = epochs
        torch.set_rng_state(rng)
        self.tracer.reset()
        self.recorder.watch(lambda: trainer.model, keep=keep)
        with _cpu_cuda(), _shuffle_injection(positions) as sh, self.tracer.on(), _quiet():
            trainer.training(k)
        rec = self.recorder.stop()
        assert sh["i"] == len(positions), f"official drew {sh['i']} prototypes, expected {len(positions)}"
        return {**rec, "terms": list(self.tracer.off), "val": list(self.tracer.val)}

    def suite_run(self, k: int, epochs: int, on_post=None, keep=()) -> dict:
        """``SSRE.train_phase(k)`` as the runner calls it (generator seeded ``seed*1000+k``)."""
        self.method.suite_plugin.generator.manual_seed(self.seed * 1000 + k)
        self.tracer.reset()
        self.recorder.watch(lambda: self.net, on_post, keep)
        with self.tracer.on(), _quiet():
            self.method.train_phase(k, self.bench.train_stream[k], epochs)
        return {**self.recorder.stop(), "terms": list(self.tracer.suite)}

    def sync_state(self, k: int, inject_adapters: bool) -> None:
        """Official current model, previous model and prototypes := the suite's (optionally with random adapters
        put into the suite first)."""
        if inject_adapters:
            gen = torch.Generator().manual_seed(99 + k + 100 * self.seed)
            with torch.no_grad():
                for a in adapters(self.net):
                    a.adapter.weight.copy_(torch.randn(a.adapter.weight.shape, generator=gen) * self.toy.adapter_std)
        tr = self.trainer
        _load_into_official(tr.model, self.net)
        _load_into_official(tr.old_model, self.method.old.model)
        tr.prototype = np.stack([self.method.bank.means[int(c)].numpy() for c in tr.class_label]).astype(np.float32)

    def draws(self, k: int, epochs: int):
        """The suite's batch permutations and prototype draws of ``epochs`` one-batch epochs, replayed; the official
        positions (in its newest-first prototype list) of the drawn classes."""
        seed_everything(self.seed * 1000 + k)  # as the runner does before a phase
        xk, yk = materialize(self.bench.train_stream[k].dataset)
        gb = torch.Generator().manual_seed(self.seed * 1000 + k)
        perms = [torch.randperm(len(yk), generator=gb) for _ in range(epochs)]
        gp = torch.Generator().manual_seed(self.seed * 1000 + k + 700)
        _, labels = self.method.bank.matrix()
        n = self.method.proto_aug.n
        want = torch.cat([labels[torch.randint(0, len(labels), (n,), generator=gp)] for _ in range(epochs)])
        order = np.asarray(self.trainer.class_label)
        positions = [int(np.flatnonzero(order == int(c))[0]) for c in want]
        batches = [(p, _official_input(xk[p]), yk[p]) for p in perms]
        return {"x": xk, "y": yk, "perms": perms, "batches": batches, "positions": positions, "labels": want}

    def fresh_rows(self, k: int):
        """Replays the official fresh classifier rows from the global RNG (the rebuilt backbone draws first, then
        ``Incremental_learning``'s ``nn.Linear``), restores the state, copies the rows into the suite's head."""
        rng = torch.get_rng_state()
        self.off_backbones[self.args.backbone_name](mode="parallel_adapters")
        fresh = torch.nn.Linear(512, self.toy.seen(k), bias=True)
        torch.set_rng_state(rng)
        lo, hi = self.toy.seen(k - 1), self.toy.seen(k)
        with torch.no_grad():
            self.net.head.weight[lo:hi] = fresh.weight[lo:]
            self.net.head.bias[lo:hi] = fresh.bias[lo:]
        return rng

    def suite_logits(self, module, n: int):
        with torch.no_grad():
            return module(self.x_test)[:, :n]

    def official_logits(self, model):
        with torch.no_grad():
            return model(_official_input(self.x_test))

    def suite_embed(self, module):
        with torch.no_grad():
            return module.backbone(self.x_test)

    def official_embed(self, model):
        with torch.no_grad():
            return model.feature_extractor(_official_input(self.x_test))


# ------------------------------------------------------------------------------------------------------------------
# phase 0: released checkpoint + BN folding (official) vs phase-0 cache hit + to_ssre (suite)
def _phase0(h: _Harness) -> dict:
    toy, exp0 = h.toy, h.bench.train_stream[0]
    seed_everything(h.seed * 1000)
    x0, y0 = materialize(exp0.dataset)
    perm0 = torch.randperm(len(y0), generator=torch.Generator().manual_seed(h.seed * 1000 + 500))
    h._batches[:] = [(perm0, _official_input(x0[perm0]), y0[perm0])]  # the suite's prototype-pass order
    unconverted = frozen_copy(h.net)
    with _cpu_cuda(), _quiet():
        h.trainer.training(0)
    h.method.suite_plugin.generator.manual_seed(h.seed * 1000)
    with _quiet():
        h.method.train_phase(0, exp0, 0)  # runner.py on a phase-0 cache hit: the end-of-phase work only
    off_sd, su_sd = h.trainer.model.state_dict(), h.net.state_dict()
    convs = [k for k in su_sd if not k.startswith("head.") and suite_to_official_name(k) in off_sd]
    folded = {k: tensor_rel_diff(off_sd[suite_to_official_name(k)], su_sd[k]) for k in convs}
    with torch.no_grad():
        bn_eval = frozen_copy(unconverted).eval().backbone(h.x_test)
    off_protos = {int(c): torch.from_numpy(np.asarray(p)) for c, p in zip(h.trainer.class_label, h.trainer.prototype)}
    out = {"folded_kernels": worst(folded)[1], "folded_tensors": len(folded),
           "head_rows": tensor_rel_diff(off_sd["classifier.fc.weight"], su_sd["head.weight"][:toy.base]),
           "folded_embeddings": tensor_rel_diff(h.official_embed(h.trainer.model), h.suite_embed(h.net)),
           "folded_vs_bn_eval_embeddings": tensor_rel_diff(bn_eval, h.suite_embed(h.net)),
           "same_predictions": bool((h.official_logits(h.trainer.model).argmax(1)
                                     == h.suite_logits(h.net, toy.base).argmax(1)).all()),
           "prototypes": tensor_rel_diff(torch.stack([off_protos[c] for c in range(toy.base)]),
                                         torch.stack([h.method.bank.means[c] for c in range(toy.base)])),
           "trainable": sorted(n for n, p in h.net.named_parameters() if p.requires_grad),
           "bn_left": any(isinstance(m, torch.nn.BatchNorm2d) for m in h.net.modules())}
    base = h.y_test < toy.base  # the objective on held-out images of the base classes (not fitted by the head)
    out.update(_phase0_loss(h, unconverted, h.x_test[base], h.y_test[base]))
    return out


def _phase0_loss(h: _Harness, unconverted, x0, y0) -> dict:
    """The phase-0 objective: official ``CE(z / 0.1, y)`` (``Trainer_cvpr.py:209-212``, the path the released
    script skips with ``--val``) and the suite's criterion without prototypes on the same folded network; then the
    suite's real phase 0 (PASS: rotated 4B batch, labels 4y+k, BN in train mode) on the unconverted network."""
    t0 = copy.copy(h.trainer)
    t0.old_model = None
    with _cpu_cuda(), torch.no_grad():
        off = t0._compute_loss(_official_input(x0), y0)
    no_protos = SelectionWeightedCE(_NoSelection(), 0.1)
    with torch.no_grad():
        su = no_protos(h.net(x0)[:, :h.toy.base], y0)
        rx, ry = rotate_batch(x0.float() / 255, y0)
        net = frozen_copy(unconverted).train()
        net.head.active = 4 * h.toy.base
        su_rot = TemperatureCE(0.1)(net(rx), ry)
    return {"phase0_formula": rel_diff(float(off), float(su)), "phase0_official_ce": float(off),
            "phase0_suite_pass_loss": float(su_rot)}


class _NoSelection:
    """The suite's selection with an empty prototype bank (phase 0): ``s() is None``."""

    @staticmethod
    def s():
        return None


# ------------------------------------------------------------------------------------------------------------------
# levels 1 and 2: one later-phase step
def _float64_reference(h: _Harness, k: int, xb, yb, proto_labels) -> dict:
    """The step's terms and gradients in float64 from the same state, by the formula both sides implement: the
    yardstick that tells float32 round-off (both sides about equally far from it) from a real difference."""
    act, bank = h.toy.seen(k), h.method.bank
    m, old = frozen_copy(h.net).double(), frozen_copy(h.method.old.model).double()
    for n, p in m.named_parameters():
        p.requires_grad_("adapter" in n or n.startswith("head."))
    x = xb.double() / 255

    def embed(model):
        bb = model.backbone
        return torch.flatten(bb.pool(bb.body(bb.normalize(x))[-1]), 1)

    protos = torch.stack([bank.means[c] for c in bank.classes]).double()
    f = embed(m)
    s = (F.normalize(f, dim=1) @ F.normalize(protos, dim=1).t()).max(1).values
    ce = (F.cross_entropy(F.linear(f, m.head.weight[:act], m.head.bias[:act]) / 0.1, yb, reduction="none")
          * (1 - s)).mean()
    with torch.no_grad():
        f_old = embed(old)
    kd = (s * (f - f_old).norm(dim=1)).sum()
    p = protos[[bank.classes.index(int(c)) for c in proto_labels]]
    pa = 10 * F.cross_entropy(F.linear(p, m.head.weight[:act], m.head.bias[:act]) / 0.1, proto_labels)
    total = ce + pa + kd
    total.backward()
    grads = {n: (q.grad[:act] if n.startswith("head.") else q.grad) for n, q in m.named_parameters()
             if q.requires_grad}
    return {"s": s.detach(), "grad": grads, **{k: v.item() for k, v in
                                               (("ce", ce), ("pa", pa), ("kd", kd), ("total", total))}}


def _new_rows_effect(h: _Harness, k: int, xb, yb, proto_labels) -> dict:
    """Departure of the classifier rows: the step's CE and prototype terms (suite code path pieces, same state) with
    the official fresh rows of the new classes vs with those rows at 0 (what the suite's sliced head carries into a
    phase after phase 0's Adam + weight decay: ~1e-15, ``benchmark/models/base.py``)."""
    lo, hi = h.toy.seen(k - 1), h.toy.seen(k)
    net = frozen_copy(h.net)
    net.head.active = hi
    protos, labels = h.method.bank.matrix()
    p = protos[[labels.tolist().index(int(c)) for c in proto_labels]]
    out = {}
    with torch.no_grad():
        f = net.backbone(xb)
        s = (F.normalize(f, dim=1) @ F.normalize(protos, dim=1).t()).max(1).values
        for name in ("official_rows", "zero_rows"):
            if name == "zero_rows":
                net.head.weight[lo:hi] = 0
                net.head.bias[lo:hi] = 0
            ce = (F.cross_entropy(net.head(f) / 0.1, yb, reduction="none") * (1 - s)).mean()
            out[name] = {"ce": float(ce), "proto": float(10 * F.cross_entropy(net.head(p) / 0.1, proto_labels))}
    return out


def _later_phase(h: _Harness, k: int, inject_adapters: bool) -> dict:
    """One step of phase k on both sides from one state (and the official step again on the reversed batch: the
    official-vs-official floor), the float64 reference, the merge, the prototypes."""
    h.sync_state(k, inject_adapters)
    d = h.draws(k, 1)
    p = d["perms"][0]
    rev = [(p.flip(0), _official_input(d["x"][p.flip(0)]), d["y"][p.flip(0)])]
    twin = copy.deepcopy(h.trainer)
    rng = h.fresh_rows(k)  # last: nothing may draw from the global RNG between the replay and training(k)
    ref = _float64_reference(h, k, d["x"][p], d["y"][p], d["labels"])
    rows = _new_rows_effect(h, k, d["x"][p], d["y"][p], d["labels"]) if k == 1 else None
    off = h.official_run(h.trainer, k, d["batches"], d["positions"], rng, 1)
    off_merged, off_premerge = h.trainer.model, h.trainer.old_model  # afterTrain: old = pre-merge copy
    floor = h.official_run(twin, k, rev, d["positions"], rng, 1)
    floor["terms"][0]["cos_dist"] = floor["terms"][0]["cos_dist"].flip(0)  # back to the main batch's order
    snap = {}
    su = h.suite_run(k, 1, on_post=lambda: snap.__setitem__("premerge", frozen_copy(h.net)))
    assert off["terms"][0]["proto_aug_label"].tolist() == su["terms"][0]["proto_labels"].tolist()
    res = {"k": k, "act": h.toy.seen(k), "off": off, "floor": floor, "suite": su, "ref": ref, "new_rows": rows,
           "adapters": "N(0, %g^2)" % h.toy.adapter_std if inject_adapters else "zero (phase start)"}
    res["merge"] = _merge_checks(h, k, off_merged, off_premerge, snap["premerge"])
    return res


def _merge_checks(h: _Harness, k: int, off_merged, off_premerge, su_premerge) -> dict:
    """The merge alone (official ``afterTrain`` and the suite's ``merge_adapters`` on the same pre-merge weights),
    each side's function before vs after its merge, the networks and predictions after the phase, the new
    prototypes."""
    act = h.toy.seen(k)
    kernels = [n for n in h.net.state_dict() if ".conv1.conv." in n or ".conv2.conv." in n]
    t2 = copy.copy(h.trainer)
    t2.model = copy.deepcopy(off_merged)
    _load_into_official(t2.model, su_premerge)
    with _cpu_cuda(), _quiet():
        t2.afterTrain(k)
    su_alone = frozen_copy(su_premerge)
    merge_adapters(su_alone)
    m_su, m_off = su_alone.state_dict(), t2.model.state_dict()
    off_protos = {int(c): torch.from_numpy(np.asarray(p)) for c, p in zip(h.trainer.class_label, h.trainer.prototype)}
    new = range(h.toy.seen(k - 1), act)
    su_logits, off_logits = h.suite_logits(h.net, act), h.official_logits(off_merged)
    off_f, su_f = h.official_embed(off_merged), h.suite_embed(h.net)
    return {"merge_alone_kernels": max(tensor_rel_diff(m_off[suite_to_official_name(n)], m_su[n]) for n in kernels),
            "official_before_vs_after": tensor_rel_diff(h.official_embed(off_premerge), off_f),
            "suite_before_vs_after": tensor_rel_diff(h.suite_embed(su_premerge), su_f),
            "merged_embeddings": tensor_rel_diff(h.official_embed(t2.model), h.suite_embed(su_alone)),
            "embeddings_after_phase": tensor_rel_diff(off_f, su_f),
            "logits_after_phase": tensor_rel_diff(off_logits, su_logits),
            "same_predictions": bool((off_logits.argmax(1) == su_logits.argmax(1)).all()),
            "adapters_zero": max(a.adapter.weight.abs().max().item() for a in adapters(h.net)) == 0.0,
            "new_prototypes": tensor_rel_diff(torch.stack([off_protos[c] for c in new]),
                                              torch.stack([h.method.bank.means[c] for c in new]))}


def _official_terms(t: dict) -> dict:
    return {"weighted CE": t["loss_cls"], "distillation": t["loss_kd"], "prototype CE x10": 10 * t["loss_protoAug"],
            "total": t["total"]}


def _suite_terms(t: dict) -> dict:
    return {"weighted CE": t["ce"], "distillation": t.get("kd", torch.tensor(0.0)),
            "prototype CE x10": t["pa"], "total": t["total"]}


def _loss_compare(r: dict) -> dict:
    ot, st, ft = r["off"]["terms"][0], r["suite"]["terms"][0], r["floor"]["terms"][0]
    ref = r["ref"]
    ref_terms = {"weighted CE": ref["ce"], "distillation": ref["kd"], "prototype CE x10": ref["pa"],
                 "total": ref["total"]}
    terms = compare_terms({k: float(v) for k, v in _official_terms(ot).items()},
                          {k: float(v) for k, v in _suite_terms(st).items()})
    for name, t in terms.items():
        t["floor_rel"] = rel_diff(float(_official_terms(ot)[name]), float(_official_terms(ft)[name]))
        t["suite_vs_f64"] = rel_diff(t["suite"], ref_terms[name])
        t["official_vs_f64"] = rel_diff(t["official"], ref_terms[name])
    parts = [t for name, t in terms.items() if name != "total"]
    for name, t in terms.items():
        t["tolerance"] = max(LOSS_RTOL, FLOOR_FACTOR * t["official_vs_f64"])
    tot = terms["total"]  # the sum inherits its terms' errors: their absolute bound, relative to the total
    bound = sum(t["official_vs_f64"] * abs(t["official"]) for t in parts) / (abs(tot["official"]) or 1.0)
    tot["tolerance"] = max(tot["tolerance"], FLOOR_FACTOR * bound)
    e_o = tensor_rel_diff(ref["s"], ot["cos_dist"])
    terms["s"] = {"rel": tensor_rel_diff(ot["cos_dist"], st["s"]), "floor_rel": tensor_rel_diff(ot["cos_dist"],
                                                                                                 ft["cos_dist"]),
                  "official_vs_f64": e_o, "suite_vs_f64": tensor_rel_diff(ref["s"], st["s"]),
                  "tolerance": max(LOSS_RTOL, FLOOR_FACTOR * e_o), "min_1_minus_s": float((1 - ot["cos_dist"]).min())}
    return terms


def _mapped(r: dict):
    """Suite name -> official name of the trainable tensors, and the suite's tensors cut to the seen classes."""
    act = r["act"]
    ss, so = r["suite"]["last"], r["off"]["last"]
    n2o = {n: suite_to_official_name(n) for n in ss["pre"]}
    assert set(n2o.values()) == set(so["pre"]), set(n2o.values()) ^ set(so["pre"])

    def cut(n, t):
        return t[:act] if n.startswith("head.") else t

    return n2o, cut


def _grad_compare(r: dict) -> dict:
    """Per trainable tensor: suite vs official, each side vs float64, the official floor (reversed batch), and the
    per-tensor tolerance ``max(GRAD_RTOL, 3 e_official)`` (the official side's own float32 error: a suite bug cannot
    widen it)."""
    n2o, cut = _mapped(r)
    ss, so, fo = r["suite"]["last"], r["off"]["last"], r["floor"]["last"]
    per = {}
    for n, o in n2o.items():
        gs, go = cut(n, ss["grad"][n]), so["grad"][o]
        e_s, e_o = tensor_rel_diff(r["ref"]["grad"][n], gs), tensor_rel_diff(r["ref"]["grad"][n], go)
        per[n] = {"rel": tensor_rel_diff(go, gs), "suite_vs_f64": e_s, "official_vs_f64": e_o,
                  "floor_rel": tensor_rel_diff(go, fo["grad"][o]), "tolerance": max(GRAD_RTOL, FLOOR_FACTOR * e_o)}
    pre = max(tensor_rel_diff(so["pre"][o], cut(n, ss["pre"][n])) for n, o in n2o.items())
    return {"per_tensor": per, "pre_step_state": pre, "optimisers": {
        "official": [so["type"], so["lr"], so["wd"], len(so["pre"])],
        "suite": [ss["type"], ss["lr"], ss["wd"], len(ss["pre"])]}}


def _robust_param_diff(one: list, two: list, wd: float, ref_post=None) -> dict:
    """Parameters after Adam's first step (``one``, ``two``: [pre, grad, post] of the two sides), relative to the
    tensor's largest value, over the elements where the step is well conditioned on both sides; the elements left
    out; with ``ref_post`` (the float64 step) each side's own error over the same elements.

    The first step moves an element by ``lr g / (|g| + eps)`` (``g`` with the coupled weight decay); a gradient error
    ``d`` of the tensor's scale (``d ~ r max|g|``, ``r`` the relative gradient difference) changes it by ``lr eps d /
    (|g| (|g| + eps))``, i.e. the relative error ``r`` is amplified by ``a = eps max|g| / (|g| (|g| + eps))``.  The
    comparison keeps the elements with ``a <= ADAM_AMPLIFICATION`` on both sides (``|g|`` above ~1 % of the
    largest for ``max|g| ~ 1e-3``); the others, whose step is dominated by round-off, are counted."""
    (pre, grad, post), (pre2, grad2, post2) = one, two
    g1, g2 = (grad + wd * pre).double().abs(), (grad2 + wd * pre2).double().abs()
    gmax = max(g1.max().item(), g2.max().item())
    mask = ((ADAM_EPS * gmax / (g1 * (g1 + ADAM_EPS)) <= ADAM_AMPLIFICATION)
            & (ADAM_EPS * gmax / (g2 * (g2 + ADAM_EPS)) <= ADAM_AMPLIFICATION))
    scale = max(post.abs().max().item(), post2.abs().max().item()) or 1.0

    def err(a, b):
        return (a.double() - b.double()).abs()[mask].max().item() / scale if mask.any() else 0.0

    d = (post.double() - post2.double()).abs()
    out = {"rel": err(post, post2), "excluded": int((~mask).sum()),
           "excluded_max_abs": d[~mask].max().item() if (~mask).any() else 0.0}
    if ref_post is not None:
        out.update(first_vs_f64=err(post, ref_post), second_vs_f64=err(post2, ref_post))
    return out


def _adam_first_step64(pre, grad64, lr: float, wd: float):
    """Adam's first step from fresh state in float64 (``m_hat = g``, ``v_hat = g^2``): ``p - lr g / (|g| + eps)``
    with the coupled weight decay ``g = grad + wd p``."""
    g = grad64.double() + wd * pre.double()
    return pre.double() - lr * g / (g.abs() + ADAM_EPS)


def _param_compare(r: dict) -> dict:
    n2o, cut = _mapped(r)
    ss, so, fo = r["suite"]["last"], r["off"]["last"], r["floor"]["last"]
    per, wd = {}, so["wd"]
    for n, o in n2o.items():
        a = [so["pre"][o], so["grad"][o], so["post"][o]]
        ref = _adam_first_step64(so["pre"][o], r["ref"]["grad"][n], so["lr"], wd)
        per[n] = _robust_param_diff(a, [cut(n, ss[x][n]) for x in ("pre", "grad", "post")], wd, ref)
        per[n]["official_vs_f64"], per[n]["suite_vs_f64"] = per[n].pop("first_vs_f64"), per[n].pop("second_vs_f64")
        per[n]["tolerance"] = max(GRAD_RTOL, FLOOR_FACTOR * per[n]["official_vs_f64"])
        per[n]["floor_rel"] = _robust_param_diff(a, [fo[x][o] for x in ("pre", "grad", "post")], wd)["rel"]
    suite_after = {o: cut(n, ss["post"][n]) for n, o in n2o.items()}
    scd = step_change_rel_diff(so["pre"], so["post"], suite_after)
    unseen = ss["post"]["head.weight"][r["act"]:] - ss["pre"]["head.weight"][r["act"]:]
    return {"per_tensor": per, "step_change_rel_diff": scd, "lr": so["lr"],
            "suite_unseen_rows_moved": unseen.abs().max().item() if unseen.numel() else 0.0}


# ------------------------------------------------------------------------------------------------------------------
# level 3: a short run of one phase on both sides, and the official side against its perturbed self
def _level3(h: _Harness, steps: int) -> dict:
    k = 3
    h.sync_state(k, inject_adapters=False)  # a real phase start: merged adapters (0), old model = current model
    d = h.draws(k, steps)
    twin = copy.deepcopy(h.trainer)
    _perturb([twin.model, twin.old_model], h.seed)
    rng = h.fresh_rows(k)
    keep = sorted({t for t in (1, 2, 5, 10, 25, 50) if t <= steps} | {steps})
    off = h.official_run(h.trainer, k, d["batches"], d["positions"], rng, steps, keep)
    floor = h.official_run(twin, k, d["batches"], d["positions"], rng, steps, keep)
    su = h.suite_run(k, steps, keep=keep)
    assert len(off["terms"]) == len(su["terms"]) == len(floor["terms"]) == steps
    labels = torch.cat([t["proto_labels"] for t in su["terms"]])
    assert labels.tolist() == torch.cat([t["proto_aug_label"] for t in off["terms"]]).tolist()
    res = {"steps": steps, "curves": _curves(off, su, floor), "act": h.toy.seen(k)}
    res["params"] = _final_params(res, off, su, floor)
    res["heldout"] = _heldout(h, h.trainer.model, twin.model, off["val"], floor["val"])
    res["lr_last"] = {"official": off["last"]["lr"], "suite": su["last"]["lr"]}
    return res


def _curves(off: dict, su: dict, floor: dict) -> dict:
    """Per loss term: the largest relative difference over the run's steps, suite vs official and floor."""
    out = {}
    for name in ("weighted CE", "distillation", "prototype CE x10", "total"):
        o = [float(_official_terms(t)[name]) for t in off["terms"]]
        s = [float(_suite_terms(t)[name]) for t in su["terms"]]
        f = [float(_official_terms(t)[name]) for t in floor["terms"]]
        rs, rf = [rel_diff(a, b) for a, b in zip(o, s)], [rel_diff(a, b) for a, b in zip(o, f)]
        out[name] = {"rel": max(rs), "floor_rel": max(rf), "worst_step": int(np.argmax(rs)),
                     "official_first_last": [o[0], o[-1]], "suite_first_last": [s[0], s[-1]],
                     "per_step": rs, "floor_per_step": rf, "official": o}
    return out


def _final_params(res: dict, off: dict, su: dict, floor: dict) -> dict:
    """The trainable tensors after the kept steps (before the merge): per step, the worst tensor's ``norm(a - b) /
    norm(a)`` (the divergence of the trained weights), suite vs official and floor; after the last step also
    ``max|a - b| / max|a|`` (``common.compare_tensors``: dominated by the elements whose Adam steps were decided by
    round-off)."""
    r = {"act": res["act"], "suite": su, "off": off}
    n2o, cut = _mapped(r)

    def l2(x, y):
        return {k: ((x[k].double() - y[k].double()).norm() / (x[k].double().norm() or 1.0)).item() for k in x}

    steps, rel, flo = sorted(off["snaps"]), [], []
    for t in steps:
        a = {o: off["snaps"][t][o] for o in n2o.values()}
        b = {o: cut(n, su["snaps"][t][n]) for n, o in n2o.items()}
        c = {o: floor["snaps"][t][o] for o in n2o.values()}
        rel.append(worst(l2(a, b))[1])
        flo.append(worst(l2(a, c))[1])
    per = {k: [v, l2(a, c)[k]] for k, v in l2(a, b).items()}  # after the last step
    return {"steps": steps, "l2": rel, "l2_floor": flo, "worst_last": worst(l2(a, b))[0],
            "max": worst(compare_tensors(a, b)), "max_floor": worst(compare_tensors(a, c)), "per_tensor_l2": per}


def _envelope(series: list, floor: list, atol: float) -> dict:
    """Suite-vs-official against the floor *so far*: at step t the tolerance is ``max(3 max_{t' <= t} floor(t'),
    atol)``; the step where the series is largest relative to it, with its value and tolerance."""
    env = np.maximum.accumulate(np.asarray(floor, dtype=float))
    tol = np.maximum(FLOOR_FACTOR * env, atol)
    t = int(np.argmax(np.asarray(series, dtype=float) / tol))
    return {"index": t, "value": float(series[t]), "tolerance": float(tol[t])}


def _heldout(h: _Harness, off_model, floor_model, off_val: list, floor_val: list) -> dict:
    """After the phase (adapters merged): logits and accuracy on the held-out images of every class, the suite's
    through ``SSRE.scores`` (the runner's evaluation), the official as ``Trainer.validation`` computes them."""
    h.net.eval()
    with torch.no_grad():
        su = next(iter(h.method.scores(h.x_test).values()))
    h.net.train()
    off, flo = h.official_logits(off_model), h.official_logits(floor_model)
    y = h.y_test

    def acc(z):
        return float((z.argmax(1) == y).float().mean())

    return {"logits_rel": tensor_rel_diff(off, su), "logits_floor_rel": tensor_rel_diff(off, flo),
            "accuracy": {"official": acc(off), "suite": acc(su), "floor": acc(flo)},
            "predictions_agree": {"suite": float((off.argmax(1) == su.argmax(1)).float().mean()),
                                  "floor": float((off.argmax(1) == flo.argmax(1)).float().mean())},
            "official_validation_accuracy": off_val[-1:] + floor_val[-1:], "n_images": len(y),
            "predicted_class_counts": {"official": torch.bincount(off.argmax(1), minlength=off.shape[1]).tolist(),
                                       "suite": torch.bincount(su.argmax(1), minlength=su.shape[1]).tolist()}}


# ------------------------------------------------------------------------------------------------------------------
# rows
def _row_loss(r: dict) -> tuple:
    t = _loss_compare(r)
    n, mx, tol, _, bad = _worst_within(t)
    floor = max(v["floor_rel"] for v in t.values())
    f64 = max(max(v["suite_vs_f64"], v["official_vs_f64"]) for v in t.values())
    note = (f"adapters {r['adapters']}: weighted CE {t['weighted CE']['rel']:.1e}, distillation "
            f"{t['distillation']['rel']:.1e} (value {t['distillation']['official']:.4g}), prototype "
            f"{t['prototype CE x10']['rel']:.1e}, total {t['total']['rel']:.1e}, s {t['s']['rel']:.1e} "
            f"(min 1-s {t['s']['min_1_minus_s']:.1e}); official vs itself on the reversed batch <= {floor:.1e}; "
            f"each side vs float64 <= {f64:.1e}; tolerance max({LOSS_RTOL:.0e}, {FLOOR_FACTOR:g}x the official "
            f"side's own error vs float64), {len(bad)} terms above it")
    compared = f"phase {r['k']}, first step: loss terms and s (Eq. 2/3/4/10/11; Trainer_cvpr.py:214-243)"
    return 1, compared, mx, tol, verdict(mx, tol) if not bad else "differs", note, t


def _worst_within(per: dict) -> tuple:
    """The tensor with the largest suite-vs-official difference, its tolerance, the tensors above ``GRAD_RTOL`` and
    those above their own tolerance."""
    n = max(per, key=lambda k: per[k]["rel"])
    above = [k for k, v in per.items() if v["rel"] > GRAD_RTOL]
    bad = [k for k, v in per.items() if v["rel"] > v["tolerance"]]
    return n, per[n]["rel"], per[n]["tolerance"], above, bad


def _row_grads(r: dict) -> tuple:
    g = _grad_compare(r)
    per = g["per_tensor"]
    n, mx, tol, above, bad = _worst_within(per)
    note = (f"adapters {r['adapters']}: worst {n} {mx:.1e} (official vs float64 {per[n]['official_vs_f64']:.1e}, "
            f"suite vs float64 {per[n]['suite_vs_f64']:.1e}); {len(above)} of {len(per)} tensors above "
            f"{GRAD_RTOL:.0e}, {len(bad)} above max({GRAD_RTOL:.0e}, {FLOOR_FACTOR:g}x the official side's own float32 "
            f"error vs float64); official vs itself on the reversed batch <= "
            f"{max(v['floor_rel'] for v in per.values()):.1e}; pre-step state differs by {g['pre_step_state']:.1e}")
    v = verdict(mx, tol) if not bad else "differs"
    return 2, f"phase {r['k']}, first step: gradients of the 18 trainable tensors", mx, tol, v, note, g


def _row_params(r: dict) -> tuple:
    pc = _param_compare(r)
    per = pc["per_tensor"]
    n, mx, tol, above, bad = _worst_within(per)
    excl = sum(v["excluded"] for v in per.values())
    scd = worst(pc["step_change_rel_diff"])
    note = (f"Adam's first step lr g/(abs(g)+1e-8) amplifies a gradient error where g is small: over the elements "
            f"where it amplifies by <= {ADAM_AMPLIFICATION:g} on both sides: worst {n} {mx:.1e} (official vs the "
            f"float64 step {per[n]['official_vs_f64']:.1e}, suite {per[n]['suite_vs_f64']:.1e}); {len(bad)} of "
            f"{len(per)} tensors above max({GRAD_RTOL:.0e}, {FLOOR_FACTOR:g}x the official error); official vs itself "
            f"{max(v['floor_rel'] for v in per.values()):.1e}; {excl} elements left out (amplified more; each moves by "
            f"up to lr = {pc['lr']:g} either way), abs diff there <= "
            f"{max(v['excluded_max_abs'] for v in per.values()):.1e}; common.step_change_rel_diff {scd[1]:.1e}; "
            f"suite head rows of unseen classes moved by {pc['suite_unseen_rows_moved']:.1e} (see classifier rows)")
    v = verdict(mx, tol) if not bad else "differs"
    return 2, f"phase {r['k']}: parameters after one Adam step (lr 2e-4, wd 5e-4)", mx, tol, v, note, pc


def _row_fold_merge(p0: dict, phases: dict) -> tuple:
    direct = {f"phase0 {k}": p0[k] for k in ("folded_kernels", "head_rows", "folded_embeddings",
                                                 "folded_vs_bn_eval_embeddings", "prototypes")}
    for k, r in phases.items():
        m = r["merge"]
        direct.update({f"phase{k} {n}": m[n] for n in ("merge_alone_kernels", "official_before_vs_after",
                                                         "suite_before_vs_after", "merged_embeddings")})
    name, mx = worst(direct)
    inherited = {f"phase{k} {n}": r["merge"][n] for k, r in phases.items()
                 for n in ("embeddings_after_phase", "logits_after_phase", "new_prototypes", "same_predictions",
                           "adapters_zero")}
    inherited["phase0 same_predictions"] = p0["same_predictions"]
    alone = max(r["merge"]["merge_alone_kernels"] for r in phases.values())
    same = p0["same_predictions"] and all(r["merge"]["same_predictions"] for r in phases.values())
    m2 = phases[2]["merge"]
    note = (f"BN folding (structure_reorganization vs reparam.fold_batchnorm, {p0['folded_tensors']} tensors) "
            f"{p0['folded_kernels']:.1e}, folded embeddings {p0['folded_embeddings']:.1e}; merge alone (afterTrain "
            f"vs merge_adapters on the same weights) {alone:.1e}; embeddings before vs after the merge: official "
            f"{m2['official_before_vs_after']:.1e}, suite {m2['suite_before_vs_after']:.1e}; worst {name}; same "
            f"predictions after phases 0, 1, 2: {same}")
    details = {"direct": direct, "after_phase": inherited, "trainable_after_conversion": p0["trainable"],
               "batchnorm_left": p0["bn_left"]}
    compared = "BN folding, prototypes, adapter merge (Eq. 8/9; Trainer_cvpr.py:199-206,245-301)"
    return 2, compared, mx, GRAD_RTOL, verdict(mx, GRAD_RTOL), note, details


def _row_phase0(p0: dict) -> tuple:
    mx = rel_diff(p0["phase0_official_ce"], p0["phase0_suite_pass_loss"])
    note = ("the suite trains phase 0 with PASS's recipe (rotation CE(z/0.1, 4y+k) on 4B images, BN in train mode, "
            "Adam 1e-3, wd 2e-4, batch 64, 101 epochs) where the released script loads a checkpoint (--val; the "
            "base-training code is not released; its non-val path is CE(z/0.1, y), wd 5e-4, 60 epochs); same net "
            f"and held-out base-class batch: PASS loss {p0['phase0_suite_pass_loss']:.4g} vs official CE "
            f"{p0['phase0_official_ce']:.4g}; "
            f"the formula without rotation agrees to {p0['phase0_formula']:.1e} (ssre_method.py docstring, README)")
    details = {k: p0[k] for k in ("phase0_formula", "phase0_official_ce", "phase0_suite_pass_loss")}
    return (1, "phase 0: objective (PASS recipe vs released checkpoint)", mx, LOSS_RTOL,
            verdict(mx, LOSS_RTOL, "phase 0 = PASS's"), note, details)


def _row_class_order() -> tuple:
    suite, sizes = class_order(100, 1993), [50] + [5] * 10  # the released script: --no_order, base 50, way 5
    bounds = np.cumsum([0] + sizes)
    shared = [len(set(suite[a:b]) & set(range(a, b))) for a, b in zip(bounds[:-1], bounds[1:])]
    mx = 1 - sum(shared) / 100
    note = (f"released script --no_order: natural CIFAR-100 order; the suite: PASS's np.random.seed(1993) "
            f"permutation for every method (README; the SSRE paper says it follows PASS's order). Of the 10-phase "
            f"split, phase 0 shares {shared[0]} of 50 classes, the later phases {sum(shared[1:])} of 50; "
            f"--class-order-seed natural gives the released order (docs/fidelity-pass-ssre.md)")
    return (1, "class order (CIFAR-100, 10 phases)", mx, 0.0, verdict(mx, 0.0, "suite-wide PASS order"), note,
            {"shared_per_experience": shared})


def _row_classifier(r1: dict, pc1: dict) -> tuple:
    e = r1["new_rows"]
    ce = rel_diff(e["official_rows"]["ce"], e["zero_rows"]["ce"])
    pa = rel_diff(e["official_rows"]["proto"], e["zero_rows"]["proto"])
    mx = max(ce, pa)
    note = (f"new-class rows: official fresh nn.Linear init, suite the rows its full-size sliced head carries "
            f"(~0 after phase 0, benchmark/models/base.py); phase-1 first step with 0 rows instead of the official "
            f"ones: weighted CE {ce:.1e}, prototype CE {pa:.1e} relative (everywhere else the harness gives the suite "
            f"the official rows). Unseen-class rows are in the suite's Adam (coupled wd): moved by "
            f"{pc1['suite_unseen_rows_moved']:.1e} here (random rows), ~0 in a run; never in the seen logits "
            f"(docs/fidelity-pass-ssre.md)")
    return (2, "classifier rows of new / unseen classes", mx, GRAD_RTOL, verdict(mx, GRAD_RTOL, "sliced head"),
            note, e)


def _row_curves(l3: dict) -> tuple:
    c = l3["curves"]
    env = {k: _envelope(v["per_step"], v["floor_per_step"], LOSS_RTOL) for k, v in c.items()}
    name = max(env, key=lambda k: env[k]["value"] / env[k]["tolerance"])
    e = env[name]
    note = (f"{l3['steps']} one-batch epochs, each side's own loop (StepLR 45: last lr official "
            f"{l3['lr_last']['official']:g}, suite {l3['lr_last']['suite']:g}); closest to its tolerance: {name} at "
            f"step {e['index'] + 1}. Over the run, suite vs official (floor): "
            + ", ".join(f"{k} {v['rel']:.1e} ({v['floor_rel']:.1e})" for k, v in c.items())
            + f". Floor = official vs official with weights x(1 + 2^-23 xi); it grows over the run (Adam normalises "
              f"round-off gradients to steps of up to lr); tolerance at step t: {FLOOR_FACTOR:g}x the floor's maximum "
              f"up to t")
    compared = f"phase 3, {l3['steps']} steps: loss curves (every term) vs the round-off floor"
    return 3, compared, e["value"], e["tolerance"], verdict(e["value"], e["tolerance"]), note, {
        "curves": c, "envelope": env}


def _row_run_params(l3: dict) -> tuple:
    p, ho = l3["params"], l3["heldout"]
    e = _envelope(p["l2"], p["l2_floor"], GRAD_RTOL)
    acc = ho["accuracy"]
    steps = ", ".join(f"{t}: {a:.1e} ({b:.1e})" for t, a, b in zip(p["steps"], p["l2"], p["l2_floor"]))
    note = (f"trainable tensors, worst norm(a-b)/norm(a) after steps {steps} (floor in brackets); closest to its "
            f"tolerance after step {p['steps'][e['index']]}; after the last: max abs(a-b)/max abs(a) "
            f"{p['max'][1]:.1e} (floor {p['max_floor'][1]:.1e}); held-out logits after the merge "
            f"{ho['logits_rel']:.1e} (floor {ho['logits_floor_rel']:.1e}); accuracy on {ho['n_images']} held-out "
            f"images official {acc['official']:.3f}, suite {acc['suite']:.3f}, floor {acc['floor']:.3f} (toy: phases "
            f"1-2 had one step); predictions agree {ho['predictions_agree']['suite']:.3f} (floor "
            f"{ho['predictions_agree']['floor']:.3f})")
    others_ok = (ho["logits_rel"] <= max(FLOOR_FACTOR * ho["logits_floor_rel"], GRAD_RTOL)
                 and p["max"][1] <= max(FLOOR_FACTOR * p["max_floor"][1], GRAD_RTOL))
    v = verdict(e["value"], e["tolerance"]) if others_ok else "differs"
    compared = f"phase 3, {l3['steps']} steps: parameters, held-out logits and accuracy vs the floor"
    return 3, compared, e["value"], e["tolerance"], v, note, {"params": p, "heldout": ho, "envelope": e}


def _rows_level3(l3: dict) -> list[tuple]:
    return [_row_curves(l3), _row_run_params(l3)]


# ------------------------------------------------------------------------------------------------------------------
def run(method: str, official: Path, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """Levels 1 and 2 (and 3 when ``steps`` > 0) of ``method`` (``ssre``) against the official checkout."""
    if method != "ssre":
        raise ValueError(f"this harness compares 'ssre', not {method!r}")
    official = Path(official)
    if not (official / "utils" / "Trainer_cvpr.py").is_file():
        raise FileNotFoundError(f"{official} is not a checkout of {REPOSITORY} (no utils/Trainer_cvpr.py)")
    with official_imports(official, "utils"), tempfile.TemporaryDirectory(prefix="ssre_fidelity_") as tmp:
        h = _Harness(Toy(), seed, tmp)
        try:
            p0 = _phase0(h)
            phases = {k: _later_phase(h, k, inject_adapters=(k == 2)) for k in (1, 2)}
            l3 = _level3(h, steps) if steps > 0 else None
        finally:
            h.recorder.close()
    params = [_row_params(phases[k]) for k in (1, 2)]
    specs = [_row_loss(phases[1]), _row_loss(phases[2]), _row_phase0(p0), _row_class_order(),
             _row_grads(phases[1]), params[0], _row_grads(phases[2]), params[1], _row_fold_merge(p0, phases),
             _row_classifier(phases[1], params[0][6])]
    if l3 is not None:
        specs += _rows_level3(l3)
    patches = [[what, why] for what, why in PATCHES]
    return [Row(method, level, REPOSITORY, commit, compared, float(mx), float(tol), v, note, _plain(details),
                patches) for level, compared, mx, tol, v, note, details in specs]


def _plain(x):
    """Details as JSON-friendly numbers, strings, lists and dicts."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if torch.is_tensor(x):
        return x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, (np.generic,)):
        return x.item()
    return x
