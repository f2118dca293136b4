"""Class-incremental scenarios: class order, phase split and the Avalanche benchmark (``nc_benchmark``).

* Class order: the official PASS code's ``np.random.seed(1993); np.random.permutation(n)`` and labels remapped to
  their position in the order (``order.index(y)``), so that class group j is a contiguous label range and "the
  classes seen up to phase k" are a label prefix.  ``class_order_seed='natural'`` keeps 0..n-1.
* Split: phase 0 holds ``base`` classes (half of them for CIFAR-100 / Tiny-ImageNet as in PASS), then ``phases``
  incremental phases of ``int((n - base) / phases)`` classes each, as the official PASS ``main.py`` computes
  ``task_size``: with 20 phases on CIFAR-100 the last 10 classes are never shown.  ``spread_remaining=True``
  spreads all remaining classes over the phases instead (the first ``r`` phases get one class more).
* Scenarios without a larger phase 0 (mnist, cifar10) split all classes evenly over ``phases + 1`` experiences.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.augment import CIFAR_PASS, FLIP_ONLY, AugmentSpec
from benchmark.data import ArrayData, load_arrays
from benchmark.errors import BenchError
from benchmark.registry import Registry

SCENARIOS = Registry("scenario")


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    dataset: str
    n_classes: int
    base_fraction: float | None  # 0.5: phase 0 holds half of the classes; None: even split
    augment: AugmentSpec
    mean: tuple
    std: tuple
    published_name: str = ""
    description: str = ""


_CIFAR100_STATS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))  # official PASS Normalize
for _spec in [
    ScenarioSpec("cifar100", "cifar100", 100, 0.5, CIFAR_PASS, *_CIFAR100_STATS, "CIFAR-100",
                 "CIFAR-100, 32x32, phase 0 = 50 classes"),
    ScenarioSpec("cifar100-mini", "cifar100-mini", 100, 0.5, CIFAR_PASS, *_CIFAR100_STATS, "CIFAR-100",
                 "embedded real CIFAR-100 subset: 20 train / 5 test images per class, offline default"),
    ScenarioSpec("tinyimagenet", "tinyimagenet", 200, 0.5, FLIP_ONLY, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                 "Tiny-ImageNet", "Tiny-ImageNet 64x64, phase 0 = 100 classes"),
    ScenarioSpec("cifar10", "cifar10", 10, None, CIFAR_PASS, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                 "CIFAR-10", "CIFAR-10, classes split evenly over the phases"),
    ScenarioSpec("mnist", "mnist", 10, None, AugmentSpec(), (0.1307,), (0.3081,), "MNIST",
                 "MNIST resized to 32x32, classes split evenly over the phases"),
]:
    SCENARIOS.register(_spec.name, _spec, description=_spec.description, published=_spec.published_name)


def class_order(n_classes: int, seed: int | str) -> list[int]:
    if seed == "natural":
        return list(range(n_classes))
    np.random.seed(int(seed))
    return np.random.permutation(n_classes).tolist()


def phase_sizes(n_classes: int, phases: int, base: int | None, spread_remaining: bool = False) -> list[int]:
    """Number of classes in each of the ``phases + 1`` experiences."""
    if phases < 0:
        raise BenchError(f"--phases must be >= 0, got {phases}")
    if base is None:
        if phases + 1 > n_classes:
            raise BenchError(f"{phases} phases do not fit {n_classes} classes; use at most {n_classes - 1} phases")
        if n_classes % (phases + 1) and not spread_remaining:
            raise BenchError(f"{phases} phases do not split {n_classes} classes evenly into {phases + 1} experiences; "
                             f"choose phases + 1 dividing {n_classes} or pass --spread-remaining")
        base = n_classes // (phases + 1)
    if not 0 < base <= n_classes:
        raise BenchError(f"--base-classes must be between 1 and {n_classes} (the scenario's classes), got {base}")
    if phases == 0:
        return [base]
    rest = n_classes - base
    per = rest // phases
    if per == 0:
        if rest == 0:
            raise BenchError(f"--base-classes {base} leaves no class for the {phases} incremental phases; use at most "
                             f"{n_classes - phases} base classes, or --phases 0")
        raise BenchError(f"{phases} incremental phases do not fit the {rest} classes left after phase 0; "
                         f"use at most {rest} phases, or fewer --base-classes")
    sizes = [base] + [per] * phases
    if spread_remaining:
        for i in range(rest - per * phases):
            sizes[1 + i] += 1
    return sizes


@dataclass
class Scenario:
    """A resolved class-incremental scenario: remapped in-memory arrays, groups and the Avalanche benchmark.
    ``build_scenario`` caches it per arguments, so the cells of one run share one benchmark (built once, ~6 s for
    CIFAR-100); nothing mutates it."""

    spec: ScenarioSpec
    data: ArrayData  # labels already remapped to class-order positions, unused classes dropped
    order: list[int]  # original class ids, in order of appearance
    sizes: list[int]  # classes per experience
    dropped_classes: int
    # {"train_per_class": n, "test_per_class": m, "train_of": N, "test_of": M} when a profile's or --per-class's
    # subset trimmed the data (None: every image)
    subset: dict | None = None
    _benchmark: object = field(default=None, repr=False)

    @property
    def n_phases(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_used_classes(self) -> int:
        return sum(self.sizes)

    def seen_after(self, k: int) -> int:
        return sum(self.sizes[: k + 1])

    def group_bounds(self) -> list[tuple[int, int]]:
        b = np.cumsum([0] + self.sizes)
        return [(int(b[i]), int(b[i + 1])) for i in range(len(self.sizes))]

    def phase_classes(self, k: int) -> list[int]:
        lo, hi = self.group_bounds()[k]
        return list(range(lo, hi))

    @property
    def benchmark(self):
        """The Avalanche class-incremental benchmark (built on first use: importing avalanche is slow)."""
        if self._benchmark is None:
            self._benchmark = make_avalanche_benchmark(self)
        return self._benchmark


class UInt8ImageDataset(torch.utils.data.Dataset):
    """Images as uint8 tensors (the model normalises), with the ``targets`` Avalanche reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.targets = x, y.tolist()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], self.targets[i]


def make_avalanche_benchmark(sc: Scenario):
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    d = sc.data
    return nc_benchmark(
        UInt8ImageDataset(d.x_train, d.y_train), UInt8ImageDataset(d.x_test, d.y_test),
        n_experiences=len(sc.sizes), task_labels=False, fixed_class_order=list(range(sc.n_used_classes)),
        per_exp_classes={i: s for i, s in enumerate(sc.sizes)}, class_ids_from_zero_from_first_exp=False,
    )


@functools.lru_cache(maxsize=4)
def _cached_arrays(dataset: str, data_root: str | None) -> ArrayData:
    return load_arrays(dataset, data_root)


def first_per_class(y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (ascending) of the first ``n`` images of each class in stored order.  The stored order carries no
    meaning (CIFAR's is shuffled, Tiny-ImageNet's sorted by file name), so the first ``n`` are a fixed draw that
    needs no seed and is the same for every method and seed of a sweep."""
    order = torch.argsort(y, stable=True)
    ys = y[order]
    start = torch.searchsorted(ys, ys, right=False)  # first position of each image's class in the sorted labels
    rank = torch.arange(len(ys)) - start
    return order[rank < n].sort().values


def per_class_counts(y: torch.Tensor) -> int:
    """Images of the largest class."""
    return int(torch.bincount(y).max()) if len(y) else 0


@functools.lru_cache(maxsize=8)
def build_scenario(name: str, phases: int, class_order_seed: int | str = 1993, data_root: str | None = None,
                   spread_remaining: bool = False, base_classes: int | None = None,
                   per_class: tuple[int, int] | None = None) -> Scenario:
    """``per_class``: (training, test) images kept of each class, the first ones in stored order
    (``first_per_class``); None keeps all.  A cap no class exceeds changes nothing (``Scenario.subset`` stays
    None), so the embedded cifar100-mini (20 / 5) is the same scenario under every profile."""
    spec: ScenarioSpec = SCENARIOS.get(name)
    base = base_classes if base_classes is not None else (
        int(spec.n_classes * spec.base_fraction) if spec.base_fraction else None)
    sizes = phase_sizes(spec.n_classes, phases, base, spread_remaining)
    raw = _cached_arrays(spec.dataset, str(data_root) if data_root else None)
    if raw.n_classes != spec.n_classes:
        raise BenchError(f"dataset {spec.dataset} has {raw.n_classes} classes, scenario {name} expects "
                         f"{spec.n_classes}; check --data-root")
    order = class_order(spec.n_classes, class_order_seed)
    used = sum(sizes)
    remap = torch.full((spec.n_classes,), -1, dtype=torch.int64)
    remap[torch.tensor(order[:used])] = torch.arange(used)

    def kept(y, cap):  # indices of the images this scenario uses: its classes, the first ``cap`` of each
        y2 = remap[y]
        idx = torch.nonzero(y2 >= 0).flatten()
        return idx if cap is None else idx[first_per_class(y2[idx], cap)]

    subset = None
    if per_class is not None:
        n_tr, n_te = (per_class_counts(remap[y][remap[y] >= 0]) for y in (raw.y_train, raw.y_test))
        if n_tr > per_class[0] or n_te > per_class[1]:
            subset = {"train_per_class": per_class[0], "test_per_class": per_class[1], "train_of": n_tr,
                      "test_of": n_te}
    # the images are indexed once (a subset of Tiny-ImageNet copies 1,000 images, not 100,000 first)
    tr = kept(raw.y_train, subset and per_class[0])
    te = kept(raw.y_test, subset and per_class[1])
    xtr, ytr, xte, yte = raw.x_train[tr], remap[raw.y_train[tr]], raw.x_test[te], remap[raw.y_test[te]]
    data = ArrayData(raw.name, xtr, ytr, xte, yte, [raw.classes[c] for c in order[:used]], raw.source, raw.sha256)
    return Scenario(spec, data, order[:used], sizes, spec.n_classes - used, subset)
