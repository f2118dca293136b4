"""Prints ``--dry-run``'s time estimate beside the measured wall time of every finished distillation cell under the
given result folders (default: every ``results/dfkd-*``), so the estimate's calibration can be checked against
what this machine actually did (``benchmark.dfkd_runner.predicted_dfkd_seconds``).

    python tools/check_estimates.py [results/dfkd-cifar10-cpu ...]

Measured times come from each cell's ``result.json`` (``timings.wall_seconds``: synthesis, student steps and
evaluation, not the teacher); cells that shared the cores with other work run slower than the estimate.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> int:
    import strategies.dfkd  # noqa: F401  (registers the methods the estimate looks up)
    from benchmark.dfkd_runner import predicted_dfkd_seconds

    root = Path(__file__).resolve().parents[1]
    folders = [Path(a) for a in argv] or sorted((root / "results").glob("dfkd-*"))
    ratios = []
    print(f"{'folder':28s} {'method':14s} {'epochs':>6s} {'predicted':>10s} {'measured':>9s} {'ratio':>6s}")
    for folder in folders:
        for f in sorted(folder.glob("*/result.json")):
            r = json.loads(f.read_text())
            cfg, wall = r["cell"], r.get("timings", {}).get("wall_seconds")
            if cfg["method"] == "teacher" or not wall:
                continue
            pred = predicted_dfkd_seconds(cfg)
            ratios.append(pred / wall)
            print(f"{folder.name:28s} {cfg['method']:14s} {cfg['distill']['epochs']:6d} {pred / 60:8.1f} m "
                  f"{wall / 60:7.1f} m {pred / wall:6.2f}")
    if not ratios:
        print("no finished distillation cells found", file=sys.stderr)
        return 1
    print(f"{len(ratios)} cells: predicted / measured median {statistics.median(ratios):.2f}, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
