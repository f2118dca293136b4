"""DFAD fidelity harness: the suite's ``dfad`` (``strategies/dfkd/generative.py`` ``DFAD``, ``DFADGenerator`` of
``benchmark/models/generators.py``) against the official code of VainF/Data-Free-Adversarial-Distillation
(``DFAD_mnist.py``, ``DFAD_cifar.py``, ``network/``), imported at run time from ``--official DIR``.

What is compared
----------------
MNIST (the official ``run_mnist.sh`` recipe; the suite's ``paper``/``mnist`` profile defaults for ``dfad``: nz 100,
Adam betas (0.9, 0.999), SGD 0.01 / momentum 0.9 / wd 1e-4, no schedule): LeNet-5 teacher -> LeNet-5-half student,
``GeneratorA`` (ngf 8), batch 8, random weights.  One official ``train()`` iteration (``DFAD_mnist.py:20-49``): five
student steps ``L1(S(x), T(x))`` on fresh generator samples, ``x`` detached (lines 25-34: the paper's imitation
stage, the mean absolute error of the logits), then one generator step ``-L1(S(x), T(x))`` (lines 36-46: the
generation stage maximises the same discrepancy), SGD and Adam as ``DFAD_mnist.py:150-151``.  The suite runs
``student_loss`` + the runner's SGD step (``benchmark/dfkd_runner.py:173,204-214``) five times and then
``synthesize`` (``generative.py`` ``GenerativeMethod.synthesize``), i.e. in the official order.

1. Loss terms: the five student losses and the generator loss.
2. Gradients of the student at each of the five steps and the SGD updates (``step_change_rel_diff``); the
   generator's gradients (the conv biases that feed a BatchNorm left out: their exact gradient is 0, both sides hold
   round-off; their size is in the details) and its Adam update (over the elements whose gradient is well above
   Adam's eps: ``rgal_official.adam_step_diff``); the generator's BN running statistics after the iteration.
3. With ``steps`` > 0: ``steps`` iterations (``5 steps`` student steps and ``steps`` generator steps) from one
   state, the official ``train()`` with ``epoch_itrs = steps``: the loss curves (every step's loss, in order) and the
   final student and generator (the BN-fed conv biases left out), against the round-off floor (the official code
   against itself with every student weight and buffer times ``1 + 2^-23 xi``; ``identical`` when both are within
   3x the floor); the note gives where the curves first part by more than 1e-3 and the agreement before the floor
   parts (this small adversarial game is chaotic: the floor reaches ~1e-1 within 50 iterations).  The first row runs
   the suite with ``step_order="student_first"`` (DFAD's order: five student steps, then the generator step); the
   second with the default ``"synthesis_first"`` (the generator step first, CMI's ``datafree_kd.py`` order, in which
   the suite runs every generator method: a documented departure, D2), measured over the losses before the floor
   parts, and over the whole run.  Both drive the method in the order the runner takes from ``method.student_first``.

Optional (``FIDELITY_DFAD_CIFAR=resnet18`` or ``resnet34`` in the environment): the same levels 1-2 for CIFAR-10
(``DFAD_cifar.py``: ResNet-34/18_8x teacher -> ResNet-18_8x student, nz 256, SGD 0.1 / wd 5e-4), with the suite's
documented options that reproduce it (``g_student_mode="train"``: the student in train mode during the generator
step; ``g_betas=[0.9, 0.999]``): random ResNets with calibrated BN statistics.  Train-mode BatchNorm on batch 8 at
lr 0.1 amplifies round-off 10-100x a step on both sides, so level 2 compares the first student step (the later
ones in the details, next to the official float32 code's own distance from its float64 run).

Identical states and draws
--------------------------
The official models (default initialisation from one seed) are mapped into the suite's (``lenet_o2s``,
``resnet8x_o2s``, ``dfadgen_o2s``; every suite key covered; the suite generator's ``mean``/``std`` buffers are the
official normalisation constants, which are also the suite's MNIST scenario's).  The ``z`` of every step is drawn
by the harness and served in the official order to both sides (official: ``torch.randn`` replaced while
``train()`` runs; suite: ``method.randn``).  Nothing else is random.  The suite's generator outputs ``x * std +
mean`` and its models normalise internally: the same function, a float32 round trip (~1 ulp) apart.

Levels 1-2 verdicts as ``rgal_official``: ``LOSS_RTOL`` / ``GRAD_RTOL``, or within 3x the official float32 code's
own error against the official code run in float64 from the same state (which includes the float32 quantisation of
the updated parameters).

Monkeypatches (official side; ``PATCHES``, in every row)
---------------------------------------------------------
P3 ``torchvision.models.utils`` alias (``network/segmentation`` imports it), P4 ``visdom`` stub (``DFAD_cifar.py``
builds a ``VisdomPlotter`` at import and logs at iteration 0), P7 ``torch.randn`` serving the injected ``z``, P10
recording-only wrappers (``Tensor.backward``, optimiser step hooks), prints captured.
"""
from __future__ import annotations

import importlib
import os
import time
from types import SimpleNamespace

import torch

from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_terms, compare_tensors, official_imports,
                                        step_change_rel_diff, verdict, worst)
from benchmarks.fidelity.rgal_official import (FLOOR_FACTOR, LossLog, adam_step_diff, curve_diff, first_above,
                                               floor_check, floor_note, import_stubs, level3_verdict, load_mapped,
                                               make_nontrivial, make_row, map_state, param_names, patched,
                                               perturb_floating, quiet, record_steps)

REPOSITORY = "VainF/Data-Free-Adversarial-Distillation"
PATCHES: list[tuple[str, str]] = [
    ("P3: sys.modules['torchvision.models.utils'] -> torch.hub.load_state_dict_from_url (torchvision >= 0.13)",
     "network/__init__.py imports network/segmentation, which imports it; no segmentation model is used"),
    ("P4: sys.modules['visdom'] stub (only when visdom is not installed)",
     "DFAD_cifar.py builds a VisdomPlotter at import and logs at iteration 0; no visdom server"),
    ("P7: torch.randn returns the injected z's (in the official order) while the official train() runs",
     "identical generator inputs on both sides"),
    ("P10: recording-only wrappers (Tensor.backward, optimiser step hooks); prints captured",
     "they record values and call the original unchanged"),
    ("S0: suite method.randn returns the same injected z's; levels 1-2 drive the suite in the official order (five "
     "student steps, then the generator step); level 3 in the order its step_order gives (dfkd_runner.py's round)",
     "identical inputs and states; the default order's difference (D2) is measured in its own row"),
]
B, NGF = 8, 8
OFFICIAL_PREFIXES = ("network", "DFAD_mnist", "DFAD_cifar", "dataloader", "utils", "dataset")
BN_FED_BIASES = ("block1.0.bias", "block2.0.bias")  # generator conv biases feeding a BatchNorm (per channel)


def lenet_o2s(k: str) -> str | None:
    for a, b in (("conv1.", "backbone.conv1.0."), ("conv2.", "backbone.conv2.0."), ("conv3.", "backbone.conv3.0."),
                 ("fc1.", "backbone.fc.0."), ("fc2.", "head.")):
        if k.startswith(a):
            return b + k[len(a):]
    return None


def resnet8x_o2s(k: str) -> str | None:
    if k.startswith("conv1."):
        return "backbone.stem.0." + k[6:]
    if k.startswith("bn1."):
        return "backbone.stem.1." + k[4:]
    if k.startswith("layer"):
        return f"backbone.stages.{int(k[5]) - 1}." + k.split(".", 1)[1]
    if k.startswith("linear."):
        return "head." + k[7:]
    return None


def dfadgen_o2s(k: str) -> str | None:
    for a, b in (("l1.0.", "l1."), ("conv_blocks0.0.", "bn0."), ("conv_blocks1.", "block1."),
                 ("conv_blocks2.", "block2.")):
        if k.startswith(a):
            return b + k[len(a):]
    return None


def build_case(kind: str, seed: int, teacher: str = "resnet18") -> SimpleNamespace:
    """The official models of one case with their state dicts, the recipe constants and the name maps."""
    import network

    torch.manual_seed(seed + 51)
    g = torch.Generator().manual_seed(seed + 50)
    if kind == "mnist":
        case = SimpleNamespace(kind=kind, module="DFAD_mnist", nz=100, nc=1, mean=(0.1307,), std=(0.3081,),
                               lr=0.01, wd=1e-4, t_name="lenet5", s_name="lenet5_half", o2s=lenet_o2s,
                               dataset="mnist")  # DFAD_mnist.py:95-99
        make_t, make_s = network.lenet.LeNet5, network.lenet.LeNet5Half
    else:
        case = SimpleNamespace(kind=kind, module="DFAD_cifar", nz=256, nc=3, mean=(0.4914, 0.4822, 0.4465),
                               std=(0.2023, 0.1994, 0.2010), lr=0.1, wd=5e-4, t_name=teacher, s_name="resnet18",
                               o2s=resnet8x_o2s, dataset="cifar10")  # DFAD_cifar.py:94-104
        t_fn = {"resnet34": network.resnet_8x.ResNet34_8x, "resnet18": network.resnet_8x.ResNet18_8x}[teacher]
        make_t, make_s = (lambda: t_fn(num_classes=10)), (lambda: network.resnet_8x.ResNet18_8x(num_classes=10))
    case.make = (make_t, make_s, lambda: network.gan.GeneratorA(nz=case.nz, ngf=NGF, nc=case.nc, img_size=32))
    t, s, gen = (f() for f in case.make)
    if kind != "mnist":  # random ResNets: BN statistics of generated images, so that outputs vary across samples
        with torch.no_grad():
            calib = gen(torch.randn(16, case.nz, 1, 1, generator=g))
        make_nontrivial(t, calib, g)
        make_nontrivial(s, calib, g)
    case.T_sd, case.S_sd, case.G_sd = ({k: v.clone() for k, v in m.state_dict().items()} for m in (t, s, gen))
    case.seed = seed
    return case


def draw_z(case, iterations: int, seed: int) -> list[torch.Tensor]:
    """The z's of ``iterations`` official iterations, in the official order (5 student, then 1 generator)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, case.nz, generator=g) for _ in range(6 * iterations)]


# ------------------------------------------------------------------------------------------------------------------
# the official side
def official_world(case, dtype=torch.float32, perturb: bool = False, record: bool = False) -> SimpleNamespace:
    t, s, g = (f() for f in case.make)
    for m, sd in ((t, case.T_sd), (s, case.S_sd), (g, case.G_sd)):
        m.load_state_dict(sd)
        m.to(dtype)
    if perturb:
        perturb_floating(s, case.seed)
    t.eval()
    opt_s = torch.optim.SGD(s.parameters(), lr=case.lr, weight_decay=case.wd, momentum=0.9)  # DFAD_*.py:150-151
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    w = SimpleNamespace(t=t, s=s, g=g, opt_s=opt_s, opt_g=opt_g, log=LossLog(), dtype=dtype)
    w.steps_s = record_steps(opt_s, param_names(_=s)) if record else None
    w.steps_g = record_steps(opt_g, param_names(_=g)) if record else None
    return w


def run_official(case, world, zs: list, iterations: int) -> None:
    """The official ``train()`` for ``iterations`` iterations (one call, ``epoch_itrs = iterations``) with the z's
    served in order (P7)."""
    dmod = importlib.import_module(case.module)
    queue = iter(zs)

    def randn(*a, **k):
        shape = tuple(a[0]) if a and isinstance(a[0], (tuple, list, torch.Size)) else tuple(a)
        assert shape == (B, case.nz, 1, 1), shape
        return next(queue).view(B, case.nz, 1, 1).to(world.dtype).clone()

    args = SimpleNamespace(epoch_itrs=iterations, batch_size=B, nz=case.nz, log_interval=10 ** 9, verbose=False)
    with patched((torch, "randn", randn), world.log.patch()), quiet():
        dmod.train(args, teacher=world.t, student=world.s, generator=world.g, device="cpu",
                   optimizer=[world.opt_s, world.opt_g], epoch=1)


# ------------------------------------------------------------------------------------------------------------------
# the suite side
def suite_world(case, record: bool = False) -> SimpleNamespace:
    from benchmark.augment import AugmentSpec
    from benchmark.dfkd_profiles import DistillRecipe, dfkd_profile
    from benchmark.models import build_model
    from strategies.dfkd import DFKD_METHODS, DFKDContext

    norm = ("backbone.normalize.mean", "backbone.normalize.std")
    teacher = build_model(case.t_name, 10, case.nc, case.mean, case.std)
    load_mapped(teacher, case.T_sd, case.o2s, norm)
    teacher.eval().requires_grad_(False)
    student = build_model(case.s_name, 10, case.nc, case.mean, case.std)
    load_mapped(student, case.S_sd, case.o2s, norm)
    params = dfkd_profile("paper", case.dataset).params_for("dfad", DFKD_METHODS.entry("dfad").extra["defaults"])
    defaults = {k: params[k] for k in ("nz", "g_betas", "g_student_mode", "lr_g", "g_schedule")}
    params.update(student_batch=B, g_steps=1, kd_steps=5)
    if case.kind != "mnist":  # the documented options reproducing DFAD_cifar.py (D1, D3)
        params.update(g_betas=[0.9, 0.999], g_student_mode="train")
    recipe = DistillRecipe(epochs=1, ep_steps=5, synthesis_batch=B, lr=case.lr, weight_decay=case.wd,
                           schedule="none", ngf=NGF)
    ctx = DFKDContext(teacher, student, params, recipe, 10, (case.nc, 32, 32), case.mean, case.std, AugmentSpec(),
                      torch.device("cpu"), torch.Generator().manual_seed(case.seed))
    method = DFKD_METHODS.get("dfad")(ctx)
    load_mapped(method.generator, case.G_sd, dfadgen_o2s, ("mean", "std"))
    student.train()
    opt = torch.optim.SGD(method.trainable(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)  # dfkd_runner.py:173
    w = SimpleNamespace(m=method, opt_s=opt, log=LossLog(), defaults=defaults)
    w.steps_s = record_steps(opt, param_names(_=student)) if record else None
    w.steps_g = record_steps(method.opt_g, param_names(_=method.generator)) if record else None
    return w


def run_suite(world, zs: list, iterations: int, step_order: str = "student_first") -> None:
    """``iterations`` rounds of the runner's loop (``DFKDCellRun._distil``: ``synthesize`` and 5 student steps, in the
    order ``method.student_first`` gives) with the method's ``step_order`` set.  The z's are served by role, so
    that step k of either order gets the z the official run gives it."""
    m = world.m
    m.p["step_order"] = step_order
    own_order = not m.student_first
    order = []
    for i in range(iterations):
        its = zs[6 * i: 6 * i + 6]
        order += ([its[5]] + its[:5]) if own_order else its
    queue = iter(order)

    def student_step():
        loss, _ = m.student_loss()
        world.opt_s.zero_grad(set_to_none=True)
        loss.backward()
        world.opt_s.step()

    with patched((m, "randn", lambda *shape: next(queue).clone()), world.log.patch()):
        for _ in range(iterations):
            if own_order:
                m.synthesize()
            for _ in range(5):
                student_step()
            if not own_order:
                m.synthesize()


def by_role(curve: list, own_order: bool) -> list:
    """A curve in the official order (5 student losses, then the generator loss, per iteration)."""
    if not own_order:
        return curve
    out = []
    for i in range(0, len(curve), 6):
        out += curve[i + 1: i + 6] + curve[i: i + 1]
    return out


# ------------------------------------------------------------------------------------------------------------------
# rows
def _row(level: int, commit: str, compared: str, diffs: dict, floors: dict, tol: float, note: str = "",
         details: dict | None = None) -> Row:
    name, diff = worst(diffs)
    ok, above = floor_check(diffs, floors, tol)
    head = floor_note(above, ok, "the official float32-vs-float64 error") or f"largest: {name}"
    note = "; ".join(x for x in (head, note) if x)
    return make_row("dfad", level, commit, compared, diff, tol, "identical" if ok else "differs", note,
                    {"per_item": diffs, "float64_floor": floors, **(details or {})}, REPOSITORY, PATCHES)


def _per_step(steps: list, key: str, fn) -> dict:
    """``{"step<k>.<suite name>": tensor}`` of the recorded student steps (``fn``: the name map, None to keep)."""
    out = {}
    for k, st in enumerate(steps):
        for name, v in st[key].items():
            mapped = fn(name) if fn else name
            if mapped is not None:
                out[f"step{k + 1}.{mapped}"] = v  # float64 kept: floors include float32 quantisation
    return out


def level12_rows(case, commit: str) -> list[Row]:
    zs = draw_z(case, 1, case.seed + 60)
    suite = suite_world(case, record=True)
    run_suite(suite, zs, 1)
    o32, o64 = official_world(case, record=True), official_world(case, torch.float64, record=True)
    run_official(case, o32, zs, 1)
    run_official(case, o64, zs, 1)
    tag = "MNIST LeNet-5" if case.kind == "mnist" else f"CIFAR-10 {case.t_name}_8x -> resnet18_8x"
    names = [f"student_step_{k + 1}" for k in range(5)] + ["generator_step"]
    t32, t64, ts = (dict(zip(names, w.log.values)) for w in (o32, o64, suite))
    terms = compare_terms(t32, ts)
    rows = [_row(1, commit, f"{tag}: L1 of 5 student steps and -L1 of the generator step (official order)",
                 {k: v["rel"] for k, v in terms.items()}, {k: abs(t32[k] - t64[k]) / abs(t32[k]) for k in t32},
                 LOSS_RTOL, "", {"terms": terms, "suite_profile_defaults": suite.defaults})]
    rows += _student_rows(case, commit, tag, o32, o64, suite)
    rows += _generator_rows(case, commit, tag, o32, o64, suite)
    return rows


def _student_rows(case, commit: str, tag: str, o32, o64, suite) -> list[Row]:
    """Gradients and SGD updates of the student steps: all five on MNIST; on the CIFAR ResNets the first (train-mode
    BN on batch 8 at lr 0.1 amplifies round-off by 10-100x a step on both sides: the later steps are in the details,
    with the official float32 code's own distance from its float64 run)."""
    n = 5 if case.kind == "mnist" else 1
    o2s = case.o2s
    g32, g64, gs = (_per_step(w.steps_s, "grads", m) for w, m in ((o32, o2s), (o64, o2s), (suite, None)))
    before, a32 = _per_step(o32.steps_s, "before", o2s), _per_step(o32.steps_s, "after", o2s)
    a64, a_s = _per_step(o64.steps_s, "after", o2s), _per_step(suite.steps_s, "after", None)
    first = [k for k in g32 if int(k.split(".")[0][4:]) <= n]

    def pick(d):
        return {k: d[k] for k in first}

    later = {}
    for j in range(n + 1, 6):
        later[f"step{j}"] = [worst({k: v for k, v in compare_tensors(g32, d).items() if k.startswith(f"step{j}.")})[1]
                             for d in (gs, g64)]
    what = "the 5 steps" if n == 5 else "step 1"
    note = "" if not later else ("later steps (suite, official float64) against the official float32: "
                                 + ", ".join(f"{j} {a:.0e}/{b:.0e}" for j, (a, b) in later.items()))
    rows = [_row(2, commit, f"{tag}: student gradients of {what}", compare_tensors(pick(g32), pick(gs)),
                 compare_tensors(pick(g32), pick(g64)), GRAD_RTOL, note, {"later_steps_suite_float64": later})]
    rows.append(_row(2, commit, f"{tag}: student after the SGD step(s) of {what} (update, step_change_rel_diff)",
                     step_change_rel_diff(pick(before), a32, a_s), step_change_rel_diff(pick(before), a32, a64),
                     GRAD_RTOL))
    return rows


def _generator_rows(case, commit: str, tag: str, o32, o64, suite) -> list[Row]:
    st32, st64, sts = o32.steps_g[0], o64.steps_g[0], suite.steps_g[0]
    g32, g64 = map_state(st32["grads"], dfadgen_o2s), map_state(st64["grads"], dfadgen_o2s)
    keep = [k for k in g32 if k not in BN_FED_BIASES]
    scale = max(v.abs().max().item() for v in g32.values())
    bn_fed = {k: [g32[k].abs().max().item() / scale, sts["grads"][k].abs().max().item() / scale]
              for k in BN_FED_BIASES}
    rows = [_row(2, commit, f"{tag}: generator gradients of the generator step",
                 compare_tensors({k: g32[k] for k in keep}, {k: sts["grads"][k] for k in keep}),
                 compare_tensors({k: g32[k] for k in keep}, {k: g64[k] for k in keep}), GRAD_RTOL,
                 f"left out: the biases feeding a BatchNorm, exact gradient 0 (largest abs(grad) over the largest "
                 f"generator gradient: official {max(v[0] for v in bn_fed.values()):.0e}, suite "
                 f"{max(v[1] for v in bn_fed.values()):.0e})", {"bn_fed_biases_official_suite": bn_fed})]
    before, a32 = map_state(st32["before"], dfadgen_o2s), map_state(st32["after"], dfadgen_o2s)
    a64 = map_state(st64["after"], dfadgen_o2s)
    diffs, excluded = adam_step_diff(before, a32, sts["after"], g32, sts["grads"])
    floors, _ = adam_step_diff(before, a32, a64, g32, g64)
    running = compare_tensors({k: v for k, v in map_state(o32.g.state_dict(), dfadgen_o2s).items() if "running" in k},
                              {k: v for k, v in suite.m.generator.state_dict().items() if "running" in k})
    rows.append(_row(2, commit, f"{tag}: generator after the Adam step (update where abs(grad) is well above eps)",
                     diffs, floors, GRAD_RTOL,
                     f"{sum(excluded.values())} small-gradient elements left out; generator BN running stats after the "
                     f"iteration: {worst(running)[1]:.1e}",
                     {"excluded": excluded, "bn_running_stats": running,
                      "step_change_rel_diff": step_change_rel_diff(before, a32, sts["after"])}))
    if case.kind != "mnist":
        s_run = compare_tensors({k: v for k, v in map_state(o32.s.state_dict(), case.o2s).items() if "running" in k},
                                {k: v for k, v in suite.m.student.state_dict().items() if "running" in k})
        rows[-1].details["student_bn_running_stats"] = s_run
    return rows


def _final(world, case, suite: bool) -> dict:
    """Student and generator after a run under the suite's names (floating tensors; the generator biases that feed a
    BatchNorm left out: their exact gradient is 0, so Adam moves them by round-off alone)."""
    if suite:
        st = {**world.m.student.state_dict(), **{f"generator.{k}": v for k, v in world.m.generator.state_dict().items()
                                                  if k not in ("mean", "std")}}
    else:
        st = {**map_state(world.s.state_dict(), case.o2s),
              **{f"generator.{k}": v for k, v in map_state(world.g.state_dict(), dfadgen_o2s).items()}}
    skip = {f"generator.{b}" for b in BN_FED_BIASES} | {"backbone.normalize.mean", "backbone.normalize.std"}
    return {k: v.float() for k, v in st.items() if v.is_floating_point() and k not in skip}


def _nth(i: int | None) -> str:
    return "never" if i is None else str(i + 1)


def level3_rows(case, steps: int, commit: str) -> list[Row]:
    zs, t0 = draw_z(case, steps, case.seed + 70), time.time()
    o, c = official_world(case), official_world(case, perturb=True)
    run_official(case, o, zs, steps)
    run_official(case, c, zs, steps)
    s, n = suite_world(case), suite_world(case)
    run_suite(s, zs, steps, "student_first")
    run_suite(n, zs, steps, "synthesis_first")
    fo, fc, fs, fn = _final(o, case, False), _final(c, case, False), _final(s, case, True), _final(n, case, True)
    floor, floor_p = curve_diff(o.log.values, c.log.values), worst(compare_tensors(fo, fc))[1]
    curve, (p_name, params) = curve_diff(o.log.values, s.log.values), worst(compare_tensors(fo, fs))
    own = by_role(n.log.values, True)
    own_curve, (own_name, own_params) = curve_diff(o.log.values, own), worst(compare_tensors(fo, fn))
    first_c, first_own = first_above(o.log.values, c.log.values), first_above(o.log.values, own)
    v = level3_verdict(curve, floor, params, floor_p, LOSS_RTOL)
    base = f"{steps} iterations (5 student + 1 generator step each, {6 * steps} losses)"
    first_s, k = first_above(o.log.values, s.log.values), len(o.log.values) if first_c is None else first_c
    early, own_early = curve_diff(o.log.values[:k], s.log.values[:k]), curve_diff(o.log.values[:k], own[:k])
    note = (f"{base} in the official order: loss curves {curve:.1e} (floor {floor:.1e}), first above 1e-3 at loss "
            f"{_nth(first_s)} (floor {_nth(first_c)}), {early:.1e} over the {k} losses before the floor's departure; "
            f"final student and generator {params:.1e} at {p_name} (floor {floor_p:.1e}); "
            f"{'within' if v == 'identical' else 'ABOVE'} {FLOOR_FACTOR:g}x the floor")
    own_note = (f"D2, kept on purpose (generative.py step_order; --set dfad.step_order=student_first gives DFAD's "
                f"order, the row above): the suite runs every generator method in CMI's datafree_kd.py loop, "
                f"synthesis first, DFAD's train() takes the 5 student steps first, so the default play is shifted by "
                f"one generator step (its first generator step attacks the untrained student): {base}, loss curves by "
                f"role {own_early:.1e} over the {k} losses before the floor's first departure above 1e-3 (the "
                f"official order: {early:.1e}); first above 1e-3 at loss {_nth(first_own)} (floor {_nth(first_c)}); "
                f"the whole run {own_curve:.1e}, final student and generator {own_params:.1e} at {own_name} (floor "
                f"{floor:.1e} / {floor_p:.1e})")
    details = {"curve_official": o.log.values, "curve_suite": s.log.values, "curve_control": c.log.values,
               "curve_suite_own_order_by_role": own, "final_params": compare_tensors(fo, fs),
               "final_params_own_order": compare_tensors(fo, fn), "seconds": time.time() - t0}
    tag = "MNIST" if case.kind == "mnist" else "CIFAR-10"
    return [make_row("dfad", 3, commit, f"{tag} short run: {steps} iterations, step_order=student_first (DFAD's "
                     f"order; loss curves, final params)", curve, LOSS_RTOL, v, note, details, REPOSITORY, PATCHES),
            make_row("dfad", 3, commit, f"{tag} short run: {steps} iterations, the default step_order="
                     f"synthesis_first (generator step first; max over the losses before the floor departs)",
                     own_early, LOSS_RTOL,
                     verdict(own_early, LOSS_RTOL, "generative.py step_order: CMI's loop for every generator method"),
                     own_note, {"final_params": compare_tensors(fo, fn)}, REPOSITORY, PATCHES)]


def run(method: str, official, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """The rows of ``dfad``: MNIST levels 1-2 (+ CIFAR-10 with ``FIDELITY_DFAD_CIFAR``), level 3 with ``steps``."""
    if method != "dfad":
        raise ValueError(f"dfad_official compares dfad, not {method!r}")
    cifar = os.environ.get("FIDELITY_DFAD_CIFAR", "")
    if cifar and cifar not in ("resnet18", "resnet34"):
        raise ValueError("FIDELITY_DFAD_CIFAR must be resnet18 or resnet34 (the CIFAR-10 teacher)")
    with import_stubs("torchvision.models.utils", "visdom"), official_imports(official, *OFFICIAL_PREFIXES):
        importlib.import_module("DFAD_mnist")
        case = build_case("mnist", seed)
        rows = level12_rows(case, commit)
        if steps > 0:
            rows += level3_rows(case, steps, commit)
        if cifar:
            importlib.import_module("DFAD_cifar")
            rows += level12_rows(build_case("cifar", seed, cifar), commit)
        return rows
