"""The prototype bank shared by PASS, SSRE and the RGAL plugins (issue 3).

Official PASS behaviour (``protoSave`` in Impression2805/CVPR21_PASS): after a phase, the class mean of the
embedding over the phase's training loader (augmented, partial batches dropped) is stored for each new class;
the radius ``r = sqrt(mean_c trace(cov_c) / dim)`` (``np.cov``: unbiased) is computed in phase 0 only
(``recompute_radius=True`` recomputes it from every phase's classes).  Prototype augmentation draws an old class
uniformly at random for each sample and adds ``N(0, I) * r`` (``np.random.normal(0, 1, dim) * radius``).
"""
from __future__ import annotations

import torch


def class_means_and_radius(features: torch.Tensor, labels: torch.Tensor) -> tuple[dict[int, torch.Tensor], float]:
    """Per-class mean embedding, and ``mean_c trace(cov_c) / dim`` (the squared radius before the mean's sqrt)."""
    means, traces = {}, []
    d = features.shape[1]
    for c in labels.unique().tolist():
        f = features[labels == c].double()
        means[c] = f.mean(0).float()
        if len(f) > 1:
            traces.append(float(f.var(0, unbiased=True).sum()) / d)  # trace(cov) = sum of per-dimension variances
    return means, (sum(traces) / len(traces) if traces else 0.0)


class PrototypeBank:
    """Class means, radius, augmented-prototype sampling and the after-phase update."""

    def __init__(self, recompute_radius: bool = False):
        self.means: dict[int, torch.Tensor] = {}
        self.radius: float | None = None
        self.recompute_radius = recompute_radius
        self._sq_radii: list[float] = []

    def __len__(self):
        return len(self.means)

    @property
    def classes(self) -> list[int]:
        return sorted(self.means)

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds the classes of one phase from their embeddings (official: after the phase's training)."""
        means, sq = class_means_and_radius(features.detach().cpu(), labels.detach().cpu())
        self.means.update(means)
        if self.radius is None or self.recompute_radius:
            self._sq_radii.append(sq)
            self.radius = (sum(self._sq_radii) / len(self._sq_radii)) ** 0.5

    def matrix(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        cs = self.classes
        return torch.stack([self.means[c] for c in cs]).to(device), torch.tensor(cs, device=device)

    def sample(self, n: int, generator: torch.Generator | None = None, device=None,
               noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` augmented prototypes ``p_c + N(0, I) * r`` of uniformly drawn stored classes, and their labels."""
        protos, labels = self.matrix()
        idx = torch.randint(0, len(labels), (n,), generator=generator)
        p = protos[idx]
        if noise:
            p = p + torch.randn(p.shape, generator=generator) * self.radius
        return p.to(device), labels[idx].to(device)

    def state_dict(self) -> dict:
        return {"means": {int(c): m for c, m in self.means.items()}, "radius": self.radius,
                "sq_radii": list(self._sq_radii), "recompute_radius": self.recompute_radius}

    def load_state_dict(self, st: dict) -> None:
        self.means = {int(c): m for c, m in st["means"].items()}
        self.radius, self._sq_radii = st["radius"], list(st["sq_radii"])
        self.recompute_radius = st["recompute_radius"]
