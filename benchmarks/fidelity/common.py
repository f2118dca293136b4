"""What every fidelity harness shares: importing an official checkout at run time, comparing the two sides' numbers,
and the rows of ``results/fidelity/``.

A harness builds the official computation and the suite's from one state (weights, batch, random draws injected into
both sides) and reports, per method and level,
1. every loss term of one training step and the total,
2. the gradients of every parameter and the parameters after the optimiser step,
3. a short run of identical batches: the loss curves (and, where cheap, the accuracy after it);
with the largest difference and a verdict: ``identical`` (within float32 round-off), ``departs on purpose`` (a
documented choice of the suite, named in the row with its measured size) or ``differs`` (a finding).

The official code is never copied into this repository: the user passes a checkout (``--official DIR``) and the
harness imports it from there, monkeypatching only what a CPU-only machine without the original dataset files needs
(each harness lists its patches in its docstring and in every row it writes).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

@contextlib.contextmanager
def weights_only_state_dicts():
    """Inside: the suite's sliced classifier leaves its ``active`` out of ``state_dict`` (where it normally travels
    as ``_extra_state``, so that a resumed run's previous model scores the classes it scored).  The harnesses map
    state dicts tensor by tensor onto the official models, which have no such entry, and set ``active``
    themselves."""
    from benchmark.models.base import SlicedLinear

    had = SlicedLinear.__dict__.get("get_extra_state")
    SlicedLinear.get_extra_state = torch.nn.Module.get_extra_state  # PyTorch then writes no extra state
    try:
        yield
    finally:
        SlicedLinear.get_extra_state = had


# float32 round-off of one step (the fidelity criterion: 1e-5 relative on losses and gradients)
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-5

VERDICTS = ("identical", "departs on purpose", "differs")


@dataclass
class Row:
    """One line of the fidelity table."""

    method: str
    level: int  # 1 loss terms, 2 gradients and step, 3 short run
    official: str  # owner/name of the official repository
    commit: str  # the official checkout's commit
    compared: str  # what was compared, in a few words
    max_diff: float  # the largest relative difference found (level 3: of the loss curves)
    tolerance: float
    verdict: str
    note: str = ""  # the departure and its measured effect, or the finding
    details: dict = field(default_factory=dict)  # per term / per tensor figures
    patches: list = field(default_factory=list)  # what the harness changed in the official code, and why

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


def official_commit(path: Path) -> str:
    """The commit of an official checkout: ``git rev-parse HEAD``, else a ``COMMIT`` file beside the code (an archive
    extracted from a bare repository has no ``.git``), else ``unknown``."""
    path = Path(path)
    try:
        out = subprocess.run(["git", "--no-optional-locks", "-C", str(path), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    f = path / "COMMIT"
    return f.read_text().strip() if f.is_file() else "unknown"


@contextlib.contextmanager
def official_imports(path: Path, *prefixes: str):
    """Puts an official checkout first on ``sys.path`` and, on exit, removes it and every module it imported whose
    name starts with one of ``prefixes`` (official repositories use generic names: ``utils``, ``models``,
    ``registry``, which must not shadow each other or the suite's)."""
    path = str(Path(path).resolve())
    before = set(sys.modules)
    sys.path.insert(0, path)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(path)
        for name in set(sys.modules) - before:
            mod = sys.modules.get(name)
            file = getattr(mod, "__file__", None) or ""
            if file.startswith(path) or name.startswith(prefixes or ("\0",)):
                del sys.modules[name]


def rel_diff(a: float, b: float) -> float:
    """``|a - b| / max(|a|, |b|)`` (0 when both are 0)."""
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def compare_terms(official: dict, suite: dict) -> dict:
    """Per loss term: both values, the absolute and relative difference.  A term on one side only is reported with
    ``None`` on the other (a relative difference of 1)."""
    out = {}
    for k in sorted(set(official) | set(suite)):
        a, b = official.get(k), suite.get(k)
        if a is None or b is None:
            out[k] = {"official": a, "suite": b, "abs": None, "rel": 1.0}
            continue
        a, b = float(a), float(b)
        out[k] = {"official": a, "suite": b, "abs": abs(a - b), "rel": rel_diff(a, b)}
    return out


def tensor_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|a|`` in float64 (0 when both are 0; 1 for a shape mismatch)."""
    if a.shape != b.shape:
        return 1.0
    a, b = a.detach().double(), b.detach().double()
    scale = max(a.abs().max().item(), b.abs().max().item()) if a.numel() else 0.0
    return 0.0 if scale == 0 else (a - b).abs().max().item() / scale


def compare_tensors(official: dict, suite: dict) -> dict:
    """Per named tensor (gradients, parameters after the step): the relative difference; names on one side only
    count as 1."""
    return {k: (tensor_rel_diff(official[k], suite[k]) if k in official and k in suite else 1.0)
            for k in sorted(set(official) | set(suite))}


def step_change_rel_diff(before: dict, official_after: dict, suite_after: dict) -> dict:
    """Per parameter: the difference of the two updates ``after - before`` relative to the update's size.  Adam's
    first step moves every element by about ``lr * sign(g)``, so an element whose gradient is round-off noise flips
    sign between the sides; the update's relative difference over elements whose update is above 1 % of the
    largest says whether the step is the same where it moves anything."""
    out = {}
    for k, w0 in before.items():
        if k not in official_after or k not in suite_after:
            out[k] = 1.0
            continue
        da, db = (official_after[k].double() - w0.double()), (suite_after[k].double() - w0.double())
        scale = max(da.abs().max().item(), db.abs().max().item())
        if scale == 0:
            out[k] = 0.0
            continue
        moving = (da.abs() > 0.01 * scale) | (db.abs() > 0.01 * scale)
        out[k] = (da - db)[moving].abs().max().item() / scale
    return out


def worst(d: dict) -> tuple[str, float]:
    """The name and value of the largest entry of ``{name: rel}`` or of ``compare_terms``' output."""
    vals = {k: (v["rel"] if isinstance(v, dict) else v) for k, v in d.items()}
    vals = {k: (1.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in vals.items()}
    if not vals:
        return "", 0.0
    k = max(vals, key=vals.get)
    return k, float(vals[k])


def verdict(max_diff: float, tolerance: float, departure: str = "") -> str:
    """``identical`` within tolerance; above it, ``departs on purpose`` when the harness names a documented
    departure that explains it, else ``differs``."""
    if max_diff <= tolerance:
        return "identical"
    return "departs on purpose" if departure else "differs"


def write_rows(rows: list[Row], out_dir: Path, method: str) -> Path:
    """``out_dir/<method>.json``: the rows of one harness run (the table is rebuilt from all such files)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{method.replace('+', '_')}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"method": method, "rows": [asdict(r) for r in rows]}, indent=1, default=float) + "\n")
    tmp.replace(path)
    return path


def read_rows(out_dir: Path) -> list[dict]:
    rows = []
    for f in sorted(Path(out_dir).glob("*.json")):
        rows.extend(json.loads(f.read_text())["rows"])
    return rows


def table(rows: list[dict]) -> str:
    """The markdown table of ``results/fidelity/README.md``: one line per method and level."""
    head = ("| method | level | official (commit) | compared | max rel. diff | tol. | verdict | note |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in sorted(rows, key=lambda r: (r["method"], r["level"])):
        lines.append(f"| {r['method']} | {r['level']} | {r['official']} ({r['commit'][:7]}) | {r['compared']} | "
                     f"{r['max_diff']:.1e} | {r['tolerance']:.0e} | {r['verdict']} | {r['note']} |")
    return "\n".join(lines)
