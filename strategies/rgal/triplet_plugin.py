"""RGAL's L'_s for class-incremental training (RGAL paper Sec. 5.3: "in incremental training, we also add an extra
positive triplet loss L_tri", Eq. 5), as an Avalanche plugin: ``weight * L_tri`` is added to ``strategy.loss``.

Defaults (from the released code, which produced the published numbers): the triplet loss acts on the
pooled embeddings of the batch's *unrotated* images with their labels y (``stride=4`` for PASS's rotated batches,
whose four rotations of an image are adjacent; ``rotated_as_classes=True`` uses every rotated image with its label
``4y + k``); negatives are drawn by distance-weighted sampling on the L2-normalised logits (for PASS the class
logits ``[:, ::4]``); L2-normalised embeddings, non-squared distance, margin 0.2, weight 0.1.  Batches should be
paired (``strategies.rgal.paired_sampling``) so that every anchor has a positive.  Options: ``embedding`` "feature"
(pooled feature), "logits" or "both" (the sum of the two losses: the paper's Table 6), ``sample_on`` "logits" or
"embedding", any sampler of ``strategies.rgal.samplers``, ``squared`` (the paper's form), and
``prototypes_as_negatives`` (old-class prototypes of a bank join the batch as extra negatives only; off by default).
The loss acts from experience ``from_phase`` on (default 1, "in incremental training"; the released RGAL code has no
class-incremental part to say otherwise), so that phase 0 -- shared through the phase-0 cache with the strategy
without RGAL -- does not depend on the plugin.
"""
from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from strategies.rgal.losses import sampled_triplet_loss


class TripletLossPlugin(SupervisedPlugin):
    loss_name = "rgal_tri"  # weight * L_tri in the experiment logs (benchmark.loss_terms)

    def __init__(self, capture, weight: float = 0.1, stride: int = 1, label_scale: int = 1,
                 rotated_as_classes: bool = False, embedding: str = "feature", sample_on: str = "logits",
                 sampler: str = "distance", margin: float = 0.2, squared: bool = False, head=None, bank=None,
                 prototypes_as_negatives: bool = False, generator: torch.Generator | None = None, sampler_kw=None,
                 from_phase: int = 1):
        """``capture``: an object whose ``features`` is the pooled embedding of the latest forward (PASS's
        ``FeatureCapturePlugin``).  ``stride``/``label_scale``: 4 and 4 for PASS's rotation (1 and 1 otherwise).
        ``head`` and ``bank`` are needed only for ``prototypes_as_negatives``."""
        super().__init__()
        if embedding not in ("feature", "logits", "both"):
            raise ValueError(f"embedding must be feature, logits or both, not {embedding!r}")
        if sample_on not in ("logits", "embedding"):
            raise ValueError(f"sample_on must be logits or embedding, not {sample_on!r}")
        self.capture, self.weight, self.stride, self.scale = capture, weight, stride, label_scale
        self.rotated_as_classes, self.embedding, self.sample_on = rotated_as_classes, embedding, sample_on
        self.sampler, self.sampler_kw = sampler, sampler_kw or {}
        self.loss_kw = {"margin": margin, "squared": squared}
        self.head, self.bank, self.protos_neg = head, bank, prototypes_as_negatives
        self.generator = generator
        self.from_phase = from_phase
        self.last_loss = None

    def _batch(self, strategy):
        """(features, logits, labels) of the images the loss uses."""
        f, out, y = self.capture.features, strategy.mb_output, strategy.mb_y
        if self.rotated_as_classes or self.stride == 1:
            return f, out, y
        return f[:: self.stride], out[:: self.stride, :: self.scale], y[:: self.stride] // self.scale

    def before_backward(self, strategy, **kwargs):
        if strategy.experience.current_experience < self.from_phase:
            return
        f, logits, y = self._batch(strategy)
        if self.protos_neg and self.bank is not None and len(self.bank):
            p, c = self.bank.matrix(device=f.device)
            lp = self.head(p)
            if not self.rotated_as_classes:
                lp = lp[:, : logits.shape[1] * self.scale][:, :: self.scale]
            else:
                c = c * self.scale
                lp = lp[:, : logits.shape[1]]
            f, logits, y = torch.cat([f, p]), torch.cat([logits, lp]), torch.cat([y, c])
        loss = 0.0
        for name in (("feature", "logits") if self.embedding == "both" else (self.embedding,)):
            emb = f if name == "feature" else logits
            on = logits if self.sample_on == "logits" else emb
            loss = loss + sampled_triplet_loss(emb, y, sample_on=on, sampler=self.sampler, generator=self.generator,
                                               sampler_kw=self.sampler_kw, **self.loss_kw)
        self.last_loss = loss.detach() if torch.is_tensor(loss) else loss
        strategy.loss = strategy.loss + self.weight * loss
