"""RGAL's L'_g for non-exemplar class-incremental learning (RGAL paper Sec. 5.3, Eq. 17): the augmented prototype
samples of a training step are optimised before they enter the prototype loss.

"prototypes of old classes are optimized by the losses in Equation (17) for 10 steps with a learning rate of 0.001
before training": at every step of phase t > 0 the drawn samples ``p`` (``p_c + N(0, I) r``) are moved for
``steps`` Adam steps (lr 1e-3) to minimise ``-L_adv + L_ntri + L_oh``:

* ``L_adv = KL(p_old || p_cur)`` over the old classes at temperature 1, between the frozen previous model's head and
  the current head (for PASS the unrotated outputs ``[:, ::4]``) -- maximised, so the samples move to where the two
  heads disagree;
* ``L_oh = CE(head_old(p), c)`` keeps each sample recognisable as its class;
* ``L_ntri``: the reversed triplet hinge (Eq. 3; positive and negative swapped inside the hinge), negatives drawn by
  focal-weighted sampling on the L2-normalised old-model logits, pushing same-class samples apart and pulling
  different classes together.

Only the samples move (``torch.autograd.grad`` w.r.t. the samples: no gradient reaches the models) and the stored
class means are never modified.  ``movement`` records mean ``||p' - p|| / r`` per phase.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from strategies.rgal.losses import sampled_triplet_loss


def optimize_prototypes(p: torch.Tensor, c: torch.Tensor, head_old, head_cur, steps: int = 10, lr: float = 1e-3,
                        optimizer: str = "adam", w_adv: float = 1.0, w_ntri: float = 1.0, w_oh: float = 1.0,
                        label_scale: int = 1, sampler: str = "focal", generator=None, triplet_kw=None,
                        n_old: int | None = None):
    """Returns the optimised samples (detached).  ``head_*``: embedding -> logits; logits ``[:, ::label_scale]``
    are the class scores (PASS: 4); both heads are cut to the ``n_old`` old classes (default ``max(c) + 1``)."""
    n_old = int(c.max()) + 1 if n_old is None else n_old
    x = p.detach().clone().requires_grad_(True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([x], lr=lr)
    for _ in range(steps):
        old = head_old(x)[:, ::label_scale][:, :n_old]
        cur = head_cur(x)[:, ::label_scale][:, :n_old]
        l_adv = F.kl_div(F.log_softmax(cur, 1), F.softmax(old, 1), reduction="batchmean")
        l_oh = F.cross_entropy(old, c)
        l_ntri = sampled_triplet_loss(x, c, sample_on=old, sampler=sampler, reverse=True, generator=generator,
                                      **(triplet_kw or {}))
        loss = -w_adv * l_adv + w_ntri * l_ntri + w_oh * l_oh
        (grad,) = torch.autograd.grad(loss, x)
        opt.zero_grad()
        x.grad = grad
        opt.step()
    return x.detach()


class PrototypeOptimizationPlugin(SupervisedPlugin):
    """Installs ``optimize_prototypes`` as the ``sample_hook`` of a prototype-loss plugin (e.g. PASS's
    ``PrototypeAugmentationPlugin``): any strategy with a prototype bank, an old model and such a hook can use it."""

    def __init__(self, proto_plugin, old_holder, head_cur, radius_fn, label_scale=1, **kw):
        super().__init__()
        self.old, self.head_cur, self.radius_fn, self.scale, self.kw = old_holder, head_cur, radius_fn, label_scale, kw
        self.proto_plugin = proto_plugin
        self.movement: list[float] = []  # mean ||p' - p|| / r of each phase (t > 0)
        self._moves: list[float] = []
        proto_plugin.sample_hook = self.hook

    def hook(self, p, c, strategy):
        bank = getattr(self.proto_plugin, "bank", None)
        n_old = max(bank.classes) + 1 if bank is not None and len(bank) else None
        new = optimize_prototypes(p, c, self.old.model.head, self.head_cur, label_scale=self.scale, n_old=n_old,
                                  **self.kw)
        r = self.radius_fn() or 1.0
        self._moves.append(float((new - p).norm(dim=1).mean()) / r)
        return new

    def after_training_exp(self, strategy, **kwargs):
        if self._moves:
            self.movement.append(sum(self._moves) / len(self._moves))
            self._moves = []
