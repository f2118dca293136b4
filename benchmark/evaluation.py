"""The suite's evaluation: one pass over the test set fills a row of the accuracy matrix for every classifier of a
method (``method.scores(x)`` returns each classifier's class scores from one forward pass).

After phase k each test sample of the seen classes is classified among the classes seen up to phase k (the first
``n_seen`` scores; labels are class-order positions) and accuracy is taken per class group.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def accuracy_rows(scores_fn, x_test: torch.Tensor, y_test: torch.Tensor, bounds: list[tuple[int, int]], k: int,
                  device, batch_size: int = 500) -> dict[str, list[float | None]]:
    """Row name -> ``acc[k][:]`` (``None`` for groups not seen yet)."""
    n_seen = bounds[k][1]
    keep = y_test < n_seen
    x, y = x_test[keep], y_test[keep]
    preds: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(y), batch_size):
        for name, scores in scores_fn(x[i:i + batch_size].to(device)).items():
            preds.setdefault(name, []).append(scores[:, :n_seen].argmax(1).cpu())
    rows = {}
    for name, chunks in preds.items():
        pred = torch.cat(chunks)
        row: list[float | None] = []
        for j, (lo, hi) in enumerate(bounds):
            m = (y >= lo) & (y < hi)
            row.append(None if j > k else float((pred[m] == y[m]).float().mean()) if m.any() else float("nan"))
        rows[name] = row
    return rows


def evaluate_phase(method, scenario, k: int, device) -> dict[str, list]:
    """Accuracy row after phase k for every classifier (row name -> row)."""
    model = method.model
    was_training = model.training
    model.eval()
    try:
        d = scenario.data
        return accuracy_rows(method.scores, d.x_test, d.y_test, scenario.group_bounds(), k, device)
    finally:
        model.train(was_training)
