"""CMI (Fang et al., IJCAI 2021, "Contrastive Model Inversion"), as zju-vipa/CMI's ``CMISynthesizer`` behaves
(``datafree/synthesis/contrastive.py``; read through ``search``, see docs/official-code-dfkd.md).

Synthesis round: the generator is re-initialised and a fresh ``z`` optimised with it (Adam lr 1e-3, betas
(0.5, 0.999)) for ``g_steps`` steps (200 in the scripts) towards sorted random targets, on

    bn * L_bn + oh * CE(T(x_g), targets) + adv * L_adv + cr * L_cr

* ``x_g``, the global view: random crop (padding 4) + flip; ``x_l``, the local view: RandomResizedCrop(scale
  0.25-1) + flip (flips only where the dataset's augmentation flips).
* ``L_bn`` and ``L_adv`` (CMI's masked ``-KL``, student in eval mode) on the global view.
* ``L_cr``: features are the per-channel spatial means of the input of every teacher BatchNorm (``InstanceMeanHook``),
  concatenated; for a teacher without BatchNorm (LeNet-5) the spatial means of its block outputs.  A persistent
  projection head ``Linear(D, D) - ReLU - Linear(D, 256) - L2 normalise`` with its own Adam (lr_g, default betas)
  embeds [local; cached local; global; cached global]; ``contrastive_loss`` at ``contrastive_temperature`` with the
  same sample's global view as the positive.  The memory bank holds raw detached features ``[local, global]``
  (40960 rows; the round's best batch is added after the round; 4096 negatives drawn per step without replacement
  from the filled part).
* The lowest-loss iterate joins the pool; student steps are KD at T = 20 on pool batches (``PoolMethod``).
Recipe (CMI's CIFAR-10 script): adv 0.5, bn 1, oh 1, cr 0.8, cr_T 0.1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.augment import random_flip, random_resized_crop
from benchmark.models.generators import GENERATORS, reset_generator
from benchmark.dfkd_methods import register_dfkd_method
from benchmark.hparams import hp
from strategies.dfkd.best_batch import BestBatch
from strategies.dfkd.losses import bn_hooks, bn_loss, contrastive_loss, masked_adversarial_loss, one_hot_loss
from strategies.dfkd.params import InversionWeights, KDParams, LatentParams, PoolParams, RoundParams
from strategies.dfkd.pool_kd import PoolMethod, frozen


class InstanceMeanHook:
    """Forward hook on a BatchNorm: the spatial mean of its input, (N, C), of the latest forward."""

    def __init__(self, module: nn.Module):
        self.value = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.value = inputs[0].mean((2, 3))


class MemoryBank:
    """A ring buffer of detached feature rows; ``sample(k)`` draws up to k rows without replacement."""

    def __init__(self, size: int, dim: int, device):
        self.data = torch.zeros(size, dim, device=device)
        self.ptr, self.filled = 0, 0

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach()[: len(self.data)]
        idx = (self.ptr + torch.arange(len(rows), device=self.data.device)) % len(self.data)
        self.data[idx] = rows.to(self.data.device, self.data.dtype)  # float32 rows, also under bf16 autocast
        self.ptr = int((self.ptr + len(rows)) % len(self.data))
        self.filled = min(len(self.data), self.filled + len(rows))

    def sample(self, k: int, gen: torch.Generator) -> torch.Tensor:
        if self.filled == 0:
            return self.data[:0]
        idx = torch.randperm(self.filled, generator=gen, device=gen.device)[:k].to(self.data.device)
        return self.data[idx]

    def state_dict(self) -> dict:
        return {"data": self.data[: self.filled].clone(), "ptr": self.ptr, "filled": self.filled}

    def load_state_dict(self, st: dict) -> None:
        self.data[: st["filled"]] = st["data"].to(self.data.device)
        self.ptr, self.filled = int(st["ptr"]), int(st["filled"])


@dataclass(frozen=True)
class ContrastiveParams:
    """CMI's contrastive term over a memory bank of teacher features (Fang et al. Eq. 6-8)."""

    cr: float = hp(0.8, "weight of the contrastive term L_cr", "CMI scripts/cmi/*_cifar10_*.sh --cr 0.8")
    contrastive_temperature: float = hp(0.1, "temperature of L_cr", "CMI scripts --cr_T 0.1", key_name="cr_T")
    head_dim: int = hp(256, "output dimension of the projection head", "CMI datafree_kd.py: head_dim=256", low=1)
    bank_size: int = hp(40960, "rows of the memory bank", "CMI datafree_kd.py: bank_size=40960", low=1)
    n_neg: int = hp(4096, "negatives drawn per step from the bank", "CMI datafree_kd.py: n_neg=4096", low=1)


# synthesis_cost: the teacher runs twice a step (global and local view) and the head embeds 4096 negatives; fitted
# on the committed CIFAR-10 cell's timings (benchmark.dfkd_estimates.predicted_dfkd_seconds)
@register_dfkd_method("cmi", published="CMI", synthesis_cost=2.0,
                      params=(RoundParams, LatentParams, KDParams, InversionWeights, ContrastiveParams, PoolParams),
                      # CMI's CIFAR-10 script: 200 generator steps, every student step of an epoch on the pool, batch
                      # 128, KD at T = 20, adv 0.5, bn 1, oh 1
                      defaults={"g_steps": 200, "kd_steps": 0, "student_batch": 128, "temperature": 20.0,
                                "adv": 0.5, "bn": 1.0, "oh": 1.0},
                      description="CMI (Fang et al. 2021): model inversion with a contrastive term over a memory "
                                  "bank of teacher features; generator re-initialised every round")
class CMI(PoolMethod):
    def __init__(self, ctx):
        super().__init__(ctx)
        c, h, w = ctx.image_shape
        self.generator = GENERATORS["cmi"](nz=int(self.p["nz"]), ngf=ctx.recipe.ngf, img_size=h, nc=c).to(self.device)
        self.hooks = bn_hooks(self.teacher) if self.p["bn"] > 0 else []
        bns = [m for m in self.teacher.modules() if isinstance(m, nn.BatchNorm2d)]
        self.mean_hooks = [InstanceMeanHook(m) for m in bns]
        with torch.no_grad():
            dim = self._features(torch.zeros(2, c, h, w, device=self.device))[1].shape[1]
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True),
                                  nn.Linear(dim, int(self.p["head_dim"]))).to(self.device)
        self.opt_head = torch.optim.Adam(self.head.parameters(), lr=self.p["lr_g"])
        self.bank = MemoryBank(int(self.p["bank_size"]), 2 * dim, self.device)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(teacher logits, contrastive features) of one forward pass."""
        emb, blocks = self.teacher.backbone(x, return_blocks=True)
        logits = self.teacher.head(emb)
        if self.mean_hooks:
            feat = torch.cat([h.value for h in self.mean_hooks], 1)
        else:
            feat = torch.cat([b.mean((2, 3)) for b in blocks], 1)
        return logits, feat

    def _local_view(self, x: torch.Tensor) -> torch.Tensor:
        x = random_resized_crop(x, self.gen, scale=(0.25, 1.0))
        return random_flip(x, self.gen) if self.ctx.augment.flip else x

    def synthesize(self) -> dict:
        p = self.p
        reset_generator(self.generator)
        self.generator.train()
        n = self.ctx.recipe.synthesis_batch
        z = self.randn(n, int(p["nz"])).requires_grad_(True)
        targets = self.random_targets(n)
        opt = torch.optim.Adam([{"params": self.generator.parameters()}, {"params": [z]}], lr=p["lr_g"],
                               betas=tuple(p["g_betas"]))
        best, parts = BestBatch(), {}
        with frozen(self.student):
            for _ in range(self.g_steps):
                x = self.generator(z)
                x_global = self.synthesis_augment(x)
                t_logits, f_global = self._features(x_global)
                parts = {"oh": one_hot_loss(t_logits, targets)}
                if self.hooks:
                    parts["bn"] = bn_loss(self.hooks).to(self.device)
                if p["adv"]:
                    parts["adv"] = masked_adversarial_loss(self.student(x_global), t_logits)
                _, f_local = self._features(self._local_view(x))
                if p["cr"]:
                    cached = self.bank.sample(int(p["n_neg"]), self.gen)
                    d = f_local.shape[1]
                    proj = F.normalize(self.head(torch.cat([f_local, cached[:, :d], f_global, cached[:, d:]])), dim=1)
                    half = len(proj) // 2
                    parts["cr"] = contrastive_loss(proj[:half], proj[half:], n, p["contrastive_temperature"])
                loss = sum(p[k] * v for k, v in parts.items())
                best.update(loss, x, torch.cat([f_local, f_global], 1))
                opt.zero_grad(set_to_none=True)
                self.opt_head.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.opt_head.step()
        self.bank.add(best.extra)
        self.add_to_pool(best.x)
        return {"loss_g": best.loss, **{k: v.item() for k, v in parts.items()}}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "head": self.head.state_dict(), "opt_head": self.opt_head.state_dict(),
                "bank": self.bank.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.head.load_state_dict(state["head"])
        self.opt_head.load_state_dict(state["opt_head"])
        self.bank.load_state_dict(state["bank"])
