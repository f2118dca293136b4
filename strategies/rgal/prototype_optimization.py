"""RGAL's L'_g for non-exemplar class-incremental learning (RGAL paper Sec. 5.3, Eq. 17): the augmented prototype
samples of a training step are optimised before they enter the prototype loss.

"prototypes of old classes are optimized by the losses in Equation (17) for 10 steps with a learning rate of 0.001
before training": at every step of phase t > 0 the drawn samples ``p`` (``p_c + N(0, I) r``) are moved for
``steps`` Adam steps (lr 1e-3) to minimise ``-L_adv + L_ntri + L_oh``:

* ``L_adv = KL(p_old || p_cur)`` over the old classes at temperature 1, between the frozen previous model's head and
  the current head (for PASS the unrotated outputs ``[:, ::4]``) -- maximised, so the samples move to where the two
  heads disagree;
* ``L_oh = CE(head_old(p), c)`` keeps each sample recognisable as its class; for PASS on the same unrotated old-class
  scores ``[:, ::4]`` as ``L_adv``, label ``c`` (deliberate: the specification leaves open whether it runs over the rotated
  head with label ``4c`` like PASS's own prototype loss; both terms then judge the samples by the scores the
  evaluation uses, and a sample of class ``c`` is an unrotated embedding, whose rotated rows ``4c+1..4c+3`` PASS's
  loss never asks for);
* ``L_ntri``: the reversed triplet hinge (Eq. 3; positive and negative swapped inside the hinge), negatives drawn by
  focal-weighted sampling on the L2-normalised old-model logits, pushing same-class samples apart and pulling
  different classes together.

Only the samples move (``torch.autograd.grad`` w.r.t. the samples: no gradient reaches the models) and the stored
class means are never modified.  ``movement`` records mean ``||p' - p|| / r`` per phase.

``schedule`` (the specification's option; the paper's "before training" admits both readings): ``"step"`` (default) optimises
each step's drawn samples; ``"phase"`` / ``"epoch"`` optimise a pool of ``pool_per_class`` augmented samples of
every old class once before the phase / before each epoch, and each step's samples are then drawn from the pool
(same classes as the step's draw, a uniform pick among that class's pool entries).  Before a phase the current head
still equals the previous one on the old classes, so ``L_adv`` is 0 for the ``"phase"`` pool and for the first
``"epoch"`` pool and only ``L_ntri`` + ``L_oh`` move them; they are built against the previous head (that same
function at the phase's start, and still available when a phase resumes mid-way, which keeps the resumed phase
exact) with the ``L_adv`` term dropped, not left to float noise, which Adam would scale up to full steps.  The pools'
noise and the picks from them draw from generators seeded by (seed, phase, epoch); ``L_ntri``'s negative sampler
draws from the method's RGAL generator, checkpointed with every epoch.  The movement figures are checkpointed too
(``training_state``), so a resumed phase reports what the uninterrupted one would have.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from benchmark.loss_terms import record_term
from benchmark.seeds import derive_epoch_seed
from strategies.rgal.losses import sampled_triplet_loss


def optimize_prototypes(p: torch.Tensor, c: torch.Tensor, head_old, head_cur, steps: int = 10, lr: float = 1e-3,
                        optimizer: str = "adam", w_adv: float = 1.0, w_ntri: float = 1.0, w_oh: float = 1.0,
                        label_scale: int = 1, sampler: str = "focal", generator=None, triplet_kw=None,
                        n_old: int | None = None, sample_on: str = "logits", terms: dict | None = None):
    """Returns the optimised samples (detached).  ``head_*``: embedding -> logits; logits ``[:, ::label_scale]``
    are the class scores (PASS: 4); both heads are cut to the ``n_old`` old classes (default ``max(c) + 1``).
    ``triplet_kw``: ``margin`` / ``squared`` / ``sampler_kw`` of ``L_ntri``, whose distances are on the samples;
    ``sample_on``: where its negatives are sampled, the old head's logits (default) or the samples themselves.
    ``terms``: a dict that receives the weighted terms of the last step (``adv`` = -w_adv L_adv, ``ntri``, ``oh``;
    detached), for the experiment logs."""
    if sample_on not in ("logits", "embedding"):
        raise ValueError(f"sample_on must be logits or embedding, not {sample_on!r}")
    n_old = int(c.max()) + 1 if n_old is None else n_old
    x = p.detach().clone().requires_grad_(True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([x], lr=lr)
    for _ in range(steps):
        old = head_old(x)[:, ::label_scale][:, :n_old]
        cur = head_cur(x)[:, ::label_scale][:, :n_old]
        l_adv = F.kl_div(F.log_softmax(cur, 1), F.softmax(old, 1), reduction="batchmean")
        l_oh = F.cross_entropy(old, c)
        l_ntri = sampled_triplet_loss(x, c, sample_on=old if sample_on == "logits" else None, sampler=sampler,
                                      reverse=True, generator=generator,
                                      **(triplet_kw or {}))
        loss = -w_adv * l_adv + w_ntri * l_ntri + w_oh * l_oh
        if terms is not None:
            terms.update(adv=-w_adv * l_adv.detach(), ntri=w_ntri * l_ntri.detach(), oh=w_oh * l_oh.detach())
        (grad,) = torch.autograd.grad(loss, x)
        opt.zero_grad()
        x.grad = grad
        opt.step()
    return x.detach()


SCHEDULES = ("step", "phase", "epoch")


class PrototypeOptimizationPlugin(SupervisedPlugin):
    """Installs ``optimize_prototypes`` as the ``sample_hook`` of a ``PrototypeBank``: every draw of the bank (by
    whichever prototype loss samples it: PASS's ``PrototypeAugmentationPlugin``, SSRE's, a user's own) is optimised
    before the loss sees it.  Needs only the bank, the previous model (``old_holder.model``) and the current head.
    ``schedule``/``pool_per_class``/``seed``/``epoch_fn`` select and seed the pool modes (module docstring);
    ``epoch_fn`` gives the current epoch of the phase (default: the plugin's own count)."""

    def __init__(self, bank, old_holder, head_cur, label_scale=1, schedule: str = "step",
                 pool_per_class: int = 20, seed: int = 0, epoch_fn=None, **kw):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
        if pool_per_class < 1:
            raise ValueError(f"pool_per_class must be at least 1, not {pool_per_class}")
        self.old, self.head_cur, self.scale, self.kw = old_holder, head_cur, label_scale, kw
        self.bank = bank
        self.schedule, self.pool_per_class, self.seed = schedule, pool_per_class, seed
        self.epoch_fn = epoch_fn
        self._epoch = 0
        self.pool = None  # (optimised samples, class -> its first row)
        self._picks = None  # generator of the picks from the pool
        self.movement: list[float] = []  # mean ||p' - p|| / r of each phase (t > 0)
        self._moves: list[float] = []
        bank.install_sample_hook(self.hook)

    def _n_old(self):
        return max(self.bank.classes) + 1 if len(self.bank) else None

    def _optimize(self, p, c, head_cur, strategy=None, **override):
        terms = {}
        new = optimize_prototypes(p, c, self.old.model.head, head_cur, label_scale=self.scale, n_old=self._n_old(),
                                  terms=terms, **{**self.kw, **override})
        r = self.bank.radius or 1.0
        self._moves.append(float((new - p).norm(dim=1).mean()) / r)
        if strategy is not None:  # the experiment logs (--log): Eq. 17's terms at the last step, and the movement
            for name, v in terms.items():
                record_term(strategy, f"rgal_proto_{name}", v)
            record_term(strategy, "rgal_proto_movement", self._moves[-1])
        return new

    def _gen(self, strategy, epoch: int, stream: str = "rgal_pool") -> torch.Generator:
        phase = strategy.experience.current_experience
        return torch.Generator().manual_seed(derive_epoch_seed(self.seed, stream, phase, epoch))

    def _build_pool(self, strategy, epoch: int):
        bank = self.bank
        if self.old.model is None or len(bank) == 0:
            self.pool = None
            return
        k = self.pool_per_class
        p, c = bank.augmented(k, self._gen(strategy, epoch), device=strategy.device)
        if self.schedule == "phase" or epoch == 0:  # the heads still agree: L_adv is identically 0 (docstring)
            new = self._optimize(p, c, self.old.model.head, strategy, w_adv=0.0)
        else:
            new = self._optimize(p, c, self.head_cur, strategy)
        self.pool = (new, {v: i * k for i, v in enumerate(bank.classes)})

    def training_state(self) -> list[float]:
        """What a mid-phase checkpoint must carry: the movements of the phase so far."""
        return list(self._moves)

    def load_training_state(self, moves: list[float]) -> None:
        self._moves = list(moves)

    def before_training_exp(self, strategy, **kwargs):
        self._epoch = 0
        if self.schedule == "phase":
            self._build_pool(strategy, 0)

    def before_training_epoch(self, strategy, **kwargs):
        epoch = self.epoch_fn() if self.epoch_fn is not None else self._epoch
        self._epoch += 1
        if self.schedule == "epoch":
            self._build_pool(strategy, epoch)
        # re-seeded every epoch: a resumed epoch picks the same samples
        self._picks = self._gen(strategy, epoch, "rgal_pool_picks")

    def hook(self, p, c, strategy):
        if self.schedule == "step":
            return self._optimize(p, c, self.head_cur, strategy)
        pool, first = self.pool
        start = torch.tensor([first[int(v)] for v in c.tolist()])
        idx = start + torch.randint(0, self.pool_per_class, (len(c),), generator=self._picks)
        return pool[idx.to(pool.device)]

    def after_training_exp(self, strategy, **kwargs):
        if self._moves:
            self.movement.append(sum(self._moves) / len(self._moves))
            self._moves = []
