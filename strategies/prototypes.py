"""The prototype bank shared by PASS, SSRE and the RGAL plugins.

Official PASS behaviour (``protoSave`` in Impression2805/CVPR21_PASS): after a phase, the class mean of the
embedding over the phase's training loader (augmented, partial batches dropped) is stored for each new class;
the radius ``r = sqrt(mean_c trace(cov_c) / dim)`` (``np.cov``: unbiased) is computed in phase 0 only
(``recompute_radius=True``, our option, recomputes it after every phase as the same mean over *all* classes stored so
far, each class counted once with the spread measured when it was learned; a phase of 5 classes does not weigh as
much as the 50 base classes).  Prototype augmentation draws an old class
uniformly at random for each sample and adds ``N(0, I) * r`` (``np.random.normal(0, 1, dim) * radius``; SSRE's
official code adds no noise: ``noise=False``).

The bank is the one seam between a prototype loss and whatever reshapes its samples: ``sample_hook`` (RGAL's L'_g,
``strategies/rgal/prototype_optimization.py``) receives every draw of ``sample`` before the loss sees it, so the RGAL
plugins need a bank, not a particular loss plugin.  One hook per bank (``install_sample_hook`` refuses a second, which
would silently replace the first); ``augmented`` gives un-hooked samples of every class for a hook's own pool.
"""
from __future__ import annotations

import torch

from benchmark.errors import BenchError


def class_means_and_spreads(features: torch.Tensor, labels: torch.Tensor
                            ) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    """Per-class mean embedding, and per class ``trace(cov_c) / dim`` (the radius is the sqrt of their mean)."""
    means, spreads = {}, {}
    d = features.shape[1]
    for c in labels.unique().tolist():
        f = features[labels == c].double()
        means[c] = f.mean(0).float()
        if len(f) > 1:
            spreads[c] = float(f.var(0, unbiased=True).sum()) / d  # trace(cov) = sum of per-dimension variances
    return means, spreads


class PrototypeBank:
    """Class means, radius, augmented-prototype sampling and the after-phase update."""

    def __init__(self, recompute_radius: bool = False, noise: bool = True):
        self.means: dict[int, torch.Tensor] = {}
        self.radius: float | None = None
        self.recompute_radius = recompute_radius
        self.noise = noise  # sample adds N(0, I) * r (PASS) or returns the means themselves (SSRE)
        self.sample_hook = None  # (samples, labels, context) -> samples, applied to every draw of ``sample``
        self._spreads: dict[int, float] = {}  # class -> trace(cov_c) / dim, of the classes the radius is taken over

    def __len__(self):
        return len(self.means)

    @property
    def classes(self) -> list[int]:
        return sorted(self.means)

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds the classes of one phase from their embeddings (official: after the phase's training)."""
        means, spreads = class_means_and_spreads(features.detach().cpu(), labels.detach().cpu())
        self.means.update(means)
        if self.radius is None or self.recompute_radius:
            self._spreads.update(spreads)
            vals = list(self._spreads.values())
            self.radius = (sum(vals) / len(vals) if vals else 0.0) ** 0.5

    def matrix(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        cs = self.classes
        return torch.stack([self.means[c] for c in cs]).to(device), torch.tensor(cs, device=device)

    def install_sample_hook(self, hook) -> None:
        """Sets ``sample_hook``.  One slot: a second hook would silently replace the first (e.g. two L'_g plugins on
        one bank), so that is refused; ``sample_hook = None`` removes the installed one."""
        if self.sample_hook is not None and self.sample_hook != hook:
            raise BenchError("this PrototypeBank already has a sample_hook (one per bank): give each prototype "
                             "optimiser its own bank, or remove the first with bank.sample_hook = None")
        self.sample_hook = hook

    def augmented(self, per_class: int, generator: torch.Generator | None = None, device=None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` augmented samples of every stored class, class by class (rows ``i*per_class ..`` belong to
        the i-th of ``classes``), *not* passed through ``sample_hook``: the raw material of a pool that a hook
        builds itself (RGAL's L'_g ``schedule="phase"``/``"epoch"``)."""
        protos, labels = self.matrix()
        p, c = protos.repeat_interleave(per_class, 0), labels.repeat_interleave(per_class)
        if self.noise:
            p = p + torch.randn(p.shape, generator=generator) * self.radius
        return p.to(device), c.to(device)

    def sample(self, n: int, generator: torch.Generator | None = None, device=None,
               context=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` augmented prototypes ``p_c + N(0, I) * r`` (``p_c`` itself with ``noise=False``) of uniformly drawn
        stored classes, and their labels, passed through ``sample_hook`` if one is installed (``context``, e.g. the
        strategy, is handed to it)."""
        protos, labels = self.matrix()
        idx = torch.randint(0, len(labels), (n,), generator=generator)
        p = protos[idx]
        if self.noise:
            p = p + torch.randn(p.shape, generator=generator) * self.radius
        p, c = p.to(device), labels[idx].to(device)
        if self.sample_hook is not None:
            p = self.sample_hook(p, c, context)
        return p, c

    def state_dict(self) -> dict:
        return {"means": {int(c): m for c, m in self.means.items()}, "radius": self.radius,
                "spreads": {int(c): v for c, v in self._spreads.items()}, "recompute_radius": self.recompute_radius}

    def load_state_dict(self, st: dict) -> None:
        self.means = {int(c): m for c, m in st["means"].items()}
        self.radius, self.recompute_radius = st["radius"], st["recompute_radius"]
        # an older checkpoint layout kept one value per phase ("sq_radii") instead of the spreads; with the radius
        # fixed after phase 0 (the default) nothing reads them again
        if "spreads" not in st and self.recompute_radius:
            raise BenchError("this checkpoint's prototype bank predates per-class radii and cannot resume with "
                             "recompute_radius; rerun the cell from the start (delete its checkpoint.pt)")
        self._spreads = {int(c): v for c, v in st.get("spreads", {}).items()}
