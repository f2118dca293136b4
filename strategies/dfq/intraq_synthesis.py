"""IntraQ's synthetic images (zysxmu/IntraQ ``data_generate/distill_data.py``,
``getDistilData_hardsample_cosineDistanceEMA_interClass_aug``): each batch is optimised directly in pixel space
against the frozen teacher, then kept fixed for the quantized student's fine-tuning.

Per batch (official CIFAR-100 values in brackets): labels uniform at random (not class-balanced), images
``N(0, I)`` in the teacher's normalised input space (no clamping, no image prior), Adam (lr 0.5) with
ReduceLROnPlateau (factor 0.1, patience 50, min lr 1e-4) stepped on the loss every iteration, for ``steps`` (1000)
iterations of

    L = L_BN + L_soft + L_MDC

all at weight 1: the BN-statistics MSE (``strategies.dfq.losses.bns_loss``), the soft inception loss on targets
drawn once per batch (``soft_targets``, floor 0.6) and the marginal distance constraint (bounds 0.02 / 1.0) against
the class centres of the images synthesised before this batch (``ClassCentres``: per class the mean pooled teacher
feature of the un-augmented images, in eval mode; the first batch has none).  Local object reinforcement: each
iteration, with probability 0.5 the whole batch is replaced by a random resized crop (area 0.5-1, aspect 3/4-4/3)
and a random horizontal flip of each image before the teacher sees it (``benchmark.augment.random_resized_crop``,
differentiable; applied in [0, 1]-space, which commutes with the per-channel affine normalisation the official code
applies it after).  The suite's models normalise inside, so images enter the teacher as ``x * std + mean`` and are
returned in that [0, 1]-space (unclamped, as optimised).
"""
from __future__ import annotations

import torch

from benchmark.augment import random_flip, random_resized_crop
from strategies.dfq.losses import bns_loss, marginal_distance_loss, moment_hooks, soft_inception_loss, soft_targets


class ClassCentres:
    """Per-class mean of the pooled teacher features of the images synthesised so far (IntraQ's centres)."""

    def __init__(self, n_classes: int, dim: int):
        self.sums = torch.zeros(n_classes, dim)
        self.counts = torch.zeros(n_classes)

    @torch.no_grad()
    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        f, y = features.detach().float().cpu(), labels.cpu()
        self.sums.index_add_(0, y, f)
        self.counts.index_add_(0, y, torch.ones(len(y)))

    def of(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(centres, has_centre) of each label; a class without images yet gets a zero vector and 0."""
        c = self.counts[labels.cpu()]
        return self.sums[labels.cpu()] / c.clamp(min=1).unsqueeze(1), (c > 0).float()

    def state_dict(self) -> dict:
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.counts = state["sums"].clone(), state["counts"].clone()


def synthesize_batch(teacher, labels: torch.Tensor, centres: ClassCentres, gen: torch.Generator, mean, std,
                     image_shape, steps: int = 1000, lr: float = 0.5, min_lr: float = 1e-4, patience: int = 50,
                     target_low: float = 0.6, lower: float = 0.02, upper: float = 1.0, lor_prob: float = 0.5,
                     lor_scale: float = 0.5, extra=None) -> torch.Tensor:
    """One batch of IntraQ images for ``labels`` in [0, 1]-space (detached); ``centres`` is read, not updated
    (the caller adds the batch once it is final).  ``teacher``: eval mode, frozen.  ``extra(img, teacher_logits)``
    -> (loss, figures): more terms of the loss (RGAL's), on the same possibly augmented images."""
    dev = labels.device
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
    x = torch.randn((len(labels), *image_shape), generator=gen, device=gen.device).to(dev).requires_grad_(True)
    targets = soft_targets(len(labels), target_low, gen if gen.device.type == "cpu" else None).to(dev)
    c, has = centres.of(labels)
    c, has = c.to(dev), has.to(dev)
    opt = torch.optim.Adam([x], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=patience, min_lr=min_lr)
    hooks = moment_hooks(teacher)
    try:
        for _ in range(steps):
            img = x * std_t + mean_t
            if float(torch.rand((), generator=gen, device=gen.device)) < lor_prob:
                img = random_flip(random_resized_crop(img, gen, scale=(lor_scale, 1.0)), gen)
            logits, feat = teacher.forward_features(img)
            loss = bns_loss(hooks).to(dev) + soft_inception_loss(logits, labels, targets) + \
                marginal_distance_loss(feat, c, has, lower, upper)
            if extra is not None:
                loss = loss + extra(img, logits)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step(loss.item())
    finally:
        for h in hooks:
            h.remove()
    return (x * std_t + mean_t).detach()
