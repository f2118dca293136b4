"""The iterate with the lowest loss of a synthesis round, which CMI, DeepInversion and RGAL add to the pool (CMI's
``datafree/synthesis/cmi.py``: ``if best_cost > loss: best_inputs = inputs.data``)."""
from __future__ import annotations

import torch


class BestBatch:
    """Keeps the iterate with the lowest loss of a synthesis round (CMI / RGAL add that batch to the pool)."""

    def __init__(self):
        self.loss, self.x, self.extra = float("inf"), None, None

    def update(self, loss: torch.Tensor, x: torch.Tensor, extra=None) -> None:
        v = loss.item()
        if v < self.loss or self.x is None:
            self.loss, self.x, self.extra = v, x.detach().clone(), extra
