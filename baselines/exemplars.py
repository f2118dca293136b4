"""Exemplar memory of the exemplar-based baselines that do not come from Avalanche (UCIR, EEIL, LwM), as
the official iCaRL / LUCIR code keeps it.

* ``herding_order`` (iCaRL Alg. 4, LUCIR's ``herding``): on L2-normalised features, greedily pick the sample that
  brings the running mean of the picked ones closest to the class mean; returns the full order, so that shrinking a
  class's memory keeps a prefix of it (the official codes truncate, they never re-select).
* ``ExemplarMemory``: per-class uint8 images in herding order; ``memory_per_class`` (20, growing with the classes,
  CONVENTIONS.md) or ``memory_total`` (a fixed budget split evenly over the seen classes).  Its state is plain
  tensors, so checkpoints load with ``weights_only=True``.
* ``nme_class_means``: the nearest-mean-of-exemplars classifier's means (iCaRL / LUCIR: the mean of the L2-normalised
  features of each exemplar and of its horizontal flip, renormalised).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def herding_order(features: torch.Tensor, m: int | None = None) -> torch.Tensor:
    """Indices of the first ``m`` (default all) herding picks of ``features`` (rows; normalised here)."""
    f = F.normalize(features.float(), dim=1)
    n = len(f)
    m = n if m is None else min(m, n)
    mu = f.mean(0)
    picked: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(n, dtype=torch.bool, device=f.device)
    for k in range(1, m + 1):
        cand = (running.unsqueeze(0) + f) / k  # mean of the picked ones plus each candidate
        dist = (cand - mu).pow(2).sum(1).masked_fill(~available, float("inf"))
        i = int(dist.argmin())
        picked.append(i)
        available[i] = False
        running = running + f[i]
    return torch.tensor(picked, dtype=torch.long)


@torch.no_grad()
def embed(backbone, x: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    was = backbone.training
    backbone.eval()
    out = torch.cat([backbone(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    backbone.train(was)
    return out


class ExemplarMemory:
    def __init__(self, memory_per_class: int = 20, memory_total: int | None = None):
        self.per_class, self.total = memory_per_class, memory_total
        self.x: dict[int, torch.Tensor] = {}  # class -> uint8 images in herding order

    def size_per_class(self, n_classes: int) -> int:
        return self.total // n_classes if self.total else self.per_class

    def update(self, backbone, x: torch.Tensor, y: torch.Tensor, device) -> None:
        """Adds the classes of ``(x, y)`` by herding on ``backbone``'s features and shrinks every class to the
        memory's size for the new number of classes."""
        classes = sorted(int(c) for c in y.unique())
        m = self.size_per_class(len(self.x) + len(classes))
        for c in classes:
            xc = x[y == c]
            self.x[c] = xc[herding_order(embed(backbone, xc, device), m)]
        for c in self.x:
            self.x[c] = self.x[c][:m]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        cs = sorted(self.x)
        if not cs:
            return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
        return torch.cat([self.x[c] for c in cs]), torch.cat([torch.full((len(self.x[c]),), c) for c in cs])

    def __len__(self) -> int:
        return sum(len(v) for v in self.x.values())

    def state_dict(self) -> dict:
        return {"x": {int(c): v for c, v in self.x.items()}}

    def load_state_dict(self, st: dict) -> None:
        self.x = {int(c): v for c, v in st["x"].items()}


def append_memory(strategy, memory: ExemplarMemory) -> None:
    """In ``after_train_dataset_adaptation``: the exemplars join the experience's training data (as Avalanche's
    iCaRL appends its memory), so the suite's tensor loader shuffles them with the new classes' images."""
    if len(memory):
        from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
        from avalanche.benchmarks.utils.utils import concat_datasets

        x, y = memory.tensors()
        strategy.adapted_dataset = concat_datasets(
            (strategy.adapted_dataset, _make_taskaware_tensor_classification_dataset(x, y)))


@torch.no_grad()
def nme_class_means(backbone, memory: ExemplarMemory, device) -> torch.Tensor:
    """(n_classes, d) means of normalised features of exemplars and their flips, renormalised."""
    means = []
    for c in sorted(memory.x):
        xc = memory.x[c]
        f = F.normalize(embed(backbone, xc, device), dim=1) + F.normalize(embed(backbone, xc.flip(3), device), dim=1)
        means.append(F.normalize(f.mean(0), dim=0))
    return torch.stack(means)
