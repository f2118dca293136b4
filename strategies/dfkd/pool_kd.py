"""What the pool-based data-free methods (CMI, DeepInversion, RGAL) share: the synthetic pool, adding a round's
best batch with the teacher's labels, and the student step of CMI's ``datafree_kd.py``: a random batch of pool
images, augmented as real training images are (CIFAR: crop 4 + flip), ``KL(p_T || p_S)`` at temperature T
(20 in CMI's and RGAL's scripts) scaled by T^2.
"""
from __future__ import annotations

import contextlib

import torch

from benchmark.dfkd_methods import DFKDMethod
from strategies.dfkd.losses import kd_loss
from strategies.dfkd.pool import DataPool


@contextlib.contextmanager
def frozen(model: torch.nn.Module, mode_eval: bool = True):
    """No parameter gradients (synthesis differentiates through the model to its input only) and eval mode."""
    flags = [p.requires_grad for p in model.parameters()]
    was = model.training
    model.requires_grad_(False)
    if mode_eval:
        model.eval()
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was)


class PoolMethod(DFKDMethod):
    uses_pool = True

    def __init__(self, ctx):
        super().__init__(ctx)
        self.pool = DataPool(ctx.pool_dir, ctx.pool_key, bound=int(self.p["pool_bound"]) or None,
                             rounding=self.p["pool_rounding"])

    @torch.no_grad()
    def add_to_pool(self, x01: torch.Tensor) -> None:
        self.pool.add(x01, self.teacher(x01).argmax(1))

    def pool_indices(self, n: int) -> torch.Tensor:
        x, _ = self.pool.tensors(self.device)
        perm = torch.randperm(len(x), generator=self.gen, device=self.gen.device).to(self.device)
        return perm[:n]

    def pool_batch(self, idx: torch.Tensor):
        x, y = self.pool.tensors(self.device)
        return self.augment_pool_batch(x[idx]), y[idx]

    def student_loss(self):
        xb, _ = self.pool_batch(self.pool_indices(self.student_batch))
        with torch.no_grad():
            t = self.teacher(xb)
        return kd_loss(self.student(xb), t, self.p["temperature"]), len(xb)

    def state_dict(self) -> dict:
        return {"pool_batches": self.pool.n_batches}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load(int(state["pool_batches"]))

    @torch.no_grad()
    def analysis_images(self, n: int) -> torch.Tensor | None:
        x, _ = self.pool.tensors(self.device)
        return x[self.pool_indices(n)].float() / 255.0

    def extra_results(self) -> dict:
        return {"pool_images": len(self.pool)}
