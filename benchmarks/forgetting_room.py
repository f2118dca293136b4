"""Prints, for every finished class-incremental cell under the given result folders, its average incremental accuracy
beside the same figure with no forgetting (``benchmark.metrics.best_so_far``: every old group kept at the best
accuracy it reached so far) and their difference, the most that an anti-forgetting term such as RGAL's could add.
Used in results/README.md (`cil-pass-family-cpu/`) to ask whether the cpu profile leaves RGAL room for its published
gain.

    python benchmarks/forgetting_room.py results/cil-pass-family-cpu [more folders]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.metrics import average_incremental_accuracy, best_so_far  # noqa: E402


def room(res: dict) -> tuple[float, float]:
    """(average accuracy, average accuracy with no forgetting) of a result file's method row, in %."""
    m = res["cell"]["method"]
    acc, counts = res["rows"][m]["acc"], res["group_counts"]
    return 100 * average_incremental_accuracy(acc, counts), 100 * average_incremental_accuracy(best_so_far(acc), counts)


def main(folders: list[str]) -> int:
    if not folders:
        print("usage: python benchmarks/forgetting_room.py RESULTS_FOLDER [...]", file=sys.stderr)
        return 2
    print(f"{'cell':48s} {'average':>8s} {'no forgetting':>14s} {'room':>6s}")
    for folder in folders:
        for p in sorted(Path(folder).glob("*/result.json")):
            res = json.loads(p.read_text())
            if res["cell"].get("task", "cil") != "cil":  # forgetting is a class-incremental figure
                continue
            a, b = room(res)
            print(f"{p.parent.name:48s} {a:8.2f} {b:14.2f} {b - a:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
