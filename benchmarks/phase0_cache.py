"""Phase-0 cache saving (a phase 0 is trained once per family and seed, then shared): runs a sweep over 5/10/20 phases and the PASS /
SSRE family with an empty cache (or reads a finished sweep), then prints the phase-0 time actually spent, the time
the cache saved (each hit would otherwise have trained phase 0 again, for as long as the miss did) and, from the
measured phase-0 time of a ``cpu`` CIFAR-100 result if one is given, the saving extrapolated to the ``cpu`` sweep.

    python benchmarks/phase0_cache.py                         # runs the cifar100-mini sweep (mini profile), ~5 min
    python benchmarks/phase0_cache.py --results DIR           # analyse a finished sweep instead
    python benchmarks/phase0_cache.py --cpu-results results/cil-pass-family-cpu   # add the cpu extrapolation
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ["pass", "pass+rgal", "ssre", "ssre+rgal", "pass+rgal-g"]


def _results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).rglob("result.json"))]


def phase0_times(results: list[dict]) -> tuple[list[float], list[float]]:
    """Phase-0 seconds of the cells that trained phase 0 (cache miss) and of those that loaded it (a cache hit, or a
    miss restored from a ``phase0.pt`` beside the cell: neither trained anything)."""
    from benchmark.cil_estimates import phase0_loaded

    miss, hit = [], []
    for r in results:
        (hit if phase0_loaded(r["timings"]) else miss).append(r["timings"]["phase_seconds"][0])
    return miss, hit


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", help="a finished sweep to analyse instead of running one")
    ap.add_argument("--cpu-results", help="cpu-profile CIFAR-100 results whose measured phase-0 time to extrapolate")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    a = ap.parse_args()
    if a.results:
        folder = Path(a.results)
    else:
        import os

        import run_benchmark

        tmp = Path(tempfile.mkdtemp(prefix="phase0-cache-"))
        os.environ["BENCH_CACHE"] = str(tmp / "cache")
        folder = tmp / "run"
        argv = ["--phases", "5", "10", "20", "--methods", *METHODS, "--seeds", *map(str, a.seeds), "--out",
                str(folder), "--no-progress"]
        print("running: python run_benchmark.py " + " ".join(argv))
        if run_benchmark.main(argv) != 0:
            return 1
    res = _results(folder)
    miss, hit = phase0_times(res)
    if not miss:
        print("no cell trained phase 0 in this folder (every phase 0 came from an older cache)")
        return 1
    t0 = statistics.mean(miss)
    total = sum(sum(r["timings"]["phase_seconds"]) for r in res)
    saved = len(hit) * t0 - sum(hit)
    print(f"{len(res)} cells: phase 0 trained {len(miss)} times (mean {t0:.1f} s), loaded from the cache {len(hit)} "
          f"times (mean {statistics.mean(hit) if hit else 0:.1f} s, end-of-phase work included)")
    print(f"sweep wall time {total:.0f} s; without the cache about {total + saved:.0f} s: saved {saved:.0f} s "
          f"({100 * saved / (total + saved):.0f} %)")
    if a.cpu_results:
        cm, _ = phase0_times([r for r in _results(Path(a.cpu_results)) if r["cell"]["scenario"] == "cifar100"])
        if cm:
            c0 = statistics.mean(cm)
            n = len(METHODS) * 3
            print(f"cpu profile, CIFAR-100: measured phase 0 {c0 / 60:.1f} min; a sweep of {len(METHODS)} methods x 3 "
                  f"protocols trains it once per seed instead of {n} times: saves {(n - 1) * c0 / 3600:.1f} h per seed")
        else:
            print(f"no cpu CIFAR-100 cell under {a.cpu_results} trained phase 0, so there is no measured phase-0 "
                  f"time to extrapolate from")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
