"""Loss terms of the data-free distillation methods as small pure functions, each checked against
hand-computed values in ``tests/test_dfkd_losses.py``.  Sources: zju-vipa/CMI ``datafree`` (``criterions.kldiv``,
``hooks.DeepInversionHook``, ``synthesis``), DAFL, DFAD, the RGAL paper and the activation-regularisation paper
(Qu, Wang, Xiao, ICASSP 2021).

* ``kd_loss`` -- ``KL(p_T || p_S)`` at temperature T, batch mean, scaled by T^2 (T = 20 for CMI / RGAL; T = 1 for
  the generator-based baselines: CMI's ``datafree_kd.py`` replaces their criterion by ``KLDiv()``).
* ``masked_adversarial_loss`` -- CMI / RGAL's ``L_adv``: ``-mean_i([argmax s_i == argmax t_i] * KL(p_T,i || p_S,i))``
  at T = 1, averaged over the whole batch (masked samples count as 0).
* ``BNStatsHook`` / ``bn_loss`` -- DeepInversion's BN-statistics term on the inputs of every BatchNorm of the teacher:
  ``||mu - running_mean||_2 + ||var - running_var||_2`` (biased variance, not squared), summed over layers.  A
  teacher without BatchNorm (LeNet-5 on MNIST) has no hooks and the term is 0, so on MNIST DFQ, DeepInversion, CMI
  and RGAL synthesise without their BN prior (the official codes assert BN layers and cannot run such a teacher; the
  ``cpu``/``paper`` MNIST profile notes say so in every report).
* ``one_hot_loss`` -- ``CE(t, argmax t)`` (DAFL) or ``CE(t, targets)`` for sampled targets (CMI, DeepInversion).
* ``activation_loss`` -- DAFL's ``-mean |f_T|``; the activation-regularisation paper's ``R_m`` (Eq. 3).
* ``balance_loss`` -- DAFL's information entropy term ``sum_c p_mean,c log p_mean,c`` (minimised: classes balanced).
* ``tv_loss`` -- DeepInversion's total variation prior: mean absolute difference to the neighbour in 4 directions
  (right, down, two diagonals), summed.
* ``l1_logits`` -- DFAD's mean absolute error between logits (both players).
* ``js_divergence`` -- DeepInversion's adversarial competition term as CMI writes it (``criterions.jsdiv``):
  ``P = softmax(s/T)``, ``Q = softmax(t/T)``, ``M = (P + Q)/2``, all clamped to [0.01, 0.99],
  ``0.5 KL(M || P) + 0.5 KL(M || Q)`` (batch mean, no T^2), T = 3.
* ``contrastive_loss`` -- CMI's instance contrastive term: rows of ``proj_local`` (current batch, then cached
  negatives) against ``proj_global`` (detached) at temperature ``contrastive_temperature`` (CMI's ``cr_T``), the
  same-index global view as positive; with cached rows, the mean CE over the current rows plus the mean over the
  cached rows.
* ``virtual_interpolation`` -- the activation-regularisation paper's Eq. 4-9: ``x_v = lam x_i + (1 - lam) x_j``
  with ``lam ~ Beta(alpha, alpha)`` per sample, target ``lam T(x_i) + (1 - lam) T(x_j)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(s_logits / t, 1), F.softmax(t_logits / t, 1), reduction="batchmean") * t * t


def masked_adversarial_loss(s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    mask = (s_logits.argmax(1) == t_logits.argmax(1)).float()
    kl = F.kl_div(F.log_softmax(s_logits, 1), F.softmax(t_logits, 1), reduction="none").sum(1)
    return -(kl * mask).mean()


class BNStatsHook:
    """Forward hook on a BatchNorm2d: ``r_feature`` of the latest forward.  Computed only when autograd is on: the
    term is a synthesis loss, and the teacher's forwards of student steps (under ``no_grad``) need no statistics
    (None there, so a misplaced ``bn_loss`` contributes nothing rather than a stale value)."""

    def __init__(self, module: nn.BatchNorm2d):
        self.module = module
        self.r_feature = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if not torch.is_grad_enabled():
            self.r_feature = None
            return
        x = inputs[0].float()  # the statistics in float32 under bf16 autocast (benchmark.precision)
        mean = x.mean((0, 2, 3))
        var = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).var(1, unbiased=False)
        self.r_feature = torch.norm(module.running_var - var, 2) + torch.norm(module.running_mean - mean, 2)

    def remove(self):
        self.handle.remove()


def bn_hooks(model: nn.Module) -> list[BNStatsHook]:
    return [BNStatsHook(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def bn_loss(hooks: list[BNStatsHook]) -> torch.Tensor:
    vals = [h.r_feature for h in hooks if h.r_feature is not None]
    return torch.stack(vals).sum() if vals else torch.tensor(0.0)


def one_hot_loss(t_logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(t_logits, t_logits.argmax(1) if targets is None else targets)


def activation_loss(features: torch.Tensor) -> torch.Tensor:
    return -features.abs().mean()


def balance_loss(t_logits: torch.Tensor) -> torch.Tensor:
    p = F.softmax(t_logits, 1).mean(0)
    return (p * torch.log(p)).sum()


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    d1 = (x[:, :, :, :-1] - x[:, :, :, 1:]).abs().mean()
    d2 = (x[:, :, :-1, :] - x[:, :, 1:, :]).abs().mean()
    d3 = (x[:, :, 1:, :-1] - x[:, :, :-1, 1:]).abs().mean()
    d4 = (x[:, :, :-1, :-1] - x[:, :, 1:, 1:]).abs().mean()
    return d1 + d2 + d3 + d4


def js_divergence(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float = 3.0) -> torch.Tensor:
    p = F.softmax(s_logits / temperature, 1)
    q = F.softmax(t_logits / temperature, 1)
    m = 0.5 * (p + q)
    p, q, m = (v.clamp(0.01, 0.99) for v in (p, q, m))
    return 0.5 * F.kl_div(p.log(), m, reduction="batchmean") + 0.5 * F.kl_div(q.log(), m, reduction="batchmean")


def contrastive_loss(proj_local: torch.Tensor, proj_global: torch.Tensor, n_current: int,
                     temperature: float = 0.1) -> torch.Tensor:
    logits = proj_local @ proj_global.detach().t() / temperature
    rows = F.cross_entropy(logits, torch.arange(len(logits), device=logits.device), reduction="none")
    if len(rows) > n_current:
        return rows[:n_current].mean() + rows[n_current:].mean()
    return rows.mean()


def l1_logits(s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(s_logits, t_logits)


def virtual_interpolation(x: torch.Tensor, t_logits: torch.Tensor, alpha: float = 1.0,
                          generator: torch.Generator | None = None):
    """Pairs each sample with a random partner (a permutation of the batch): ``(x_v, t_v, lam)``."""
    n = x.shape[0]
    gen = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
    lam = beta_sample(alpha, n, gen).to(x.device)
    perm = torch.randperm(n, generator=gen, device=gen.device).to(x.device)
    lx = lam.view(-1, *([1] * (x.dim() - 1)))
    x_v = lx * x + (1 - lx) * x[perm]
    t_v = lam.view(-1, 1) * t_logits + (1 - lam.view(-1, 1)) * t_logits[perm]
    return x_v, t_v, lam


def gamma_sample(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` Gamma(alpha, 1) draws from a seeded generator (Marsaglia-Tsang; ``alpha < 1`` through
    ``Gamma(alpha + 1) * U^(1 / alpha)``): ``torch.distributions`` cannot take a generator, whose state the
    checkpoints keep."""
    dev = generator.device
    if alpha < 1.0:
        u = torch.rand(n, generator=generator, device=dev)
        return gamma_sample(alpha + 1.0, n, generator) * u.pow(1.0 / alpha)
    d = alpha - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(n, device=dev)
    todo = torch.arange(n, device=dev)
    while len(todo):
        z = torch.randn(len(todo), generator=generator, device=dev)
        u = torch.rand(len(todo), generator=generator, device=dev)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    return out


def beta_sample(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) = X / (X + Y) with X, Y ~ Gamma(alpha)."""
    x = gamma_sample(alpha, n, generator)
    y = gamma_sample(alpha, n, generator)
    return x / (x + y)
