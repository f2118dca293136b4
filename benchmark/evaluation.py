"""The suite's evaluation: one function fills a row of the accuracy matrix for every classifier of a method.

After phase k each test sample of the seen classes is classified among the classes seen up to phase k (the first
``n_seen`` scores; labels are class-order positions) and accuracy is taken per class group.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def accuracy_row(predict, x_test: torch.Tensor, y_test: torch.Tensor, bounds: list[tuple[int, int]], k: int,
                 device, batch_size: int = 500) -> list[float | None]:
    n_seen = bounds[k][1]
    keep = y_test < n_seen
    x, y = x_test[keep], y_test[keep]
    preds = []
    for i in range(0, len(y), batch_size):
        scores = predict(x[i:i + batch_size].to(device))
        preds.append(scores[:, :n_seen].argmax(1).cpu())
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
    row: list[float | None] = []
    for j, (lo, hi) in enumerate(bounds):
        if j > k:
            row.append(None)
            continue
        m = (y >= lo) & (y < hi)
        row.append(float((pred[m] == y[m]).float().mean()) if m.any() else float("nan"))
    return row


def evaluate_phase(method, scenario, k: int, device) -> dict[str, list]:
    """Accuracy row after phase k for every classifier (row name -> row)."""
    model = method.model
    was_training = model.training
    model.eval()
    try:
        d = scenario.data
        return {name: accuracy_row(fn, d.x_test, d.y_test, scenario.group_bounds(), k, device)
                for name, fn in method.predictors().items()}
    finally:
        model.train(was_training)
