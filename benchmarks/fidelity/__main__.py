"""Command line of the fidelity harnesses.

    python -m benchmarks.fidelity METHOD --official DIR [--steps N] [--seed S] [--out results/fidelity]
    python -m benchmarks.fidelity table [--out results/fidelity]

``METHOD`` is a suite method with a harness (``--help`` lists them); ``DIR`` a checkout of its official repository,
which the harness imports at run time (nothing of it enters this repository).  Levels 1 and 2 (one training step's
loss terms, gradients and update) always run; ``--steps N`` > 0 adds level 3, a short run of N identical steps.
The rows go to ``OUT/<method>.json``; ``table`` prints the markdown table of every row under ``OUT``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.fidelity.common import (official_commit, read_rows, table, weights_only_state_dicts,  # noqa: E402
                                        write_rows)

# suite method -> the harness module that compares it (one module per official codebase)
HARNESSES = {
    "pass": "benchmarks.fidelity.pass_official",
    "ssre": "benchmarks.fidelity.ssre_official",
    "cmi": "benchmarks.fidelity.cmi_official",
    "deepinversion": "benchmarks.fidelity.cmi_official",
    "dafl": "benchmarks.fidelity.cmi_official",
    "zskt": "benchmarks.fidelity.cmi_official",
    "dfq": "benchmarks.fidelity.cmi_official",
    "rgal": "benchmarks.fidelity.rgal_official",
    "rgal-cil": "benchmarks.fidelity.rgal_official",
    "dfad": "benchmarks.fidelity.dfad_official",
    "ucir": "benchmarks.fidelity.ucir_official",
    "muc": "benchmarks.fidelity.muc_official",
    "lwf": "benchmarks.fidelity.facil_official",
    "ewc": "benchmarks.fidelity.facil_official",
    "icarl": "benchmarks.fidelity.facil_official",
    "eeil": "benchmarks.fidelity.facil_official",
    "lwm": "benchmarks.fidelity.facil_official",
}


def available() -> dict:
    """The harnesses whose module exists in this checkout."""
    return {m: mod for m, mod in HARNESSES.items()
            if (ROOT / (mod.replace(".", "/") + ".py")).is_file()}


def main(argv=None) -> int:
    have = available()
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fidelity", description=__doc__.split("\n\n")[0])
    ap.add_argument("method", choices=[*have, "table"], help="suite method to compare, or 'table'")
    ap.add_argument("--official", type=Path, help="checkout of the method's official repository")
    ap.add_argument("--steps", type=int, default=0, help="level 3: identical steps of a short run (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "fidelity")
    a = ap.parse_args(argv)
    if a.method == "table":
        print(table(read_rows(a.out)))
        return 0
    if a.official is None or not a.official.is_dir():
        print(f"error: --official must name a checkout of the official code of {a.method} "
              f"({importlib.import_module(have[a.method]).REPOSITORY})", file=sys.stderr)
        return 2
    mod = importlib.import_module(have[a.method])
    with weights_only_state_dicts():
        rows = mod.run(a.method, a.official, steps=a.steps, seed=a.seed, commit=official_commit(a.official))
    path = write_rows(rows, a.out, a.method)
    print(table([r.__dict__ for r in rows]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
