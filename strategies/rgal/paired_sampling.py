"""Paired sampling for RGAL's L_tri (RGAL paper Sec. 3.4; L'_s of Sec. 5.3): every minibatch is ``B/2`` random
anchors followed by ``B/2`` positives, one per anchor, with the anchor's label, so that every anchor has at least one
positive in the batch.  An epoch draws every training sample once as an anchor, so it holds twice as many images as
a plain epoch (the released code's paired loader does the same).  ``anchor_fraction`` < 1 draws only that share of
the samples (a fresh random subset each epoch) as anchors: with 0.5 an epoch holds as many images as a plain one, so
a method with paired sampling trains on the same compute as the one without (the ``cpu`` profile's choice).

``positive="class"`` (default, as the specification states it): the positive is another training sample of the same label,
drawn uniformly (the anchor itself only when its class has a single sample).  ``positive="image"``: the anchor
image itself, augmented independently (the released RGAL code pairs two augmentations of one image).

* ``paired_batch_indices`` -- the pure function: labels in, list of index tensors out (all randomness from one
  ``torch.Generator``, so a saved generator state replays it).
* ``PairedBatches`` -- the provider the suite's tensor loader uses (``SuiteTrainingPlugin`` asks a plugin's
  ``batch_indices_for(strategy)``, which gives it from phase ``from_phase`` on).
* ``PairedSamplingPlugin`` -- for any Avalanche strategy: the suite's loader picks it up; in a plain Avalanche
  strategy it replaces the train loader with a ``DataLoader`` over ``strategy.adapted_dataset`` driven by
  ``PairedBatchSampler``.
"""
from __future__ import annotations

import math

import torch
from avalanche.core import SupervisedPlugin


def n_anchors(n: int, anchor_fraction: float = 1.0) -> int:
    """Anchors of one epoch of ``n`` samples: ``ceil(n * anchor_fraction)``, at least one."""
    if not 0 < anchor_fraction <= 1:
        raise ValueError(f"anchor_fraction must be in (0, 1], not {anchor_fraction!r}")
    return max(1, min(n, math.ceil(n * anchor_fraction - 1e-9)))


def paired_batch_indices(labels: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                         positive: str = "class", anchor_fraction: float = 1.0) -> list[torch.Tensor]:
    """Index tensors of one epoch: each is ``[anchors..., positives...]`` with ``batch_size // 2`` anchors (the last
    batch may hold fewer); with ``anchor_fraction`` 1 every index appears exactly once as an anchor, else a random
    ``n_anchors(n, anchor_fraction)`` of them do."""
    if positive not in ("class", "image"):
        raise ValueError(f"positive must be 'class' or 'image', not {positive!r}")
    m = n_anchors(len(labels), anchor_fraction)
    half = max(1, batch_size // 2)
    dev = generator.device if generator is not None else torch.device("cpu")
    y = labels.to(dev)
    n = len(y)
    perm = torch.randperm(n, generator=generator, device=dev)
    if positive == "image":
        pos = torch.arange(n, device=dev)
    else:
        order = torch.argsort(y, stable=True)  # indices grouped by label
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n, device=dev)  # position of each sample inside ``order``
        _, counts = torch.unique_consecutive(y[order], return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        group = torch.repeat_interleave(torch.arange(len(counts), device=dev), counts)[rank]  # label group per sample
        cnt, start = counts[group], starts[group]
        u = torch.rand(n, generator=generator, device=dev)
        r = (u * (cnt - 1).clamp(min=1)).long().clamp(max=(cnt - 2).clamp(min=0))  # uniform over the others
        r = r + (start + r >= rank).long() * (cnt > 1).long()  # skip the anchor itself
        pos = torch.where(cnt > 1, order[start + r], torch.arange(n, device=dev))
    out = []
    perm = perm[:m]
    for i in range(0, m, half):
        a = perm[i:i + half]
        out.append(torch.cat([a, pos[a]]))
    return out


class PairedBatches:
    """Batch-index provider for the suite's tensor loader (``benchmark.training.TensorBatches``)."""

    def __init__(self, positive: str = "class", anchor_fraction: float = 1.0):
        self.positive, self.anchor_fraction = positive, anchor_fraction
        n_anchors(1, anchor_fraction)  # validates

    def num_batches(self, n: int, batch_size: int) -> int:
        half = max(1, batch_size // 2)
        return -(-n_anchors(n, self.anchor_fraction) // half)

    def __call__(self, labels, batch_size, generator):
        return paired_batch_indices(labels, batch_size, generator, self.positive, self.anchor_fraction)


class PairedBatchSampler(torch.utils.data.Sampler):
    """A ``batch_sampler`` for ``torch.utils.data.DataLoader`` yielding paired batches (a fresh draw every epoch)."""

    def __init__(self, labels, batch_size: int, generator: torch.Generator | None = None, positive: str = "class",
                 anchor_fraction: float = 1.0):
        self.labels = torch.as_tensor(labels).long()
        self.batch_size, self.positive, self.anchor_fraction = batch_size, positive, anchor_fraction
        self.generator = generator or torch.Generator()

    def __len__(self):
        return PairedBatches(self.positive, self.anchor_fraction).num_batches(len(self.labels), self.batch_size)

    def __iter__(self):
        for idx in paired_batch_indices(self.labels, self.batch_size, self.generator, self.positive,
                                        self.anchor_fraction):
            yield idx.tolist()


class PairedSamplingPlugin(SupervisedPlugin):
    """Makes a strategy's training batches paired (anchors + same-label positives) from experience ``from_phase`` on
    (default 1: RGAL pairs the batches of *incremental* training only, like the triplet loss they serve, so that a
    strategy's phase 0 -- and the shared phase-0 cache -- does not depend on the RGAL plugins)."""

    def __init__(self, positive: str = "class", generator: torch.Generator | None = None,
                 anchor_fraction: float = 1.0, from_phase: int = 1):
        super().__init__()
        self.batch_indices = PairedBatches(positive, anchor_fraction)
        self.generator = generator or torch.Generator()
        self.from_phase = from_phase

    def batch_indices_for(self, strategy):
        """The batch provider for the strategy's current experience (None: ordinary batches); read by the suite's
        ``SuiteTrainingPlugin``."""
        return self.batch_indices if strategy.experience.current_experience >= self.from_phase else None

    def before_training_exp(self, strategy, **kwargs):
        from benchmark.training import SuiteTrainingPlugin

        suite_loader = any(isinstance(p, SuiteTrainingPlugin) for p in strategy.plugins)
        if suite_loader or self.batch_indices_for(strategy) is None:
            return  # the suite's tensor loader asks ``batch_indices_for`` itself
        ds = strategy.adapted_dataset
        labels = torch.as_tensor(list(ds.targets))
        sampler = PairedBatchSampler(labels, strategy.train_mb_size, self.generator, self.batch_indices.positive,
                                     self.batch_indices.anchor_fraction)
        strategy.dataloader = torch.utils.data.DataLoader(ds, batch_sampler=sampler,
                                                          collate_fn=getattr(ds, "collate_fn", None))
