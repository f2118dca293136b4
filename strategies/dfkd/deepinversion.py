"""DeepInversion (Yin et al., CVPR 2020) as zju-vipa/CMI's ``DeepInvSyntheiszer`` runs it
(``datafree/synthesis/deepinversion.py``): pixels are optimised directly, no generator.

A synthesis round starts from ``x ~ N(0, I)`` in the normalised input space and sorted random targets, and takes
``g_steps`` Adam steps (lr 0.1, betas (0.5, 0.99)) on

    bn * L_bn + oh * CE(T(j(x)), targets) + adv * (-JS_3(S(j(x)), T(j(x)))) + tv * TV(x)

with ``j`` CMI's ``jitter_and_flip`` (one random roll of up to ``img_size / 8`` pixels for the whole batch, and the
whole batch flipped with probability 1/2 where the dataset's augmentation flips), ``JS_3`` the clamped
Jensen-Shannon divergence at T = 3 (``losses.js_divergence``; the student in eval mode) and ``TV`` on the un-jittered
normalised images.  After every step the pixels are clamped to the valid range ([0, 1] before normalisation).
Recipe (CMI's DeepInversion script): 1000 steps, lr 0.1, adv 1, bn 10, oh 1, tv 1e-3; student steps KD at T = 20 on
pool batches.

``keep="best"`` (default) adds the lowest-loss iterate to the pool, as CMI's own synthesiser does; the official
DeepInversion synthesiser keeps a reference to the pixel tensor that the optimiser then updates in place, so it
effectively saves the last iterate: ``keep="last"`` reproduces that.

A teacher without BatchNorm (LeNet-5 on MNIST) has no ``L_bn``: the term is left out (0), which is what the official
loss would give with its ``assert`` on the hooks removed (that code cannot run such a teacher).  Without its BN prior
the method inverts the teacher into patterns it classifies confidently, and on MNIST the students score far below the
generator-based methods (``results/README.md``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.dfkd_methods import register_dfkd_method
from benchmark.hparams import hp
from strategies.dfkd.best_batch import BestBatch
from strategies.dfkd.losses import bn_hooks, bn_loss, js_divergence, one_hot_loss, tv_loss
from strategies.dfkd.params import InversionWeights, KDParams, PoolParams, RoundParams
from strategies.dfkd.pool_kd import PoolMethod, frozen

@dataclass(frozen=True)
class PixelParams:
    """DeepInversion's own terms and options (Yin et al. Eq. 2-8 as CMI's ``DeepInvSyntheiszer``)."""

    tv: float = hp(1e-3, "weight of the total-variation prior", "CMI scripts/deepinv --tv 1e-3")
    js_temperature: float = hp(3.0, "temperature of the adversarial Jensen-Shannon term",
                               "CMI deepinversion.py jsdiv(T=3)", key_name="js_T")
    jitter: int = hp(0, "largest random roll in pixels (0: img_size / 8)", "CMI jitter_and_flip: img_size // 8")
    keep: str = hp("best", "the iterate added to the pool: lowest loss, or the last",
                   "CMI synthesisers: best; official DeepInversion: last", choices=("best", "last"))


@register_dfkd_method("deepinversion", published="DeepInv", synthesis_cost=1.0, generator=False,
                      params=(RoundParams, KDParams, InversionWeights, PixelParams, PoolParams),
                      # CMI's scripts/deepinv: 1000 steps at lr 0.1, betas (0.5, 0.99), adv 1, bn 10, oh 1, KD at T 20;
                      # student_batch 256 (RoundParams' default): the official script
                      # (scripts/deepinv/deepinv_cifar10_wrn402_wrn161.sh) trains the student on batches of
                      # --batch_size 256, its synthesis batch (checked by benchmarks/fidelity; the profiles below
                      # `paper` set their own batch)
                      defaults={"g_steps": 1000, "kd_steps": 0, "lr_g": 0.1, "g_betas": [0.5, 0.99],
                                "temperature": 20.0, "adv": 1.0, "bn": 10.0, "oh": 1.0},
                      description="DeepInversion (Yin et al. 2020): pixels optimised on BN statistics, one-hot, "
                                  "adversarial JS and TV; CMI's recipe")
class DeepInversion(PoolMethod):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.hooks = bn_hooks(self.teacher) if self.p["bn"] > 0 else []
        c = ctx.image_shape[0]
        self.mean = torch.tensor(ctx.mean, device=self.device).expand(c).view(1, -1, 1, 1)
        self.std = torch.tensor(ctx.std, device=self.device).expand(c).view(1, -1, 1, 1)

    def jitter_and_flip(self, x: torch.Tensor) -> torch.Tensor:
        lim = int(self.p["jitter"]) or x.shape[-1] // 8
        off = torch.randint(-lim, lim + 1, (2,), generator=self.gen, device=self.gen.device).tolist()
        x = torch.roll(x, shifts=(off[0], off[1]), dims=(2, 3))
        if self.ctx.augment.flip and float(torch.rand(1, generator=self.gen, device=self.gen.device)) < 0.5:
            x = x.flip(3)
        return x

    def synthesize(self) -> dict:
        p = self.p
        n, (c, h, w) = self.ctx.recipe.synthesis_batch, self.ctx.image_shape
        x = self.randn(n, c, h, w).requires_grad_(True)  # normalised space, as CMI
        targets = self.random_targets(n)
        opt = torch.optim.Adam([x], lr=p["lr_g"], betas=tuple(p["g_betas"]))
        best, parts = BestBatch(), {}
        lo, hi = -self.mean / self.std, (1 - self.mean) / self.std
        with frozen(self.student):
            for _ in range(self.g_steps):
                xj = self.jitter_and_flip(x) * self.std + self.mean  # the models take [0, 1] images
                t_logits = self.teacher(xj)
                parts = {"oh": one_hot_loss(t_logits, targets), "tv": tv_loss(x)}
                if self.hooks:
                    parts["bn"] = bn_loss(self.hooks).to(self.device)
                if p["adv"]:
                    parts["adv"] = -js_divergence(self.student(xj), t_logits, p["js_temperature"])
                loss = sum(p[k] * v for k, v in parts.items())
                best.update(loss, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.copy_(torch.maximum(torch.minimum(x, hi), lo))
        kept = x.detach() if p["keep"] == "last" else best.x
        self.add_to_pool((kept * self.std + self.mean).clamp(0, 1))
        return {"loss_g": best.loss, **{k: v.item() for k, v in parts.items()}}
