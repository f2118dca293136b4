"""Wall time of one fixed sweep through ``--executor sequential`` (1 thread) and ``--executor local --workers N``
(N workers of ``cores // N`` threads), interleaved, each run a fresh process with a fresh ``--out`` and cache (so
every phase 0 is trained), median of ``--repeats``; prints the figures and the speed-up.  On 2 cores the ideal is
2x for single-threaded cells; the gap is worker start-up (a fresh interpreter importing torch and Avalanche) and the
units of work that cannot be split (cells sharing a phase 0 run in one worker, in order).

    python benchmarks/executor_scaling.py                       # 8 cells: cifar100-mini smoke, 4 methods x 2 seeds
    python benchmarks/executor_scaling.py --workers 2 --repeats 3 --methods finetune lwf ewc pass --seeds 0 1
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(executor: str, workers: int, args: list[str], work: Path) -> float:
    out, cache = work / "out", work / "cache"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "run_benchmark.py"), *args, "--out", str(out), "--cache-dir", str(cache),
           "--no-progress", "--executor", executor]
    env = dict(os.environ)
    if executor == "local":
        cmd += ["--workers", str(workers)]
    else:
        env["OMP_NUM_THREADS"] = "1"  # the cells a local worker runs on 2 cores: one thread each
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scenario", default="cifar100-mini")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--phases", default="2")
    ap.add_argument("--methods", nargs="+", default=["finetune", "lwf", "ewc", "pass"])
    ap.add_argument("--seeds", nargs="+", default=["0", "1"])
    a = ap.parse_args(argv)
    sweep = ["--scenario", a.scenario, "--profile", a.profile, "--phases", a.phases, "--methods", *a.methods,
             "--seeds", *a.seeds]
    cells = len(a.methods) * len(a.seeds)
    times: dict[str, list[float]] = {"sequential": [], "local": []}
    with tempfile.TemporaryDirectory(prefix="executor-scaling-") as tmp:
        for r in range(a.repeats):
            for ex in ("sequential", "local"):  # interleaved: both see the same machine load
                s = run_once(ex, a.workers, sweep, Path(tmp) / ex)
                times[ex].append(s)
                print(f"  repeat {r + 1}: {ex:10s} {s:7.1f} s", flush=True)
    seq, loc = statistics.median(times["sequential"]), statistics.median(times["local"])
    print(f"{cells} cells ({' '.join(sweep)}), {os.cpu_count()} cores, median of {a.repeats}:")
    print(f"  sequential (1 thread)          {seq:7.1f} s")
    print(f"  local, {a.workers} workers                {loc:7.1f} s   speed-up {seq / loc:.2f}x "
          f"(per-repeat ratios {', '.join(f'{s / q:.2f}' for s, q in zip(times['sequential'], times['local']))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
