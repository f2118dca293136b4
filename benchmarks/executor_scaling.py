"""Wall time of one fixed sweep through ``--executor sequential`` (1 thread), ``--executor local --workers N`` (N
workers of ``cores // N`` threads) and ``--executor ray`` (a local Ray instance, ``--cpus-per-cell cores // N``, at
most N tasks at once), interleaved, each run a fresh process with a fresh ``--out`` and cache (so every phase 0 is
trained), median of ``--repeats``; prints the figures, the speed-ups and each executor's overhead per cell: (wall
time - the cells' own measured seconds / N) / cells, i.e. start-up (a fresh interpreter importing torch and
Avalanche, Ray's own start) and scheduling, spread over the cells; and that overhead split into the fixed cost (the
same command re-run with every cell finished) and the rest per cell (scheduling, a task's start, its result's way
back).  On 2 cores the ideal is 2x for single-threaded
cells; units of work that cannot be split (cells sharing a phase 0 run in one worker, in order) lower it, so the
default sweep is 12 independent cells (one method, 12 seeds: 12 phase-0 models), ~36 s each at 1 thread: long
enough that the executors' fixed start-up cost (20-30 s) does not decide the ratio.

    python benchmarks/executor_scaling.py                       # 12 cells: cifar100-mini, mini profile, 2 phases
    python benchmarks/executor_scaling.py --epochs 1 --seeds 0 1 2 3 4 5 6 7   # 8 shorter cells (~20 s each)
    python benchmarks/executor_scaling.py --executors sequential local --methods finetune lwf --seeds 0 1 2 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(executor: str, workers: int, args: list[str], work: Path) -> tuple[float, float, float]:
    """(wall seconds of the command, the cells' own seconds summed from their result files, wall seconds of the same
    command run again with every cell finished: the executor's fixed cost -- interpreter, imports, Ray's start,
    workers that start and import, planning, the report)."""
    out, cache = work / "out", work / "cache"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "run_benchmark.py"), *args, "--out", str(out), "--cache-dir", str(cache),
           "--no-progress", "--executor", executor]
    env = dict(os.environ)
    threads = max(1, (os.cpu_count() or 1) // workers)
    if executor == "local":
        cmd += ["--workers", str(workers)]
    elif executor == "ray":
        cmd += ["--workers", str(workers), "--cpus-per-cell", str(threads)]
    else:
        env["OMP_NUM_THREADS"] = str(threads)  # the cells a worker runs: the same thread count, the same keys
    walls = []
    for _ in range(2):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        walls.append(time.perf_counter() - t0)
        if p.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    cells = sum(json.loads(f.read_text())["timings"]["wall_seconds"] for f in out.glob("*/result.json"))
    return walls[0], cells, walls[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--executors", nargs="+", default=["sequential", "local", "ray"],
                    choices=["sequential", "local", "ray"])
    ap.add_argument("--scenario", default="cifar100-mini")
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--phases", default="2")
    ap.add_argument("--epochs", default=None, help="--epochs of every cell (default: the profile's)")
    ap.add_argument("--methods", nargs="+", default=["finetune"])
    ap.add_argument("--seeds", nargs="+", default=[str(s) for s in range(12)])
    a = ap.parse_args(argv)
    sweep = ["--scenario", a.scenario, "--profile", a.profile, "--phases", a.phases, "--methods", *a.methods,
             "--seeds", *a.seeds] + (["--epochs", a.epochs] if a.epochs else [])
    cells = len(a.methods) * len(a.seeds)
    times: dict[str, list[float]] = {ex: [] for ex in a.executors}
    own: dict[str, list[float]] = {ex: [] for ex in a.executors}
    fixed: dict[str, list[float]] = {ex: [] for ex in a.executors}
    with tempfile.TemporaryDirectory(prefix="executor-scaling-") as tmp:
        for r in range(a.repeats):
            for ex in a.executors:  # interleaved: every executor sees the same machine load
                s, c, f = run_once(ex, a.workers, sweep, Path(tmp) / ex)
                times[ex].append(s)
                own[ex].append(c)
                fixed[ex].append(f)
                print(f"  repeat {r + 1}: {ex:10s} {s:7.1f} s (cells' own {c:6.1f} s; re-run, all finished: {f:5.1f} s)",
                      flush=True)
    med = {ex: statistics.median(v) for ex, v in times.items()}
    print(f"{cells} cells ({' '.join(sweep)}), {os.cpu_count()} cores, median of {a.repeats}:")
    for ex in a.executors:
        n = 1 if ex == "sequential" else a.workers
        overhead = med[ex] - statistics.median(own[ex]) / n
        start = statistics.median(fixed[ex])
        line = f"  {ex:10s} {'(1 worker)' if n == 1 else f'({n} workers)':12s} {med[ex]:7.1f} s"
        if ex != "sequential" and "sequential" in med:
            ratios = ", ".join(f"{s / q:.2f}" for s, q in zip(times["sequential"], times[ex]))
            line += f"   speed-up {med['sequential'] / med[ex]:.2f}x (per repeat {ratios})"
        print(f"{line}; overhead {overhead / cells:.2f} s a cell, of which fixed {start:.1f} s (a re-run with every "
              f"cell finished) and {(overhead - start) / cells:.2f} s a cell beyond it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
