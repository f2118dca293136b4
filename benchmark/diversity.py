"""Diversity of a synthetic set (RGAL paper Sec. 4.5, Eq. 13-15, Figure 9) as pure functions of samples and labels.

The paper's three quantities, as the specification states them, on flattened images (in [0, 1]) or on embeddings:

* global diversity (Eq. 13): the mean L1 distance over all pairs of distinct samples;
* intra-class diversity (Eq. 14): the mean over classes of the mean L1 distance between distinct samples of the
  class (labels are the teacher's argmax; classes with fewer than two samples are skipped);
  ``None`` where no pair exists (one sample, one class)
* inter-class confusion (Eq. 15): the mean L1 distance between samples of *different* classes -- the lower, the more
  the classes are confused (RGAL aims for a high intra-class and a low inter-class figure).

Distances are divided by the number of dimensions (mean absolute difference), so that images of different sizes and
embeddings of different widths give figures on one scale; this is a constant factor per feature space.
``tsne_points`` embeds real test embeddings and synthetic ones together (scikit-learn t-SNE) for Figure 9.
"""
from __future__ import annotations

import numpy as np
import torch


def pairwise_l1(x: torch.Tensor) -> torch.Tensor:
    """(N, N) mean absolute differences between the flattened rows of ``x``."""
    x = x.flatten(1).float()
    return torch.cdist(x, x, p=1) / x.shape[1]


def diversity_metrics(x: torch.Tensor, labels: torch.Tensor) -> dict:
    d = pairwise_l1(x)
    n = len(d)
    off = ~torch.eye(n, dtype=torch.bool, device=d.device)
    same = labels[:, None] == labels[None, :]
    intra = []
    for c in labels.unique():
        m = labels == c
        k = int(m.sum())
        if k >= 2:
            intra.append(float(d[m][:, m].sum() / (k * (k - 1))))
    diff = ~same
    return {"global_diversity": float(d[off].mean()) if n > 1 else None,
            "intra_class_diversity": float(np.mean(intra)) if intra else None,
            "inter_class_distance": float(d[diff].mean()) if diff.any() else None,
            "samples": n, "classes": int(labels.unique().numel())}


def tsne_points(real: torch.Tensor, synthetic: torch.Tensor, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of ``[real; synthetic]`` embeddings (rows), as one map."""
    from sklearn.manifold import TSNE

    x = torch.cat([real, synthetic]).float().cpu().numpy()
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
