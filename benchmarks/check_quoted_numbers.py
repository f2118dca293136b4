"""Checks that every number ``results/README.md`` quotes next to a cell's folder name is what that cell's
``result.json`` holds.

The convention: a cell is named by its folder in backticks, with or without the key (``cifar100-p10-pass-s2``,
``mnist-teacher-s0``, ``dfkd-cifar10-cpu/cifar10-dfad-s0-7e5cec4311``), and a number with a unit (``%`` or ``min``)
written right beside it -- in the same clause, before the next cell name -- is a quote from that cell.  A quoted
percentage must equal, at the precision written, one of the cell's accuracies (every row's metrics, accuracy-matrix
entries, final / best / per-epoch top-1, the teacher's accuracy), times 100; a quoted ``min`` its wall time or one
phase's time.  Where a name matches several folders (a cell kept beside a stale one), one of them must hold the
number.

    python benchmarks/check_quoted_numbers.py [README]      # prints each quote and its verdict; exit 1 on a mismatch
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
CELL = re.compile(r"`(?:[\w.-]+/)?([a-z0-9]+(?:-[a-z0-9]+)*-(?:p\d+-)?[a-z0-9+.\[\]=_-]*?-s\d+(?:-[0-9a-f*]+)?)`")
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(%|min\b)")
WINDOW = 60  # characters on either side of a name within which a number is its quote
CLAUSE_END = re.compile(r"[.;:]\s|\n\n")


def _folders(name: str) -> list[Path]:
    stem = name.rstrip("*").rstrip("-")
    return sorted(p for p in RESULTS.glob(f"*/{stem}*") if (p / "result.json").is_file()
                  and re.fullmatch(re.escape(stem) + r"(-[0-9a-f]{10})?", p.name))


def _percent_values(r: dict) -> list[float]:
    out = []
    for m in r.get("rows", {}).values():
        for k, v in m.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(v)
            elif k in ("acc", "seen_acc") and isinstance(v, list):
                out += [x for row in v for x in (row if isinstance(row, list) else [row]) if x is not None]
            elif k == "curve":
                out += [pt["top1"] for pt in v]
    if isinstance(r.get("teacher"), dict) and r["teacher"].get("test_accuracy") is not None:
        out.append(r["teacher"]["test_accuracy"])
    return [100 * v for v in out]


def _minute_values(r: dict) -> list[float]:
    t = r.get("timings") or {}
    secs = [t["wall_seconds"]] if isinstance(t.get("wall_seconds"), (int, float)) else []
    return [x / 60 for x in secs + list(t.get("phase_seconds") or [])]


def _matches(text: str, values: list[float]) -> bool:
    decimals = len(text.split(".")[1]) if "." in text else 0
    return any(f"{v:.{decimals}f}" == text for v in values)


def quotes(readme: str) -> list[tuple[str, str, str, int]]:
    """(cell name, number, unit, line) for every number beside a cell name: within ``WINDOW`` characters and the
    same clause, each number going to the nearest name ("took 8.2 min (`a`) and 7.9 min (`b`)": 7.9 is b's)."""
    names = list(CELL.finditer(readme))
    out = []
    for n in NUMBER.finditer(readme):
        best = None
        for m in names:
            gap = n.start() - m.end() if n.start() >= m.end() else m.start() - n.end()
            between = readme[min(m.end(), n.end()):max(m.start(), n.start())]
            if 0 <= gap <= WINDOW and not CLAUSE_END.search(between) and (best is None or gap < best[0]):
                best = (gap, m)
        if best:
            out.append((best[1].group(1), n.group(1), n.group(2), readme.count("\n", 0, n.start()) + 1))
    return out


def check(readme: str) -> list[str]:
    """One line per quote, ``ok`` or ``MISMATCH``; raises nothing."""
    lines = []
    for name, number, unit, line in quotes(readme):
        folders = _folders(name)
        if not folders:
            lines.append(f"MISMATCH line {line}: `{name}` names no committed cell folder")
            continue
        values = []
        for f in folders:
            r = json.loads((f / "result.json").read_text())
            values += _percent_values(r) if unit == "%" else _minute_values(r)
        ok = _matches(number, values)
        lines.append(f"{'ok' if ok else 'MISMATCH'} line {line}: {number} {unit} beside `{name}` "
                     f"({', '.join(f.parent.name + '/' + f.name for f in folders)})")
    return lines


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else RESULTS / "README.md"
    lines = check(path.read_text())
    print("\n".join(lines) if lines else "no number quoted beside a cell name")
    bad = sum(line.startswith("MISMATCH") for line in lines)
    print(f"{len(lines)} quotes, {bad} mismatched")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
