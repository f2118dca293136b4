"""Class-incremental metrics as pure functions of the stored accuracy matrix (CONVENTIONS.md).

``acc[k][j]``: after phase k, top-1 accuracy on the test samples of class group j (classified among all classes
seen up to phase k), ``None`` for j > k.  ``counts[j]``: test samples in group j.
"""
from __future__ import annotations

import math
from typing import Sequence

Matrix = Sequence[Sequence[float | None]]


def seen_accuracy(acc: Matrix, counts: Sequence[int]) -> list[float]:
    """Sample-weighted accuracy on all classes seen up to phase k, for every k."""
    out = []
    for k, row in enumerate(acc):
        n = sum(counts[: k + 1])
        out.append(sum(row[j] * counts[j] for j in range(k + 1)) / n if n else float("nan"))
    return out


def average_incremental_accuracy(acc: Matrix, counts: Sequence[int]) -> float:
    """Mean of ``seen_acc[k]`` over all phases, phase 0 included."""
    s = seen_accuracy(acc, counts)
    return sum(s) / len(s)


def overall_accuracy(acc: Matrix, counts: Sequence[int]) -> float:
    return seen_accuracy(acc, counts)[-1]


def forgetting_max(acc: Matrix) -> float:
    """Chaudhry et al. 2018: mean over groups j < T of ``max_{j<=k<T} acc[k][j] - acc[T][j]``; NaN with one phase."""
    t = len(acc) - 1
    if t < 1:
        return float("nan")
    return sum(max(acc[k][j] for k in range(j, t)) - acc[t][j] for j in range(t)) / t


def forgetting_first(acc: Matrix) -> float:
    """What official SSRE and Avalanche compute: mean over j < T of ``acc[j][j] - acc[T][j]``."""
    t = len(acc) - 1
    if t < 1:
        return float("nan")
    return sum(acc[j][j] - acc[t][j] for j in range(t)) / t


def backward_transfer(acc: Matrix) -> float:
    """BWT (Lopez-Paz & Ranzato 2017, GEM): mean over j < T of ``acc[T][j] - acc[j][j]``, the change of each old group's
    accuracy from right after its phase to the end; negative when the method forgets.  It is ``-forgetting_first``,
    reported under its own name because the field reads it so; NaN with one phase."""
    f = forgetting_first(acc)
    return float("nan") if math.isnan(f) else -f


def new_accuracy(acc: Matrix) -> float:
    """Plasticity (not a CONVENTIONS.md figure; added because a weak regime can hide behind low forgetting): mean over
    the incremental phases k = 1..T of ``acc[k][k]``, the accuracy on each phase's classes right after it; NaN with
    one phase.  Near 0 means the method did not learn the new classes in their own phase."""
    t = len(acc) - 1
    if t < 1:
        return float("nan")
    return sum(acc[k][k] for k in range(1, t + 1)) / t


def best_so_far(acc: Matrix) -> list[list[float | None]]:
    """The accuracy matrix with no forgetting: every entry ``acc[k][j]`` raised to ``max_{j<=i<=k} acc[i][j]``, each
    group kept at the best it reached so far.  ``average_incremental_accuracy`` of it minus that of ``acc`` bounds
    what removing forgetting alone could add (the room an anti-forgetting term has)."""
    return [[None if v is None else max(acc[i][j] for i in range(j, k + 1)) for j, v in enumerate(row)]
            for k, row in enumerate(acc)]


def summarize(acc: Matrix, counts: Sequence[int]) -> dict:
    s = seen_accuracy(acc, counts)
    fm, ff, na, bwt = forgetting_max(acc), forgetting_first(acc), new_accuracy(acc), backward_transfer(acc)
    return {
        "seen_acc": s,
        "average_accuracy": sum(s) / len(s),
        "overall_accuracy": s[-1],
        "forgetting_max": None if math.isnan(fm) else fm,
        "forgetting_first": None if math.isnan(ff) else ff,
        "new_accuracy": None if math.isnan(na) else na,
        "bwt": None if math.isnan(bwt) else bwt,
    }
