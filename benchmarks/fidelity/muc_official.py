"""MUC fidelity harness: the suite's ``muc`` (``baselines/muc.py``, ``baselines/soft_targets.py``,
``benchmark/models/resnet_cifar.py``) against the LwF variant of the official code, liuyudut/MUC
(``cifar100_MUC_LwF.py``, ``resnet_model.py``), imported / read at run time from ``--official DIR``.

What is compared
----------------
A toy scenario of 12 classes in 4 groups of 3 (the official equal groups, ``nb_cl_fg = nb_cl``; labels in class
order), CIFAR ResNet-32 with K = 3 side classifiers per group (official ``resnet_model.resnet32(num_classes,
side_classifier=3)``), real images of the embedded ``cifar100-mini``.  The step is one of phase 2 (official
``iteration = 2``): old classes 0-5, new 6-8, the side distillation on group 1's heads (official ``index = nb_cl * K
* (iteration - 1) = 9``, the suite's ``K * lo_1``).

1. loss terms of one stage-1 step on 8 new-class images (no exemplars): ``(1 - a) CE`` over the new classes' logits,
   ``a KD_main`` and ``a KD_side`` (soft CE at T 2, no T^2), ``a = 2 / 3``, and the total;
2. gradients of every parameter (backbone, main head rows 0-8, side rows 0-26), the SGD update (momentum buffer
   after the first step, ``g + wd p``) and the parameters after it, BN running statistics after the step; stage 3
   (maximum classifier discrepancy): the side CE summed over the K heads and the discrepancy of the first step on 12
   new-class images and 12 auxiliary images (embedded ``cifar10-mini``), the gradients of ``fc_side`` and its rows
   after the first and the fourth step (lr 0.1 on both sides for these steps);
departure rows: the previous model in eval mode (official: a train-mode deep copy), the new group's side heads
redrawn when stage 3 starts (``side_init=stage3``; aligned here with ``keep``), the input normalisation.  Level 3 is
not implemented (``steps`` is ignored).

Identical state and draws
-------------------------
The official phase-1 network (``resnet32(num_classes=6, side_classifier=3)``, every weight moved by seeded noise, BN
statistics of 72 images) is expanded to phase 2 by a re-statement of the script's lines 175-196, then moved a little
(mid-phase) with the new group's side rows scaled by 0.08 (the decay stage 1's weight decay gives them officially,
docs/official-code-cil-baselines.md).  Both official models are mapped key by key into the suite's ``Net``
(``ucir_official.resnet_key``; ``fc -> head`` rows 0-8, ``fc_side -> muc_side.fc`` rows 0-26): the previous one
becomes the plugin's ``old_model`` (``frozen_copy``, what ``after_training_exp`` does), the current one the network.
The suite model is built with the official normalisation statistics; both sides get ``(x / 255 - mean) / std`` of
the same images.  The stage-1 batch is augmented once (random crop 4 + flip, seeded) and given to both; the suite's
augmentation is off (``AugmentSpec()``) and its loader's order is the official batch order.  Stage 3: the suite's
``train_side_heads`` with ``stage3_views = 1`` and the 12 auxiliary images set as its auxiliary set
(``MUCPlugin._aux``, which ``aux()`` returns once set; the full-batch permutations it draws change no mean); the
official side uses the same 12 images every epoch (it draws a fresh SVHN subset each epoch and augments both
loaders: the draws, not the formula, so they are injected as one fixed batch).
Both stage-1 optimisers are fresh (first SGD step: the update is the momentum buffer ``g + wd p``, compared
directly); stage 3 runs 8 suite epochs of one step (milestones [4, 6, 7]: lr 0.1 for the 4 compared steps, as the
official [40, 60, 70] of 80).

The official training steps are inline in ``cifar100_MUC_LwF.py`` (a script that parses arguments and downloads
CIFAR-100 and SVHN at import, and calls ``resnet_cifar.resnet32``, a name it never imports, at line 167), so they are
written here as *reference re-statements* of the cited lines (``_official_expand``, ``_official_stage1_step``,
``_official_stage3``), calling the official ``resnet_model.resnet32``; every row built on them says so.

Monkeypatches (``PATCHES``; every row carries them)
--------------------------------------------------
None of the official code is patched (``resnet_model`` imports cleanly).  The re-statements differ from the script
only where ``PATCHES`` says: ``.cuda()`` of lines 183 / 191 dropped (no GPU), the loaders of lines 211 / 335 replaced
by the harness's batches.  Observation only: ``sys.setprofile`` reads locals of the suite's
``MUCPlugin.before_backward`` and the return values of ``F.cross_entropy`` / ``classifier_discrepancy`` inside
``train_side_heads``; global optimiser step hooks record ``fc_side`` during stage 3.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import baselines.muc as muc_module
from baselines.muc import MUC, MUCPlugin
from benchmark.data import load_arrays
from benchmark.methods import METHODS, MethodContext
from benchmark.models import build_model
from benchmark.models.base import frozen_copy
from benchmark.profiles import PROFILES
from benchmarks.fidelity.common import (GRAD_RTOL, LOSS_RTOL, Row, compare_terms, compare_tensors, official_imports,
                                        step_change_rel_diff, tensor_rel_diff)
from benchmarks.fidelity.ucir_official import (CPU, OFFICIAL_MEAN, OFFICIAL_STD, FakeScenario,
                                               Profiler, augmented_batch, calibrate_bn, jitter, load_mapped,
                                               make_row, momentum_buffers, normalisation_row, normalise,
                                               official_tensors, per_class_data, quiet, resnet_key,
                                               run_suite_step, same_shapes, suite_tensors)

REPOSITORY = "liuyudut/MUC"
PATCHES: list[tuple[str, str]] = [
    ("none of the official code is monkeypatched; imported: resnet_model.resnet32",
     "the training steps are inline in cifar100_MUC_LwF.py (not importable): reference re-statements, cited"),
    ("R1: in the re-statement of cifar100_MUC_LwF.py:183,191 the .cuda() of the new fc / fc_side is dropped",
     "no GPU here; it only moves the layer"),
    ("R2: the trainloader / svhn_loader of lines 211 and 335-336 replaced by the harness's batch (one per epoch)",
     "no CIFAR-100 / SVHN files here; both sides must see the same (augmented) images"),
]
SCRIPT = "cifar100_MUC_LwF.py"
GROUPS = [(0, 3), (3, 6), (6, 9), (9, 12)]
NB_CL, K, T, PHASE = 3, 3, 2.0, 2  # official nb_cl, side_classifier, T; the compared iteration
NEW_IN_BATCH = [6, 7, 8, 6, 7, 8, 6, 7]
STAGE3_PER_CLASS, STAGE3_STEPS = 4, 4  # stage-3 images per new class; steps compared (lr 0.1 on both sides)
SIDE_DECAY = 0.08  # the new group's side rows entering stage 3, relative to nn.Linear's init (module docstring)
HEAD = {"fc.weight": "head.weight", "fc.bias": "head.bias", "fc_side.weight": "muc_side.fc.weight",
        "fc_side.bias": "muc_side.fc.bias"}


def _rows_n(n_classes: int) -> dict:
    return {"head.weight": n_classes, "head.bias": n_classes, "muc_side.fc.weight": K * n_classes,
            "muc_side.fc.bias": K * n_classes}


# ------------------------------------------------------------------------------------------------------------------
# official side
def _official_resnet32(official: Path):
    with official_imports(Path(official), "resnet_model"):
        import resnet_model
    return resnet_model.resnet32


def _official_expand(tg_model, iteration: int):
    """SCRIPT:175-196 (reference re-statement; ``.cuda()`` dropped, R1): the previous model and the next phase's
    network with the old rows copied into new ``fc`` / ``fc_side`` layers."""
    ref_model = copy.deepcopy(tg_model)  # :175
    for param in ref_model.parameters():  # :177
        param.requires_grad = False  # :178
    num_old_classes = ref_model.fc.out_features  # :181
    in_features = ref_model.fc.in_features  # :182
    new_fc = nn.Linear(in_features, NB_CL * (iteration + 1))  # :183
    new_fc.weight.data[:num_old_classes] = ref_model.fc.weight.data  # :184
    new_fc.bias.data[:num_old_classes] = ref_model.fc.bias.data  # :185
    tg_model.fc = new_fc  # :186
    num_old_classes_side = ref_model.fc_side.out_features  # :189
    new_fc_side = nn.Linear(in_features, K * NB_CL * (iteration + 1))  # :191
    new_fc_side.weight.data[:num_old_classes_side] = ref_model.fc_side.weight.data  # :192
    new_fc_side.bias.data[:num_old_classes_side] = ref_model.fc_side.bias.data  # :193
    tg_model.fc_side = new_fc_side  # :194
    for param in tg_model.parameters():  # :195
        param.requires_grad = True  # :196
    return ref_model


def _official_losses(tg_model, ref_model, inputs, targets, iteration: int) -> dict:
    """SCRIPT:221-248 (reference re-statement): the stage-1 loss of a later phase."""
    num_old_classes = ref_model.fc.out_features  # :181
    cls_criterion = nn.CrossEntropyLoss()  # :206
    targets = targets - NB_CL * iteration  # :221
    outputs = tg_model(inputs)  # :222 (unused; a train-mode forward: it updates BN statistics)
    outputs = tg_model(inputs, side_fc=False)  # :224
    loss_cls = cls_criterion(outputs[:, num_old_classes:(num_old_classes + NB_CL)], targets)  # :225
    old_outputs = ref_model(inputs, side_fc=False)  # :228
    soft_target = F.softmax(old_outputs / T, dim=1)  # :229
    logp = F.log_softmax(outputs[:, :num_old_classes] / T, dim=1)  # :230
    loss_distill_main = -torch.mean(torch.sum(soft_target * logp, dim=1))  # :231
    outputs_side = tg_model(inputs, side_fc=True)  # :234
    outputs_old_side = ref_model(inputs, side_fc=True)  # :235
    index = NB_CL * K * (iteration - 1)  # :237
    loss_distill_side = 0  # :238
    if K > 1:  # :239
        for iter_1 in range(K):  # :240
            outputs_old_side_each = outputs_old_side[:, (index + NB_CL * iter_1):(index + NB_CL * (iter_1 + 1))]  # :241
            soft_target_side = F.softmax(outputs_old_side_each / T, dim=1)  # :242
            outputs_side_each = outputs_side[:, (index + NB_CL * iter_1):(index + NB_CL * (iter_1 + 1))]  # :243
            logp_side = F.log_softmax(outputs_side_each / T, dim=1)  # :244
            loss_distill_side += -torch.mean(torch.sum(soft_target_side * logp_side, dim=1))  # :245
        loss_distill_side = loss_distill_side / K  # :246
    alpha = float(iteration) / float(iteration + 1)  # :247
    loss = (1 - alpha) * loss_cls + alpha * (loss_distill_main + loss_distill_side)  # :248
    return {"loss": loss, "ce": (1 - alpha) * loss_cls.item(), "kd_main": alpha * loss_distill_main.item(),
            "kd_side": alpha * loss_distill_side.item(), "total": loss.item()}


def _official_stage1_step(tg_model, ref_model, x, y, iteration: int):
    """SCRIPT:202-210 and 250-252 (reference re-statement): optimiser, schedule, one step on the batch; the previous
    model in eval mode (aligned with the suite, the departure row measures the official train mode)."""
    update_params = list(tg_model.parameters())  # :202
    tg_optimizer = torch.optim.SGD(update_params, lr=0.1, momentum=0.9, weight_decay=5e-4)  # :203 (:66-70)
    tg_lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(tg_optimizer, milestones=[120, 160, 180],
                                                           gamma=0.1)  # :205
    with quiet():
        tg_lr_scheduler.step()  # :210 (before the epoch, as torch 0.4: lr 0.1 here)
    tg_model.train()
    ref_model.eval()
    terms = _official_losses(tg_model, ref_model, normalise(x), y, iteration)
    tg_optimizer.zero_grad()  # :250
    terms.pop("loss").backward()  # :251
    tg_optimizer.step()  # :252
    return terms, tg_optimizer


def _official_stage3(tg_model, x, y, u, iteration: int, steps: int) -> list[dict]:
    """SCRIPT:303-362 (reference re-statement), ``steps`` epochs of one batch each (R2): per step the loss terms,
    ``fc_side``'s gradients and its parameters after the step."""
    stage3_model = copy.deepcopy(tg_model)  # :303
    start_index = NB_CL * K * iteration  # :304
    stage3_model.eval()  # :310
    stage3_model.fc_side.train()  # :311
    for n, p in stage3_model.named_parameters():  # :313
        p.requires_grad = "fc_side" in n  # :314-317
    stage3_optimizer = torch.optim.SGD(list(stage3_model.fc_side.parameters()), lr=0.1, momentum=0.9,
                                       weight_decay=5e-4)  # :320-321
    stage3_lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(stage3_optimizer, milestones=[40, 60, 70],
                                                               gamma=0.1)  # :318,322
    cls_criterion = nn.CrossEntropyLoss()  # :323
    out = []
    for _ in range(steps):  # :326
        with quiet():
            stage3_lr_scheduler.step()  # :327
        inputs, targets, inputs_unlabel = normalise(x), y, normalise(u)  # :328-339 (R2)
        targets = targets - NB_CL * iteration  # :341
        loss_cls = 0  # :342
        outputs = stage3_model(inputs, side_fc=True)  # :343
        for i in range(K):  # :344
            loss_cls += cls_criterion(outputs[:, (start_index + NB_CL * i):(start_index + NB_CL * (i + 1))],
                                      targets)  # :345
        outputs_unlabel = stage3_model(inputs_unlabel, side_fc=True)  # :348
        loss_discrepancy = 0  # :349
        for iter_1 in range(K):  # :350
            o1 = outputs_unlabel[:, (start_index + NB_CL * iter_1):(start_index + NB_CL * (iter_1 + 1))]  # :351
            o1 = F.softmax(o1, dim=1)  # :352
            for iter_2 in range(iter_1 + 1, K):  # :353
                o2 = outputs_unlabel[:, (start_index + NB_CL * iter_2):(start_index + NB_CL * (iter_2 + 1))]  # :354
                o2 = F.softmax(o2, dim=1)  # :355
                loss_discrepancy += torch.mean(torch.mean(torch.abs(o1 - o2), 1))  # :357
        loss = loss_cls - loss_discrepancy  # :358
        stage3_optimizer.zero_grad()  # :360
        loss.backward()  # :361
        stage3_optimizer.step()  # :362
        fc = stage3_model.fc_side
        out.append({"side_ce": loss_cls.item(), "discrepancy": loss_discrepancy.item(),
                    "grad": {"weight": fc.weight.grad.clone(), "bias": fc.bias.grad.clone()},
                    "after": {"weight": fc.weight.detach().clone(), "bias": fc.bias.detach().clone()}})
    return out


# ------------------------------------------------------------------------------------------------------------------
# suite side
def _suite_method(seed: int, **params) -> MUC:
    """The suite's ``MUC`` as the runner builds it: ResNet-32 (official statistics, module docstring), the method's
    defaults with ``side_init=keep`` (aligned; its own row), one stage-3 view, the paper profile's MUC recipe (SGD
    0.1, momentum 0.9, wd 5e-4); ``aux="noise"`` only so that construction needs no dataset (the harness sets the
    auxiliary images)."""
    net = build_model("resnet32", GROUPS[-1][1], 3, OFFICIAL_MEAN, OFFICIAL_STD)
    p = {**METHODS.entry("muc").extra["defaults"], "aux": "noise", "side_init": "keep", "stage3_views": 1,
         "stage3_epochs": 2 * STAGE3_STEPS, **params}
    recipe = PROFILES.get("paper").recipes("muc")[1]
    return MUC(MethodContext(net, FakeScenario(GROUPS), lambda k: recipe, p, CPU, seed, None))


def _suite_stage1(method, xb, yb) -> tuple[dict, list]:
    rec = {}

    def probe(event, frame, arg):
        loc = frame.f_locals
        if event == "call":
            rec["ce_raw"] = loc["strategy"].loss.item()
        elif "a" in loc:
            a = loc["a"]
            rec.update(ce=(1 - a) * rec.pop("ce_raw"), kd_main=a * loc["kd_main"].item(),
                       kd_side=a * loc["kd_side"].item(), total=loc["strategy"].loss.item())

    s = method.strategy
    s.clock.train_exp_counter = PHASE
    method.muc.before_training_exp(s)
    with Profiler({MUCPlugin.before_backward.__code__: probe}).on():
        batch = run_suite_step(method, PHASE, xb, yb)
    return rec, batch


def _suite_stage3(method, x, y, u) -> tuple[list[dict], dict]:
    """``train_side_heads`` of the phase on ``(x, y)`` with ``u`` as the auxiliary images: per optimiser step the
    side weights before / after and their gradients (global step hooks), the first step's CE terms and discrepancy
    (return values inside ``train_side_heads``)."""
    plug, side = method.muc, method.model.muc_side
    plug._aux = u
    steps, terms = [], {"ce": [], "discrepancy": []}
    genexprs = {c for c in MUCPlugin.train_side_heads.__code__.co_consts if isinstance(c, type(_rows_n.__code__))}

    def ce_probe(event, frame, arg):
        if event == "return" and frame.f_back is not None and frame.f_back.f_code in genexprs:
            terms["ce"].append(arg.item())

    def dis_probe(event, frame, arg):
        if event == "return":
            terms["discrepancy"].append(arg.item())

    def snap():
        return {"weight": side.fc.weight.detach().clone(), "bias": side.fc.bias.detach().clone()}

    def pre(opt, *a):
        steps.append({"before": snap(), "grad": {"weight": side.fc.weight.grad.clone(),
                                                  "bias": side.fc.bias.grad.clone()}, "lr": opt.param_groups[0]["lr"]})

    def post(opt, *a):
        steps[-1]["after"] = snap()

    handles = [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
    codes = {F.cross_entropy.__code__: ce_probe, muc_module.classifier_discrepancy.__code__: dis_probe}
    try:
        with Profiler(codes).on():
            log = plug.train_side_heads(PHASE, x, y)
    finally:
        for h in handles:
            h.remove()
    first = {"side_ce": sum(terms["ce"][:K]), "discrepancy": terms["discrepancy"][0]}
    return steps, {**first, "final": snap(), "log": log}


# ------------------------------------------------------------------------------------------------------------------
# comparisons
def _official_state(resnet32, gen: torch.Generator, calib: torch.Tensor):
    """The official phase-1 network (moved weights, BN statistics of ``calib``), expanded to phase 2 (lines
    175-196), then moved a little (mid-phase) with the new group's side rows at the decayed scale."""
    tg = resnet32(num_classes=GROUPS[1][1], side_classifier=K)
    jitter(tg, gen, 0.3)
    calibrate_bn(tg, normalise(calib))
    ref = _official_expand(tg, PHASE)
    jitter(tg, gen, 0.02)
    with torch.no_grad():
        lo = K * GROUPS[PHASE][0]
        tg.fc_side.weight[lo:] *= SIDE_DECAY
        tg.fc_side.bias[lo:] *= SIDE_DECAY
    return tg, ref


def _stage1_rows(meta, tg, ref, method, xb, yb) -> list[Row]:
    net, hi = method.model, GROUPS[PHASE][1]
    rows_n = _rows_n(hi)
    before = suite_tensors(net, "param", rows_n)
    tg0, twin = copy.deepcopy(tg), frozen_copy(net)
    suite_terms, (x, y, _) = _suite_stage1(method, xb, yb)
    off_terms, off_opt = _official_stage1_step(tg, ref, x, y, PHASE)
    g_suite, p_suite = suite_tensors(net, "grad", rows_n), suite_tensors(net, "param", rows_n)
    g_off = same_shapes(official_tensors(tg, "grad", HEAD), g_suite)
    p_off = same_shapes(official_tensors(tg, "param", HEAD), p_suite)
    buf_off = momentum_buffers(off_opt, {official_key(n): v for n, v in tg.named_parameters()})
    buf_suite = momentum_buffers(method.strategy.optimizer, dict(net.named_parameters()))
    buf_suite = {k: v[: rows_n[k]] if k in rows_n else v for k, v in buf_suite.items() if k in buf_off}
    upd = {**{"update " + k: v for k, v in compare_tensors(buf_off, buf_suite).items()},
           **{"after " + k: v for k, v in compare_tensors(p_off, p_suite).items()}}
    note = f"reference re-statement of {SCRIPT}:202-210,221-252 (previous model in eval mode, aligned)"
    g_diff, floor = compare_tensors(g_off, g_suite), _float32_errors(tg0, ref, x, y, g_off, g_suite)
    kw = max(g_diff, key=g_diff.get)
    return [make_row(meta, 1, "loss terms of one phase-2 stage-1 step: (1-a) CE, a KD_main, a KD_side, total",
                     compare_terms(off_terms, suite_terms), LOSS_RTOL, note=note),
            make_row(meta, 2, "gradients of every parameter (backbone, main head, side heads)", g_diff, GRAD_RTOL,
                     note=note + f"; worst {kw}: each float32 side is {floor[kw]['official']:.1e} / "
                                 f"{floor[kw]['suite']:.1e} (official / suite) from the float64 evaluation (an "
                                 "ill-conditioned early-layer gradient), the two agree to the figure shown",
                     details={"float32_error_vs_float64": floor}),
            make_row(meta, 2, "SGD step: update (g + wd p) of every parameter and parameters after it", upd,
                     GRAD_RTOL, note=note,
                     details={"update_read_from_parameters": step_change_rel_diff(before, p_off, p_suite)}),
            _bn_row(meta, tg, net),
            _ref_mode_row(meta, tg0, ref, x, y, off_terms),
            normalisation_row(meta, _active(twin, hi), x, lambda z: F.cross_entropy(z[:, GROUPS[PHASE][0]:hi],
                                                                                   y - GROUPS[PHASE][0]), "CE")]


def _float32_errors(tg0, ref, x, y, g_off: dict, g_suite: dict) -> dict:
    """Each side's float32 error per gradient against the official formula evaluated in float64 from the same state
    (the round-off floor of the comparison)."""
    tg64, ref64 = copy.deepcopy(tg0).double().train(), copy.deepcopy(ref).double().eval()
    _official_losses(tg64, ref64, normalise(x).double(), y, PHASE)["loss"].backward()
    g64 = same_shapes(official_tensors(tg64, "grad", HEAD), g_suite)
    return {k: {"official": tensor_rel_diff(g_off[k], g64[k]), "suite": tensor_rel_diff(g_suite[k], g64[k])}
            for k in g_suite}


def official_key(name: str) -> str:
    return resnet_key(name) or HEAD[name]


def _active(net, n):
    net.set_active_classes(n)
    return net


def _bn_row(meta, tg, net) -> Row:
    """BN running statistics after the step: the official step runs three train-mode forwards of the current
    network (lines 222, 224, 234), each moving the statistics; the suite one."""
    off = official_tensors(tg, "buffer", HEAD)
    suite = suite_tensors(net, "buffer", {})
    diffs = {k: v for k, v in compare_tensors(off, suite).items() if not k.endswith("num_batches_tracked")}
    k0 = "backbone.stem.1.num_batches_tracked"
    return make_row(meta, 2, "BN running statistics after the step (running mean / var)", diffs, GRAD_RTOL,
                    departure="kept on purpose: one forward per step, docs/official-code-cil-baselines.md",
                    note=f"official: three train-mode forwards of the current model per step ({SCRIPT}:222 (output "
                         f"unused), 224, 234), each updating BN running statistics (num_batches_tracked "
                         f"{int(off[k0])} vs {int(suite[k0])}): momentum 0.1 applied 3 times = 0.271 per step; the "
                         "suite's one forward: 0.1; losses and gradients unaffected (batch statistics)")


def _ref_mode_row(meta, tg0, ref, x, y, aligned: dict) -> Row:
    """Departure: the official previous model is a train-mode deep copy (KD targets from batch statistics)."""
    tg_c, ref_c = copy.deepcopy(tg0).train(), copy.deepcopy(ref).train()
    with torch.no_grad():
        official = _official_losses(tg_c, ref_c, normalise(x), y, PHASE)
    official.pop("loss")
    return make_row(meta, 1, "previous model's mode: loss terms with the official train-mode copy vs eval mode",
                    compare_terms(official, aligned), LOSS_RTOL,
                    departure="suite's previous model runs in eval mode (baselines/muc.py docstring, "
                              "docs/official-code-cil-baselines.md); official ref_model = copy.deepcopy(tg_model) "
                              f"in train mode ({SCRIPT}:175): KD targets from the batch's BN statistics")


def _side(d: dict, rows: slice | None = None) -> dict:
    """``{"weight", "bias"}`` of ``fc_side`` as suite names, optionally cut to ``rows``."""
    rows = rows or slice(None)
    return {"muc_side.fc." + k: v[rows] for k, v in d.items()}


def _stage3_rows(meta, tg0, method, init: dict, x, y, u) -> list[Row]:
    """Stage 3 from the phase's mid-phase state on both sides; then the suite again with ``side_init=stage3``."""
    net, n = method.model, K * GROUPS[PHASE][1]
    load_mapped(net, init)
    suite_steps, first = _suite_stage3(method, x, y, u)
    official = _official_stage3(tg0, x, y, u, PHASE, STAGE3_STEPS)
    cut = slice(0, n)
    diffs = {**{"step 1 " + k: v for k, v in compare_terms({"side_ce": official[0]["side_ce"],
                                                            "discrepancy": official[0]["discrepancy"]},
                                                           {k: first[k] for k in ("side_ce", "discrepancy")}).items()},
             **{"grad step 1 " + k: v for k, v in compare_tensors(_side(official[0]["grad"]),
                                                                  _side(suite_steps[0]["grad"], cut)).items()}}
    for i in (0, STAGE3_STEPS - 1):
        diffs.update({f"after step {i + 1} " + k: v for k, v in compare_tensors(
            _side(official[i]["after"]), _side(suite_steps[i]["after"], cut)).items()})
    lo, hi = K * GROUPS[PHASE][0], K * GROUPS[PHASE][1]
    start = suite_steps[0]["before"]
    kept = all(torch.equal(first["final"][k][:lo], start[k][:lo]) and torch.equal(first["final"][k][hi:], start[k][hi:])
               for k in ("weight", "bias"))
    lrs = [st["lr"] for st in suite_steps[:STAGE3_STEPS]]
    rows = [make_row(meta, 2, f"stage 3 (side heads, max. discrepancy): terms and gradients of step 1, fc_side "
                              f"after steps 1 and {STAGE3_STEPS}", diffs, GRAD_RTOL,
                     note=f"reference re-statement of {SCRIPT}:303-362; suite train_side_heads (one view, "
                          f"side_init=keep); suite lr {lrs}; rows outside the new group's unchanged after the "
                          f"suite's stage 3: {kept} (official: only rows {lo}: are copied back, :392-393)",
                     details={"first_step_official": {k: official[0][k] for k in ("side_ce", "discrepancy")},
                              "first_step_suite": {k: first[k] for k in ("side_ce", "discrepancy")}})]
    rows.append(_side_init_row(meta, method, init, x, y, u, suite_steps[0], first))
    return rows


def _side_init_row(meta, method, init, x, y, u, keep_step: dict, keep_first: dict) -> Row:
    """Departure: ``side_init=stage3`` (the suite's default) redraws the new group's K heads when stage 3 starts."""
    lo, hi = K * GROUPS[PHASE][0], K * GROUPS[PHASE][1]
    method.muc.p["side_init"] = "stage3"
    try:
        load_mapped(method.model, init)
        steps, first = _suite_stage3(method, x, y, u)
    finally:
        method.muc.p["side_init"] = "keep"
    w_keep, w_new = keep_step["before"]["weight"][lo:hi], steps[0]["before"]["weight"][lo:hi]
    diffs = {**compare_tensors({"rows entering stage 3": w_keep}, {"rows entering stage 3": w_new}),
             **{"step 1 " + k: v for k, v in compare_terms({k: keep_first[k] for k in ("side_ce", "discrepancy")},
                                                           {k: first[k] for k in ("side_ce", "discrepancy")}).items()}}
    ratio = float(w_new.norm() / w_keep.norm())
    return make_row(meta, 2, "side-head initialisation at stage 3: side_init=stage3 (suite default) vs keep",
                    diffs, GRAD_RTOL,
                    departure=f"suite redraws the new group's K side heads with nn.Linear's default init when its "
                              f"stage 3 starts (baselines/muc.py docstring); official keeps stage 1's "
                              f"decayed rows (here x{SIDE_DECAY}): the redrawn rows are x{ratio:.1f} larger",
                    details={"norm_ratio_redrawn_over_kept": ratio})


def run(method: str, official: Path, steps: int = 0, seed: int = 0, commit: str = "unknown") -> list[Row]:
    """Levels 1 and 2 (module docstring); ``steps`` is ignored (no level 3 for MUC)."""
    torch.set_num_threads(1)
    t0 = time.process_time()
    meta = SimpleNamespace(method=method, repository=REPOSITORY, commit=commit, patches=PATCHES)
    resnet32 = _official_resnet32(official)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = GROUPS[PHASE]
    x_old, _ = per_class_data(range(lo), 10)
    x3, y3 = per_class_data(range(lo, hi), STAGE3_PER_CLASS)
    u = load_arrays("cifar10-mini").x_train[: len(x3)]  # the auxiliary images (the suite's offline `auto`)
    xb, yb = augmented_batch(NEW_IN_BATCH, gen, offset=STAGE3_PER_CLASS)
    tg, ref = _official_state(resnet32, gen, torch.cat([x_old, x3]))
    m = _suite_method(seed)
    load_mapped(m.model, {**official_tensors(ref, "param", HEAD), **official_tensors(ref, "buffer", HEAD)})
    m.muc.old_model = frozen_copy(m.model)  # what after_training_exp of phase 1 leaves
    init = {**official_tensors(tg, "param", HEAD), **official_tensors(tg, "buffer", HEAD)}
    load_mapped(m.model, init)
    tg0 = copy.deepcopy(tg)
    rows = _stage1_rows(meta, tg, ref, m, xb, yb)
    rows += _stage3_rows(meta, tg0, m, init, x3, y3, u)
    cpu = time.process_time() - t0
    for r in rows:
        r.details["cpu_seconds_whole_run"] = round(cpu, 1)
    return rows
