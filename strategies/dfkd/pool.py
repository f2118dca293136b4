"""The synthetic data pool of the pool-based data-free methods (CMI, DeepInversion, RGAL).

As in CMI / RGAL's ``ImagePool`` the pool keeps every synthesised batch (unbounded by default; ``bound`` keeps the
newest ``bound`` images), quantised to uint8 as their PNG files are, together with the teacher's argmax labels
(RGAL's paired sampling needs them).  Each added batch is one atomically written file ``<folder>/NNNNNN.pt``; the
cell checkpoint records how many batches it has seen, and ``truncate`` drops batches written after that checkpoint,
so a resumed run sees exactly the pool the uninterrupted run had.  Images stay in memory once loaded.
"""
from __future__ import annotations

from pathlib import Path

import torch

from benchmark import store


def to_uint8(x: torch.Tensor, rounding: str = "floor") -> torch.Tensor:
    """[0, 1] floats -> uint8.  ``floor``: ``(clamp(x, 0, 1) * 255).astype(uint8)``, as CMI's and RGAL's
    ``save_image_batch`` write their pool PNGs (the fidelity harness found the suite rounding to nearest, the
    quantisation of ``torchvision.utils.save_image``: half the values one level higher); ``round``: that one."""
    x = x.detach().float().clamp(0, 1) * 255  # float32 under bf16 autocast
    return (x + 0.5 if rounding == "round" else x).clamp_(0, 255).to(torch.uint8).cpu()


class DataPool:
    def __init__(self, folder: Path, key: str, bound: int | None = None, rounding: str = "floor"):
        self.folder, self.key, self.bound, self.rounding = Path(folder), key, bound, rounding
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._x = self._y = None

    def __len__(self) -> int:
        n = sum(len(b[1]) for b in self.batches)
        return min(n, self.bound) if self.bound else n

    @property
    def n_batches(self) -> int:
        return len(self.batches)

    def add(self, x01: torch.Tensor, labels: torch.Tensor) -> None:
        x, y = to_uint8(x01, self.rounding), labels.detach().cpu().long()
        store.save_torch(self.folder / f"{len(self.batches):06d}.pt", {"key": self.key, "x": x, "y": y})
        self.batches.append((x, y))
        self._x = self._y = None

    def load(self, n_batches: int) -> None:
        """Reads the first ``n_batches`` files (as recorded by a checkpoint) and deletes any later ones."""
        self.batches = []
        # the pool is the history of the run: a damaged batch cannot be recomputed alone, the cell restarts
        fix = (f"the pool cannot be rebuilt from its middle: delete {self.folder.parent / 'checkpoint.pt'} and "
               f"{self.folder} to run this cell again from the start")
        for i in range(n_batches):
            ck = store.load_torch(self.folder / f"{i:06d}.pt", self.key, "synthetic pool file", fix)
            self.batches.append((ck["x"], ck["y"]))
        for p in self.folder.glob("*.pt"):
            if p.stem.isdigit() and int(p.stem) >= n_batches:
                p.unlink()
        self._x = self._y = None

    def tensors(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """All pool images (uint8) and labels; with ``bound``, the newest ``bound`` of them."""
        if self._x is None:
            if not self.batches:
                raise RuntimeError("the synthetic pool is empty: synthesize() must run before student steps")
            self._x = torch.cat([b[0] for b in self.batches])
            self._y = torch.cat([b[1] for b in self.batches])
            if self.bound:
                self._x, self._y = self._x[-self.bound:], self._y[-self.bound:]
            if device is not None:
                self._x, self._y = self._x.to(device), self._y.to(device)
        return self._x, self._y
