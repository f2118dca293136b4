"""MUC, "More Classifiers, Less Forgetting" (Liu et al., ECCV 2020), as the official code behaves
(liuyudut/MUC ``cifar100_MUC_LwF.py``: the LwF-based, exemplar-free variant that the RGAL / PASS tables compare
against; notes in docs/official-code-cil-baselines.md).

* The network has its main classifier and, for every class group (phase), ``K`` side classifiers (official
  ``fc_side``: K = 3 linear heads per task on the same pooled feature).  Prediction uses the main classifier only.
* Stage 1, training phase t > 0 (no exemplars):
  ``(1 - a) CE(main logits of the new classes, y) + a (KD_main + KD_side)``, ``a = t / (t + 1)``;
  ``KD_main`` is the soft cross-entropy at T = 2 (no T^2) between the frozen previous model's main logits and the
  current main logits over the old classes; ``KD_side`` is the same between the previous model's and the current
  side heads of the previous phase's group, averaged over the K heads (official: only the latest group's heads,
  ``side_kd="previous"``; ``side_kd="all"`` distils every old group's heads).  The CE runs over the new classes'
  logits only, as the official code (``ce_scope="new"``; ``"seen"`` is the suite's LwF convention).  Phase 0 is
  plain CE, the shared ``ce`` phase-0 family (the side heads are not in the cached weights).
* Stage 3, after every phase: feature extractor and main head frozen (eval mode); only the new group's K side
  heads train, ``sum_i CE(side_i(x), y) - sum_{i<j} mean |softmax(side_i(u)) - softmax(side_j(u))|``
  (maximum classifier discrepancy) on auxiliary out-of-distribution images ``u`` (official: SVHN, a fresh random
  subset as large as the phase's training data every epoch, CIFAR train augmentation), 80 epochs, SGD lr 0.1,
  momentum 0.9, weight decay 5e-4, decayed by 10 at epochs 40, 60, 70, batch 128.
* Auxiliary data (``aux``): ``auto`` takes a dataset disjoint from the scenario's classes: CIFAR-10 for CIFAR-100
  (the embedded ``cifar10-mini`` for ``cifar100-mini`` and ``mnist``, converted to grey), CIFAR-100 for CIFAR-10,
  CIFAR-10 (resized to 64x64) for Tiny-ImageNet; ``svhn`` is the official choice when available; ``noise`` (uniform
  random images) is an ablation.  The scenario's own dataset is refused: its images are future classes.
* Cost: since stage 3 sees only frozen features, the features of ``stage3_views`` augmented views of the phase's
  data and of as many auxiliary subsets are computed once and the epochs cycle over them (``cpu``: 2 views);
  ``stage3_views = 0`` recomputes them every epoch, as the official code (``paper``).
* Side-head initialisation (``side_init``, ``side_init_scale``). Official: a group's K heads get PyTorch's default
  ``nn.Linear`` initialisation when the network expands; stage 1 trains every parameter with SGD and the new rows,
  which no loss reaches, only decay: SGD with momentum m shrinks a zero-gradient weight by about ``exp(-wd / (1 - m) *
  sum_t lr_t)``; the official wd 5e-4, m 0.9 and schedule (``sum_t lr_t = 12.422 S`` for S steps an epoch: 0.1 x 120 +
  0.01 x 40 + 0.001 x 20 + 0.0001 x 20 epochs) give ``exp(-0.0621 S)``: ~0.08 at 10 classes a task (S = 40), ~0.007 at
  20 (S = 79; a step-by-step simulation gives the same), so they enter stage 3 *distinct* but small (group 0's heads
  are frozen in phase 0 and keep the full scale); stage 3 never re-initialises them. Here the side heads of every
  group live in one matrix from the start and stage 1 trains with the profile's optimiser; under Adam (``cpu``), whose
  coupled weight decay drives zero-gradient rows to ~0 within a phase, the rows of groups not yet trained reached
  exactly 0: the K heads of a group were identical, got identical gradients and stayed identical, and the discrepancy
  term was exactly 0, its gradient too (measured: CIFAR-100 cpu seed 0, phases 3-10). The default ``"stage3"`` redraws
  the group's K heads with the default ``nn.Linear`` initialisation, times ``side_init_scale`` (default 1: full scale,
  as the official group 0; ~0.08 is the official later groups' scale with 10 classes a task), from the stage's seeded
  generator when its stage 3 starts: what matters, K distinct heads, holds whatever the optimiser; the scale at which
  stage 3's 80 SGD epochs start is a deliberate difference. ``"keep"`` trains the rows as stage 1 left them (not
  official either: the rows decay over every earlier phase, not one).

Stage-1 recipe: the ``paper`` profile's ``muc`` group is the official one (``cifar100_MUC_LwF.py``: SGD lr 0.1,
momentum 0.9, wd 5e-4, batch 128, 200 epochs -- hard-coded, the ``--epochs`` flag is unused -- MultiStepLR [120,
160, 180]; the official backbone is ResNet-32, the table's is kept); the other profiles share their table-wide
recipe.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from torch import nn

from baselines.soft_targets import scoped_cross_entropy, soft_cross_entropy
from benchmark.augment import augment_batch
from benchmark.errors import BenchError
from benchmark.hparams import hp
from benchmark.methods import CILMethod, make_suite_plugin, placeholder_optimizer, quiet_evaluator, register_method
from benchmark.models.base import OutputCapture, frozen_copy
from benchmark.seeds import derive_seed
from benchmark.training import materialize

AUX_AUTO = {"cifar100": "cifar10", "cifar100-mini": "cifar10-mini", "mnist": "cifar10-mini", "cifar10": "cifar100",
            "tinyimagenet": "cifar10"}
AUX_CHOICES = ("auto", "cifar10", "cifar100", "cifar10-mini", "svhn", "noise")
SIDE_PREFIX = "muc_side."


# -- loss terms ----------------------------------------------------------------------------------------------------
def classifier_discrepancy(side_logits: list[torch.Tensor]) -> torch.Tensor:
    """``sum_{i<j} mean_b mean_c |softmax(l_i) - softmax(l_j)|`` over the K heads' logits on the same batch."""
    probs = [F.softmax(z, 1) for z in side_logits]
    total = side_logits[0].new_zeros(())
    for i in range(len(probs)):
        for j in range(i + 1, len(probs)):
            total = total + (probs[i] - probs[j]).abs().mean()
    return total


# -- side classifiers ----------------------------------------------------------------------------------------------
class SideHeads(nn.Module):
    """``K`` linear heads per class group in one weight matrix, laid out as the official ``fc_side``: group g's
    block starts at ``K * lo_g`` and holds its K heads of ``n_g`` rows each."""

    def __init__(self, dim: int, groups: list[tuple[int, int]], k: int):
        super().__init__()
        self.groups, self.k = groups, k
        self.fc = nn.Linear(dim, k * groups[-1][1])

    def heads(self, emb: torch.Tensor, g: int) -> list[torch.Tensor]:
        lo, hi = self.groups[g]
        n, start = hi - lo, self.k * lo
        z = F.linear(emb, self.fc.weight[start:start + self.k * n], self.fc.bias[start:start + self.k * n])
        return list(z.split(n, 1))


# -- auxiliary data --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _aux_arrays(name: str, data_root: str | None):
    from benchmark.data import load_arrays

    return load_arrays(name, data_root)


def aux_source(source: str, scenario) -> str:
    return AUX_AUTO.get(scenario.spec.name, "cifar10") if source == "auto" else source


def uses_aux(params: dict) -> bool:
    """Stage 3 (and with it the auxiliary data) runs only with several side classifiers and some epochs."""
    return int(params["K"]) > 1 and params["stage3_epochs"] > 0


def aux_fingerprint(source: str, scenario, data_root) -> dict:
    """The auxiliary data's name and, for a dataset, where it was read and the sha256 of its arrays."""
    name = aux_source(source, scenario)
    if name == "noise":
        return {"aux": name}
    d = _aux_arrays(name, str(data_root) if data_root else None)
    return {"aux": name, "source": d.source, "sha256": d.sha256}


def aux_images(source: str, scenario, data_root, n_noise: int = 10000, seed: int = 0) -> torch.Tensor:
    """uint8 (N, C, H, W) auxiliary images (the training split) in the scenario's format (channels, size)."""
    ds, name = scenario.spec.dataset, aux_source(source, scenario)
    same = {ds, ds.replace("-mini", "")}
    if name in same or name.replace("-mini", "") in same:
        others = [a for a in AUX_CHOICES if a.replace("-mini", "") not in same and a != "auto"]
        raise BenchError(f"MUC auxiliary data {name!r} holds the scenario's own classes (future phases would leak); "
                         f"choose another with --set muc.aux={'|'.join(others)}")
    c, h, w = scenario.data.x_train.shape[1:]
    if name == "noise":
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (n_noise, c, h, w), generator=g, dtype=torch.uint8)
    x = _aux_arrays(name, str(data_root) if data_root else None).x_train
    if x.shape[1] != c:
        xf = x.float()
        x = (xf.mean(1, keepdim=True) if c == 1 else xf.expand(-1, c, -1, -1)).round().to(torch.uint8)
    if tuple(x.shape[2:]) != (h, w):
        x = torch.cat([F.interpolate(x[i:i + 2048].float(), size=(h, w), mode="bilinear", align_corners=False)
                       .round().clamp(0, 255).to(torch.uint8) for i in range(0, len(x), 2048)])
    return x


# -- the plugin --------------------------------------------------------------------------------------------------------
class MUCPlugin(SupervisedPlugin):
    def __init__(self, net, side: SideHeads, scenario, params, device, seed: int, data_root):
        super().__init__()
        self.net, self.side, self.sc, self.p = net, side, scenario, params
        self.device, self.seed, self.data_root = device, seed, data_root
        self.old_model = None
        self.k = 0
        self.emb = OutputCapture(net.backbone)
        self._aux = None
        self.stage3_log: list[dict] = []

    def before_training_exp(self, strategy, **kwargs):
        self.k = strategy.clock.train_exp_counter

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return scoped_cross_entropy(logits, y, self.sc.group_bounds()[self.k], self.p["ce_scope"])

    def before_backward(self, strategy, **kwargs):
        if self.old_model is None:
            return
        k, t = self.k, self.p["temperature"]
        n_old = self.sc.seen_after(k - 1)
        with torch.no_grad():
            old_emb = self.old_model.backbone(strategy.mb_x)
            old_main = self.old_model.head(old_emb)[:, :n_old]
        kd_main = soft_cross_entropy(strategy.mb_output[:, :n_old], old_main, t)
        # official: no side distillation with a single side classifier (its heads are never trained)
        groups = [] if self.p["K"] <= 1 else [k - 1] if self.p["side_kd"] == "previous" else list(range(k))
        kd_side = strategy.mb_output.new_zeros(())
        for g in groups:
            with torch.no_grad():
                old_heads = self.old_model.muc_side.heads(old_emb, g)
            cur_heads = self.side.heads(self.emb.value, g)
            kd_side = kd_side + sum(soft_cross_entropy(c, o, t) for c, o in zip(cur_heads, old_heads)) / len(cur_heads)
        kd_side = kd_side / max(len(groups), 1)
        a = k / (k + 1)
        strategy.loss = (1 - a) * strategy.loss + a * (kd_main + kd_side)

    def after_training_exp(self, strategy, **kwargs):
        k = self.k
        if uses_aux(self.p):
            x, y = materialize(strategy.experience.dataset)
            self.stage3_log.append({"phase": k, **self.train_side_heads(k, x, y)})
        self.emb.value = None
        self.old_model = frozen_copy(self.net)

    # -- stage 3 ---------------------------------------------------------------------------------------------------
    def aux(self) -> torch.Tensor:
        if self._aux is None:
            self._aux = aux_images(self.p["aux"], self.sc, self.data_root, seed=self.seed)
        return self._aux

    def aux_info(self) -> dict:
        """Which auxiliary data trained the side classifiers (recorded in ``result.json``)."""
        return {**aux_fingerprint(self.p["aux"], self.sc, self.data_root), "images": len(self.aux())}

    @torch.no_grad()
    def _features(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        out = []
        for i in range(0, len(x), 512):
            xb = augment_batch(x[i:i + 512].to(self.device), self.sc.spec.augment, gen)
            out.append(self.net.backbone(xb))
        return torch.cat(out)

    def train_side_heads(self, k: int, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Stage 3 for group k on frozen features; returns the last epoch's mean CE and discrepancy."""
        p, (lo, hi) = self.p, self.sc.group_bounds()[k]
        # the optimiser sees the whole matrix (a dense zero gradient elsewhere); momentum and weight decay must not
        # touch the other groups' rows: the official code copies back only the new task's rows
        keep = [t.detach().clone() for t in (self.side.fc.weight, self.side.fc.bias)]
        rows = torch.zeros(len(keep[1]), dtype=torch.bool, device=keep[1].device)
        rows[self.side.k * lo:self.side.k * hi] = True
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, "side_classifiers", k))
        aux = self.aux()
        was = self.net.training
        self.net.eval()
        y = (y - lo).to(self.device)
        views = p["stage3_views"]
        cache: dict[int, tuple] = {}

        def view(e):
            v = e % views if views else e
            if v not in cache:
                idx = torch.randperm(len(aux), generator=gen, device=gen.device).cpu()
                idx = idx.repeat(-(-len(x) // len(aux)))[: len(x)]  # a subset as large as the phase's data
                cache.clear() if not views else None
                cache[v] = (self._features(x, gen), self._features(aux[idx], gen))
            return cache[v]

        w = self.side.fc
        if p["side_init"] == "stage3":  # module docstring: K distinct random heads, as the official expansion
            # nn.Linear's default (kaiming_uniform a=sqrt(5)) bound for weight and bias
            bound = p["side_init_scale"] / w.in_features ** 0.5
            with torch.no_grad():
                for t in (w.weight, w.bias):
                    t[rows] = torch.empty_like(t[rows]).uniform_(-bound, bound, generator=gen)
        opt = torch.optim.SGD(w.parameters(), lr=p["stage3_lr"], momentum=0.9, weight_decay=5e-4)
        ms = [round(p["stage3_epochs"] * f) for f in (0.5, 0.75, 0.875)]  # official 40, 60, 70 of 80
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=0.1)
        bs, log = p["stage3_batch"], {}
        for e in range(p["stage3_epochs"]):
            fx, fu = view(e)
            px = torch.randperm(len(fx), generator=gen, device=gen.device).to(self.device)
            pu = torch.randperm(len(fu), generator=gen, device=gen.device).to(self.device)
            ce_sum = dis_sum = 0.0
            steps = 0
            for i in range(0, len(fx), bs):
                ix, iu = px[i:i + bs], pu[i:i + bs]
                ce = sum(F.cross_entropy(z, y[ix]) for z in self.side.heads(fx[ix], k))
                dis = classifier_discrepancy(self.side.heads(fu[iu], k))
                loss = ce - dis
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ce_sum, dis_sum, steps = ce_sum + ce.item() / p["K"], dis_sum + dis.item(), steps + 1
            sched.step()
            log = {"side_ce": ce_sum / steps, "side_discrepancy": dis_sum / steps}
        with torch.no_grad():
            for t, saved in zip((self.side.fc.weight, self.side.fc.bias), keep):
                t[~rows] = saved[~rows]
        self.net.train(was)
        return log


@dataclass(frozen=True)
class MUCParams:
    """Stage 1: (1 - a) CE + a (KD_main + KD_side); stage 3: side heads for maximum discrepancy (module docstring)."""

    K: int = hp(3, "side classifiers per class group (1: none, plain LwF)", "MUC cifar100_MUC_LwF.py: 3 fc_side")
    temperature: float = hp(2.0, "softmax temperature of the distillation terms", "MUC cifar100_MUC_LwF.py: T = 2",
                            key_name="T")
    side_kd: str = hp("previous", "distil the side heads of the previous group only, or of every old group",
                      "MUC cifar100_MUC_LwF.py: the latest group's", choices=("previous", "all"))
    ce_scope: str = hp("new", "CE over the new classes' logits or over every seen class",
                       "MUC cifar100_MUC_LwF.py: the new classes", choices=("new", "seen"))
    aux: str = hp("auto", "auxiliary out-of-distribution images of stage 3", "MUC: SVHN", choices=AUX_CHOICES)
    stage3_epochs: int = hp(80, "stage-3 epochs after every phase", "MUC cifar100_MUC_LwF.py: 80")
    stage3_views: int = hp(0, "augmented views whose features stage 3 cycles over (0: fresh every epoch)",
                           "official: fresh augmentation every epoch (0)")
    stage3_lr: float = hp(0.1, "stage-3 SGD learning rate (decayed by 10 at 1/2, 3/4, 7/8 of the epochs)",
                          "MUC cifar100_MUC_LwF.py: 0.1, milestones 40, 60, 70")
    stage3_batch: int = hp(128, "stage-3 batch size", "MUC cifar100_MUC_LwF.py: 128", low=1)
    side_init: str = hp("stage3", "redraw a group's side heads when its stage 3 starts, or keep stage 1's rows",
                        "suite choice (module docstring)", choices=("stage3", "keep"))
    side_init_scale: float = hp(1.0, "scale of that redraw (1: nn.Linear's default)", "suite choice",
                                key_neutral=True)


@register_method("muc", published="MUC", cost=(1.0, 1.4), recipe_group="muc", params=MUCParams,
                 description="MUC (LwF variant): K side classifiers per phase trained for maximum discrepancy on "
                             "auxiliary OOD data, distilled with the main head; no exemplars")
class MUC(CILMethod):
    phase0_family = "ce"

    @classmethod
    def key_data(cls, params: dict, scenario, data_root) -> dict:
        """The auxiliary images' fingerprint joins the cell's key (other auxiliary data, another cell; this changed
        the keys of MUC cells made before it, none of which was committed)."""
        if not uses_aux(params):
            return {}
        fp = aux_fingerprint(params["aux"], scenario, data_root)
        return {"aux_data": fp.get("sha256", fp["aux"])}

    def __init__(self, ctx):
        super().__init__(ctx)
        groups = ctx.scenario.group_bounds()
        self.model.muc_side = SideHeads(self.model.embed_dim, groups, int(ctx.params["K"])).to(ctx.device)
        self.muc = MUCPlugin(ctx.model, self.model.muc_side, ctx.scenario, ctx.params, ctx.device, ctx.seed,
                             ctx.data_root)
        if uses_aux(ctx.params):
            self.muc.aux()  # fail now, not after phase 0, when the auxiliary data is missing
        self.suite_plugin = make_suite_plugin(ctx)
        self.strategy = Naive(model=ctx.model, optimizer=placeholder_optimizer(ctx.model),
                              criterion=self.muc.criterion, train_mb_size=ctx.recipe_for(0).batch_size,
                              device=ctx.device, plugins=[self.muc, self.suite_plugin], evaluator=quiet_evaluator())

    def phase0_state(self) -> dict:
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(SIDE_PREFIX)}

    def load_phase0_state(self, state: dict) -> None:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(SIDE_PREFIX) for k in missing):
            raise BenchError("phase-0 cache entry does not match the network; delete it and re-run")

    def extra_results(self) -> dict:
        return {"stage3": self.muc.stage3_log, **self.muc.aux_info()}

    def state_dict(self):
        return {"old_model": None if self.muc.old_model is None else self.muc.old_model.state_dict(),
                "stage3": self.muc.stage3_log}

    def load_state_dict(self, st):
        self.muc.stage3_log = list(st.get("stage3", []))
        self.muc.old_model = None
        if st["old_model"] is not None:
            self.muc.old_model = frozen_copy(self.model, st["old_model"])
