"""UCIR / LUCIR (Hou et al., CVPR 2019, "Learning a Unified Classifier Incrementally via Rebalancing"), as the
official code behaves (hshustc/CVPR19_Incremental_Learning ``class_incremental_cosine_cifar100.py`` and
``utils_incremental/incremental_train_and_eval_MR_LF.py``; notes in docs/official-code-cil-baselines.md), on Avalanche
``Naive`` with the suite's training plugin.

* Cosine-normalised classifier ``sigma * <f / |f|, w / |w|>`` with one learned scale sigma (initialised to 1 and
  carried over); the last block of a CIFAR ResNet ends without its ReLU (official ``modified_resnet_cifar``;
  ``remove_last_relu=false`` keeps it, under its own cached phase 0; LeNet has no such block and is unchanged).
* New classes' weights imprinted at the start of a phase: the normalised mean of the L2-normalised features of each
  new class's training images (current model, no augmentation), scaled by the mean norm of the old weight rows.
  The old classes' weight rows are frozen during the phase (official: fc1 with lr 0 and weight decay 0); sigma and
  the new rows train.
* Loss in phase t > 0: ``CE(sigma cos) + lambda * LF + lw_mr * MR``:
  - less-forget ``LF = mean(1 - cos(f, f_old))`` on the pooled features (the fc input) against the frozen previous
    model, ``lambda = lambda_base * sqrt(n_old / n_new)`` (lambda_base 5, CIFAR: ``kd_weight``);
  - margin ranking ``MR``: for every sample of an old class in the batch (exemplars), its ground-truth cosine score
    (unscaled) against its K = 2 highest new-class scores, ``max(0, margin - (s_gt - s_hard))`` with margin 0.5,
    averaged over (sample, k).
* Exemplars: herding on normalised features after each phase, 20 per class growing (CONVENTIONS.md) or
  ``memory_total`` (``baselines.exemplars``), appended to the next phases' training data.
* Two rows from one training: ``ucir-cnn`` (the cosine classifier) and ``ucir-nme`` (nearest mean of exemplars:
  class means of normalised exemplar features and their flips; test features unnormalised; negative squared
  distance, as the official ``compute_accuracy``).
* ``cbf_epochs > 0``: class-balanced fine-tuning after each phase t > 0 (official ``cbf_*`` script): only the
  classifier's weight rows train (sigma and backbone frozen), on the exemplars of all seen classes, SGD lr
  ``cbf_lr`` decayed by 10 at half the epochs, ``CE + lw_mr * MR`` (the less-forget term has no gradient when the
  backbone is frozen).  Off by default, as in the main official script.
Training recipe: the ``paper`` profile's ``ucir`` group is the official one (``class_incremental_cosine_cifar100.py``:
SGD 0.1, momentum 0.9, wd 5e-4, batch 128, 160 epochs in every phase, MultiStepLR [80, 120]); the other profiles
share their table-wide recipe.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from torch import nn

from baselines.exemplars import ExemplarMemory, append_memory, embed, nme_class_means
from benchmark.augment import augment_batch
from benchmark.hparams import hp
from benchmark.loss_terms import record_term
from benchmark.methods import (EXEMPLAR_DEFAULTS, CILMethod, ExemplarParams, exemplar_memory_note, make_suite_plugin,
                               placeholder_optimizer, quiet_evaluator, register_method)
from benchmark.models.base import OutputCapture, frozen_copy
from benchmark.precision import float32_forward
from benchmark.seeds import derive_seed
from benchmark.training import materialize


class CosineHead(nn.Module):
    """``sigma * cos(f, w_c)`` over the first ``active`` classes (the suite's expanding classifier)."""

    def __init__(self, in_features: int, out_features: int, sigma: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.sigma = nn.Parameter(torch.tensor(float(sigma)))
        self.active: int | None = None
        self.out_features = out_features

    @float32_forward
    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.active is None else self.weight[: self.active]
        return F.linear(F.normalize(x, dim=1), F.normalize(w, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigma * self.cosine(x)


def less_forget_loss(f: torch.Tensor, f_old: torch.Tensor) -> torch.Tensor:
    """``CosineEmbeddingLoss(f, f_old, +1)``: mean of ``1 - cos``."""
    return (1 - F.cosine_similarity(f, f_old.detach(), dim=1)).mean()


def margin_ranking_loss(cos: torch.Tensor, y: torch.Tensor, n_old: int, k: int = 2, margin: float = 0.5):
    """UCIR's MR on unscaled cosine scores ``cos`` (batch x seen classes): old-class samples only, ground truth
    against the top-k new-class scores; 0 when the batch has no old-class sample."""
    old = y < n_old
    if not old.any() or cos.shape[1] <= n_old:
        return cos.sum() * 0.0
    gt = cos[old].gather(1, y[old].view(-1, 1))
    hard = cos[old, n_old:].topk(min(k, cos.shape[1] - n_old), dim=1).values
    return F.relu(margin - (gt - hard)).mean()


class UCIRPlugin(SupervisedPlugin):
    def __init__(self, net, scenario, params, device, seed: int):
        super().__init__()
        self.net, self.sc, self.p, self.device, self.seed = net, scenario, params, device, seed
        self.memory = ExemplarMemory(params["memory_per_class"], params["memory_total"])
        self.old_model = None
        self.n_old = 0
        self.capture = OutputCapture(net.backbone)  # the pooled features of the strategy's forward
        self.frozen_rows = None
        self.class_means = None

    # -- data ----------------------------------------------------------------------------------------------------
    def after_train_dataset_adaptation(self, strategy, **kwargs):
        append_memory(strategy, self.memory)

    # -- phase start: imprint and freeze the old rows -------------------------------------------------------------
    @torch.no_grad()
    def before_training_exp(self, strategy, **kwargs):
        if self.old_model is None:
            return
        head = self.net.head
        k = strategy.clock.train_exp_counter
        lo, hi = self.sc.group_bounds()[k]
        x, y = materialize(strategy.experience.dataset)
        if self.p["imprint"]:
            norm = head.weight[:lo].norm(dim=1).mean()
            for c in range(lo, hi):
                f = F.normalize(embed(self.net.backbone, x[y == c], self.device), dim=1)
                head.weight[c] = F.normalize(f.mean(0), dim=0).to(head.weight.device) * norm
        self.frozen_rows = head.weight[:lo].detach().clone()

    def after_update(self, strategy, **kwargs):
        if self.frozen_rows is not None:
            with torch.no_grad():
                self.net.head.weight[: len(self.frozen_rows)] = self.frozen_rows

    # -- losses ---------------------------------------------------------------------------------------------------
    def before_backward(self, strategy, **kwargs):
        if self.old_model is None:
            return
        n_new = self.net.head.active - self.n_old
        with torch.no_grad():
            f_old = self.old_model.backbone(strategy.mb_x)
        lam = self.p["kd_weight"] * (math.sqrt(self.n_old / n_new) if self.p["adapt_lambda"] else 1.0)
        lf = less_forget_loss(self.capture.value, f_old)
        mr = margin_ranking_loss(self.net.head.cosine(self.capture.value), strategy.mb_y, self.n_old, self.p["K"],
                                 self.p["margin"])
        strategy.loss = strategy.loss + lam * lf + self.p["lw_mr"] * mr
        record_term(strategy, "ucir_less_forget", lam * lf.detach())  # the two terms apart, for --log
        record_term(strategy, "ucir_margin_ranking", self.p["lw_mr"] * mr.detach())

    # -- phase end ------------------------------------------------------------------------------------------------
    def after_training_exp(self, strategy, **kwargs):
        self.frozen_rows = None
        k = strategy.clock.train_exp_counter
        x, y = materialize(strategy.experience.dataset)
        self.memory.update(self.net.backbone, x, y, self.device)
        if self.old_model is not None and self.p["cbf_epochs"] > 0:
            self.class_balanced_finetune(k)  # on the memory, which now holds the new classes too
        self.class_means = nme_class_means(self.net.backbone, self.memory, self.device).to(self.device)
        self.old_model = frozen_copy(self.net)
        self.n_old = self.sc.seen_after(k)

    def class_balanced_finetune(self, k: int) -> None:
        """Official ``cbf`` (ft_flag 2): classifier rows only, on the exemplars of all classes."""
        x, y = self.memory.tensors()
        x, y = x.to(self.device), y.to(self.device)
        head = self.net.head
        was = self.net.training
        self.net.eval()  # backbone and BatchNorm frozen
        opt = torch.optim.SGD([head.weight], lr=self.p["cbf_lr"], momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.StepLR(opt, max(1, self.p["cbf_epochs"] // 2), 0.1)
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, "class_balanced_finetuning", k))
        for _ in range(self.p["cbf_epochs"]):
            perm = torch.randperm(len(y), generator=gen, device=gen.device).to(self.device)
            for i in range(0, len(y), 128):
                idx = perm[i:i + 128]
                with torch.no_grad():
                    feats = self.net.backbone(augment_batch(x[idx], self.sc.spec.augment, gen))
                cos = head.cosine(feats)
                loss = F.cross_entropy(head.sigma.detach() * cos, y[idx]) + self.p["lw_mr"] * margin_ranking_loss(
                    cos, y[idx], self.n_old, self.p["K"], self.p["margin"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
        self.net.train(was)


@dataclass(frozen=True)
class UCIRParams:
    """CE(sigma cos) + lambda * L_LF + lw_mr * L_MR (Hou et al. Eq. 6-8; official
    ``incremental_train_and_eval_MR_LF.py``)."""

    kd_weight: float = hp(5.0, "lambda_base: weight of the less-forget term",
                          "official class_incremental_cosine_cifar100.py --lamda 5",
                          key_name="lambda_base")
    adapt_lambda: bool = hp(True, "scale it by sqrt(n_old / n_new)", "official --adapt_lamda")
    K: int = hp(2, "hard new-class scores per old sample in the margin ranking", "official --K 2", low=1)
    margin: float = hp(0.5, "margin of the margin ranking", "official --dist 0.5")
    lw_mr: float = hp(1.0, "weight of the margin ranking", "official --lw_mr 1")
    imprint: bool = hp(True, "imprint the new classes' weights from their normalised feature means",
                       "official --imprint_weights")
    remove_last_relu: bool = hp(True, "the last residual block ends without its ReLU",
                                "official modified_resnet_cifar.py: last_phase=True")
    cbf_epochs: int = hp(0, "class-balanced fine-tuning epochs after each phase t > 0 (0: none)",
                         "official cbf_* scripts --cb_finetune; main script: none")
    cbf_lr: float = hp(0.01, "its SGD learning rate (decayed by 10 at half the epochs)",
                       "official cbf_* scripts --ft_base_lr 0.01")


@register_method("ucir", published={"ucir-cnn": "UCIR", "ucir-nme": ""}, cost=(1.0, 1.6), recipe_group="ucir",
                 memory=exemplar_memory_note(EXEMPLAR_DEFAULTS), rows=["ucir-cnn", "ucir-nme"],
                 params=(ExemplarParams, UCIRParams),
                 description="UCIR/LUCIR: cosine classifier, less-forget, margin ranking, herding; CNN and NME rows")
class UCIR(CILMethod):
    phase0_family = "ucir"
    phase0_params = {"remove_last_relu": True}  # the last block's ReLU is part of the phase-0 network

    def __init__(self, ctx):
        super().__init__(ctx)
        net, prm = ctx.model, ctx.params
        self.memory_note = exemplar_memory_note(prm)
        net.head = CosineHead(net.embed_dim, net.num_classes).to(ctx.device)
        stages = getattr(net.backbone, "stages", None)
        if prm["remove_last_relu"] and stages is not None and hasattr(stages[-1][-1], "relu_out"):
            stages[-1][-1].relu_out = False
        self.ucir = UCIRPlugin(net, ctx.scenario, prm, ctx.device, ctx.seed)
        self.suite_plugin = make_suite_plugin(ctx)
        self.strategy = Naive(model=net, optimizer=placeholder_optimizer(net), criterion=nn.CrossEntropyLoss(),
                              train_mb_size=ctx.recipe_for(0).batch_size, device=ctx.device,
                              plugins=[self.ucir, self.suite_plugin], evaluator=quiet_evaluator())

    def scores(self, x):
        f = self.model.backbone(x)
        out = {"ucir-cnn": self.model.head(f)}
        means = self.ucir.class_means
        if means is None:
            out["ucir-nme"] = out["ucir-cnn"]
        else:
            d = (f.unsqueeze(1) - means.unsqueeze(0)).pow(2).sum(2)
            nme = torch.full_like(out["ucir-cnn"], -float("inf"))
            nme[:, : means.shape[0]] = -d
            out["ucir-nme"] = nme
        return out

    def state_dict(self):
        u = self.ucir
        return {"memory": u.memory.state_dict(), "n_old": u.n_old,
                "old_model": None if u.old_model is None else u.old_model.state_dict(),
                "class_means": None if u.class_means is None else u.class_means.cpu()}

    def load_state_dict(self, st):
        u = self.ucir
        u.memory.load_state_dict(st["memory"])
        u.n_old = int(st["n_old"])
        u.old_model = None
        if st["old_model"] is not None:
            u.old_model = frozen_copy(self.model, st["old_model"])
            u.old_model.head.active = u.n_old
        u.class_means = None if st["class_means"] is None else st["class_means"].to(self.ctx.device)
