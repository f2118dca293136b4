"""Prints ``--dry-run``'s time estimate beside the measured wall time of every finished cell under the given result
folders (default: every folder in ``results/``), so the estimate's calibration can be checked against what this
machine actually did: ``benchmark.cil_estimates.predicted_seconds`` for class-incremental cells (phase 0 counted only where
the cell trained it, not on a phase-0 cache hit), ``benchmark.dfkd_estimates.predicted_dfkd_seconds`` for distillation
cells (the teacher not counted: it is cached apart), ``benchmark.dfq_estimates.predicted_dfq_seconds`` for
quantization cells (IntraQ's synthesis not counted where the cell loaded its set from the cache).  Per
class-incremental method it also prints the later-phase ``cost`` that would fit its cells that loaded phase 0 (the
cost over their median ratio).

    python benchmarks/check_estimates.py [results/dfkd-cifar10-cpu ...]

Measured times are each cell's ``timings.wall_seconds``; cells that shared the cores with other work (tests, a
second run) ran slower than the estimate.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmark.methods import METHODS  # noqa: E402
from benchmark.cil_estimates import phase0_loaded  # noqa: E402


def predicted(res: dict) -> float | None:
    """The estimate for a finished cell's recorded configuration, None for rows that train nothing (teacher)."""
    cfg = res["cell"]
    if cfg.get("task") == "dfkd":
        from benchmark.dfkd_estimates import predicted_dfkd_seconds

        return None if cfg["method"] == "teacher" else predicted_dfkd_seconds(cfg)
    if cfg.get("task") == "dfq":
        from benchmark.dfq_estimates import predicted_dfq_seconds

        source = ((res.get("extra") or {}).get("synthesis") or {}).get("source", "")
        return None if cfg["method"] == "teacher" else predicted_dfq_seconds(cfg, set_ready=source.startswith("cache"))
    from benchmark.cil_estimates import predicted_seconds

    p0, later = predicted_seconds(cfg)
    return later + (0.0 if phase0_loaded(res.get("timings", {})) else p0)


def main(argv: list[str]) -> int:
    import baselines  # noqa: F401  (register the methods the estimates look up)
    import strategies  # noqa: F401
    import strategies.dfkd  # noqa: F401
    import strategies.dfq  # noqa: F401

    root = Path(__file__).resolve().parents[1]
    folders = [Path(a) for a in argv] or sorted(p for p in (root / "results").iterdir() if p.is_dir())
    ratios: dict[str, list[float]] = {}
    by_method: dict[str, list[float]] = {}  # class-incremental cells that loaded their phase 0: later phases alone
    print(f"{'folder':28s} {'method':14s} {'seed':>4s} {'predicted':>10s} {'measured':>9s} {'ratio':>6s}")
    for folder in folders:
        for f in sorted(folder.glob("*/result.json")):
            res = json.loads(f.read_text())
            wall, pred = res.get("timings", {}).get("wall_seconds"), predicted(res)
            if pred is None or not wall:
                continue
            ratios.setdefault(res["cell"].get("task", "cil"), []).append(pred / wall)
            if res["cell"].get("task", "cil") == "cil" and phase0_loaded(res.get("timings", {})):
                by_method.setdefault(res["cell"]["method"], []).append(pred / wall)
            print(f"{folder.name:28s} {res['cell']['method']:14s} {res['cell']['seed']:4d} {pred / 60:8.1f} m "
                  f"{wall / 60:7.1f} m {pred / wall:6.2f}")
    if not ratios:
        print("error: no finished cells with timings under " + " ".join(map(str, folders)), file=sys.stderr)
        return 2
    for task, r in sorted(ratios.items()):
        print(f"{task}: {len(r)} cells, predicted / measured median {statistics.median(r):.2f}, "
              f"range {min(r):.2f}-{max(r):.2f}")
    # what re-fitting a method's later-phase ``cost`` (``register_method``) to these cells would give: the cost over
    # its median ratio (ignores the fixed per-phase evaluation allowance, a few seconds a phase)
    for m, r in sorted(by_method.items()):
        c1 = METHODS.entry(m).extra.get("cost", (1.0, 1.0))[1]
        print(f"  {m:18s} {len(r):3d} cells with phase 0 loaded, median ratio {statistics.median(r):.2f}: "
              f"later-phase cost {c1:g} -> {c1 / statistics.median(r):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
