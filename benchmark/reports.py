"""Reports built only from ``result.json`` files (never from training state): RGAL-paper-shaped tables
(Tables 14 / 15 / 16 / 17: rows methods, columns dataset x phases) for average accuracy, ``forgetting_max``, overall
accuracy and the RGAL ablation, mean +- std over seeds with the published number beside each measured one, as CSV,
Markdown and LaTeX; seaborn plots of accuracy on seen classes against the number of classes (Figures 10 / 11) and
accuracy-matrix heatmaps; the helpers both tasks' reports share (loading, row labels, provenance, notes).  The
report command's writer, which adds the distillation reports, is ``benchmark.report_writer``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from benchmark import metrics

PUBLISHED_CSV = Path(__file__).resolve().parent / "reference" / "published.csv"
DATASET_NAMES = {"cifar100": "CIFAR-100", "cifar100-mini": "CIFAR-100", "tinyimagenet": "Tiny-ImageNet",
                 "cifar10": "CIFAR-10", "mnist": "MNIST", "imagenet": "ImageNet"}
METRICS = {  # our metric -> (published metric, RGAL table)
    "average_accuracy": ("average_accuracy", 14),
    "forgetting_max": ("average_forgetting", 15),
    "overall_accuracy": ("overall_accuracy", 16),
}
# (file stem, our metric, published metric, RGAL table, row filter, title).  Tables 16 (overall accuracy) and 17
# (average accuracy) of the paper are the RGAL ablation on PASS (L'_g only, L'_g + L'_s); table 16 keeps every row
# (published numbers exist for the PASS rows only), table 17 keeps the methods with RGAL and those they are compared
# with (filter "rgal": ``register_method``'s ``rgal_baseline``, the PASS / SSRE family; ``table_filter``).
TABLES = [
    ("table14_average_accuracy", "average_accuracy", "average_accuracy", 14, None, "average accuracy"),
    ("table15_forgetting_max", "forgetting_max", "average_forgetting", 15, None, "forgetting_max"),
    ("table16_overall_accuracy", "overall_accuracy", "overall_accuracy", 16, None, "overall accuracy"),
    ("table17_average_accuracy_ablation", "average_accuracy", "average_accuracy", 17,
     "rgal", "average accuracy, RGAL ablation (PASS / SSRE family)"),
]


def result_problem(res) -> str | None:
    """Why a parsed ``result.json`` cannot be reported (``None`` when it can): every result is written with a
    ``cell`` dict and a ``rows`` dict of per-row metrics."""
    if not isinstance(res, dict) or not isinstance(res.get("cell"), dict):
        return "no 'cell': not a result written by run_benchmark.py"
    if not isinstance(res.get("rows"), dict) or not res["rows"]:
        return "no 'rows': a damaged or foreign result"
    return None


def load_results(folders: Path | list[Path], task: str = "cil") -> list[dict]:
    """Every ``result.json`` of ``task`` below ``folders`` (one folder or several; unreadable files are skipped).

    A cell copied into two folders (same key: same recipe, seed and data) is read once, from the first folder, so
    merged reports do not count a seed twice."""
    out, seen = [], set()
    for folder in [folders] if isinstance(folders, (str, Path)) else folders:
        for p in sorted(Path(folder).rglob("result.json")):
            try:
                res = json.loads(p.read_text())
            except (OSError, ValueError):
                continue  # listed by unreadable_results
            if result_problem(res):
                continue
            key = res.get("key")
            if res["cell"].get("task") != task or (key is not None and key in seen):
                continue
            seen.add(key)
            res["_path"] = str(p)
            out.append(res)
    return out


def unreadable_results(folders: Path | list[Path]) -> list[str]:
    """``"PATH (reason)"`` for every ``result.json`` below ``folders`` that ``load_results`` cannot use: not JSON, or
    without the ``cell`` every result is written with (a foreign file)."""
    bad = []
    for folder in [folders] if isinstance(folders, (str, Path)) else folders:
        for p in sorted(Path(folder).rglob("result.json")):
            try:
                res = json.loads(p.read_text())
            except (OSError, ValueError) as e:
                bad.append(f"{p} (not readable JSON: {e})")
                continue
            why = result_problem(res)
            if why:
                bad.append(f"{p} ({why})")
    return bad


def method_params(result: dict) -> dict:
    """A result's method parameters with the key-neutral ones its cell leaves out at their default put back
    (``benchmark.methods.full_params``), so that tables name the value instead of "default"."""
    from benchmark.dfkd_methods import DFKD_METHODS
    from benchmark.dfq_methods import DFQ_METHODS
    from benchmark.methods import METHODS, full_params
    from benchmark.registry import load_methods

    load_methods()  # the method packages register their defaults (imported once; it loads Avalanche)
    cell = result["cell"]
    params = cell.get("method_params", {})
    registry = {"cil": METHODS, "dfkd": DFKD_METHODS, "dfq": DFQ_METHODS}[cell.get("task", "cil")]
    return full_params(cell["method"], params, registry) if cell.get("method") in registry else params


def varying_params(results: list[dict]) -> dict[str, list[str]]:
    """Per method, the hyper-parameters whose values differ between the given results (``--set`` sweeps)."""
    names: dict[str, set] = {}
    for r in results:
        names.setdefault(r["cell"]["method"], set()).update(method_params(r))
    values: dict[str, dict[str, set]] = {m: {k: set() for k in ks} for m, ks in names.items()}
    for r in results:
        params = method_params(r)
        for k, vals in values[r["cell"]["method"]].items():
            vals.add(json.dumps(params.get(k, "<default>"), sort_keys=True))
    return {m: sorted(k for k, vals in keys.items() if len(vals) > 1) for m, keys in values.items()}


def row_label(result: dict, row: str, varying: dict[str, list[str]] | None = None) -> str:
    """A row's name in the tables and the seen-accuracy plot: an offline row (joint training) says what it is where it
    is read, and results of one method with different hyper-parameters (``varying``, from ``varying_params``) are
    told apart instead of being averaged as if they were seeds."""
    params = method_params(result)
    # a value the row's name already shows in brackets (``rgal[released]``) is not repeated
    keys = [k for k in (varying or {}).get(result["cell"].get("method"), []) if f"[{params.get(k)}]" not in row]
    if keys:
        row += " [" + ", ".join(f"{k}={params.get(k, 'default')}" for k in keys) + "]"
    return f"{row} (offline upper bound: one training on all classes)" if result.get("offline") else row


def long_frame(results: list[dict]) -> pd.DataFrame:
    recs, varying = [], varying_params(results)
    for r in results:
        c = r["cell"]
        for row, m in r["rows"].items():
            recs.append({"scenario": c["scenario"], "dataset": DATASET_NAMES.get(c["scenario"], c["scenario"]),
                         "phases": c["phases"], "method": row_label(r, row, varying),
                         "published_name": m.get("published_name", ""),
                         "seed": c["seed"], "profile": c["profile"], "memory": r.get("memory", ""),
                         "average_accuracy": m["average_accuracy"] * 100,
                         "overall_accuracy": m["overall_accuracy"] * 100,
                         "forgetting_max": _pct(m["forgetting_max"]), "forgetting_first": _pct(m["forgetting_first"]),
                         # recomputed from the matrix: results written before the metric existed have it too
                         "new_accuracy": metrics.new_accuracy(m["acc"]) * 100,  # NaN with one phase
                         "bwt": metrics.backward_transfer(m["acc"]) * 100,
                         "wall_seconds": r["timings"]["wall_seconds"]})
    return pd.DataFrame.from_records(recs)


def _pct(v):
    return float("nan") if v is None else v * 100


def published() -> pd.DataFrame:
    return pd.read_csv(PUBLISHED_CSV)


def published_cil_value(pub: pd.DataFrame, dataset: str, phases: int, name: str, pub_metric: str,
                        table: int | None = None) -> float | None:
    """The published class-incremental number of ``name`` (its published method name) for a protocol, from ``table``
    or, without one, from the first table that has it (Tables 14 and 17 repeat the same figures)."""
    if not name:
        return None
    p = pub[(pub["task"] == "cil") & (pub["metric"] == pub_metric) & (pub["dataset"] == dataset)
            & (pub["method"] == name) & (pub["phases"] == phases)]
    if table is not None:
        p = p[p["table"] == table]
    return float(p["value"].iloc[0]) if len(p) else None


def _fmt(mean, std, n):
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    return f"{mean:.2f} ± {std:.2f} (n={n})" if n > 1 else f"{mean:.2f} (n=1)"


def metric_table(df: pd.DataFrame, metric: str, pub_metric: str | None = None,
                 table: int | None = None) -> pd.DataFrame:
    """Rows: method; columns: (dataset, phases, measured | published)."""
    pub = published()
    if pub_metric is None:
        pub_metric, table = METRICS[metric]
    g = df.groupby(["method", "dataset", "scenario", "phases", "profile"])[metric]
    agg = g.agg(["mean", "std", "count"]).reset_index()
    names = df.drop_duplicates("method").set_index("method")["published_name"].to_dict()
    cols = {}
    # columns by scenario, then phases as numbers (5, 10, 20; not the text order 10, 20, 5), then profile
    for _, a in agg.sort_values(["scenario", "phases", "profile"], kind="stable").iterrows():
        col = f"{a['scenario']} {a['phases']}ph [{a['profile']}]"
        cols.setdefault((col, "measured"), {})[a["method"]] = _fmt(a["mean"], 0.0 if pd.isna(a["std"]) else a["std"],
                                                                   int(a["count"]))
        v = published_cil_value(pub, a["dataset"], a["phases"], names.get(a["method"], ""), pub_metric, table)
        # the embedded subset stands beside the numbers of the full data set: the column says so
        label = f"published (full {a['dataset']})" if a["scenario"].endswith("-mini") else "published"
        cols.setdefault((col, label), {})[a["method"]] = "-" if v is None else f"{v:.2f}"
    out = pd.DataFrame(cols)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out.fillna("")


def markdown(t: pd.DataFrame) -> str:
    """``t`` as a Markdown table whose row labels read as text ("CIFAR-10 / wrn40_2 / wrn16_1") and not as Python
    tuples, and whose missing values are a dash."""
    out = t.copy()
    out.index = [" / ".join(map(str, i)) if isinstance(i, tuple) else i for i in t.index]
    return out.to_markdown(missingval="-")


def _flat(t: pd.DataFrame) -> pd.DataFrame:
    out = t.copy()
    out.columns = [" ".join(c) for c in t.columns]
    return out


def movement_table(results: list[dict]) -> pd.DataFrame | None:
    """Rows: (method, scenario, phases); columns: phase 1..T; mean over seeds of RGAL's prototype movement."""
    recs = []
    for r in results:
        mv = r.get("extra", {}).get("prototype_movement_per_phase")
        c = r["cell"]
        for k, v in enumerate(mv or [], start=1):
            recs.append({"method": c["method"], "scenario": c["scenario"], "phases": c["phases"], "phase": k,
                         "movement": v})
    if not recs:
        return None
    df = pd.DataFrame.from_records(recs)
    return df.pivot_table(index=["method", "scenario", "phases"], columns="phase", values="movement").round(3)


def table_filter(keep):
    """A ``TABLES`` row filter as a function of a row's label (which may end in `` [k=v]`` when a sweep varies a
    parameter): None keeps every row, "rgal" the methods of ``rgal_pairs`` (resolved once)."""
    if keep != "rgal":
        return keep
    names = {name for pair in rgal_pairs() for name in pair}
    return lambda label: label.split(" [")[0] in names


def rgal_pairs() -> tuple[tuple[str, str], ...]:
    """(with, without) of every method registered with an ``rgal_baseline``, in registration order: the comparisons
    the RGAL paper makes (Tables 14-17: RGAL on PASS and SSRE, the L'_g-only ablation) and the suite's own RGAL
    ablations (L'_s only, uniform negatives), each against the method without RGAL."""
    from benchmark.methods import METHODS
    from benchmark.registry import load_methods

    load_methods()
    return tuple((e.name, e.extra["rgal_baseline"]) for e in METHODS.entries() if e.extra.get("rgal_baseline"))


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def paired_gain_table(df: pd.DataFrame, pairs=None) -> pd.DataFrame | None:
    """The effect of adding RGAL as the paper states it (with minus without), paired by seed: both runs of a seed share
    the phase-0 model and the class order, so the per-seed difference removes their variance.  Per comparison,
    protocol and metric: mean ± std of the differences over the seeds both rows have, the published difference, and in
    how many seeds the measured difference has the published sign (what a cpu recipe reproduces of the paper's claim;
    a lower ``forgetting_max`` is better, so its published sign is negative)."""
    pub, recs = published(), []
    pairs = rgal_pairs() if pairs is None else pairs
    names = df.drop_duplicates("method").set_index("method")["published_name"].to_dict()
    keys = ["scenario", "dataset", "phases", "profile", "seed"]
    for with_, without in pairs:
        both = df[df["method"] == with_].merge(df[df["method"] == without], on=keys, suffixes=("", "_base"))
        for (scen, ds, ph, prof), g in both.groupby(keys[:-1]):
            for metric in METRICS:
                d = g[metric] - g[f"{metric}_base"]
                a = published_cil_value(pub, ds, ph, names.get(with_, ""), METRICS[metric][0])
                b = published_cil_value(pub, ds, ph, names.get(without, ""), METRICS[metric][0])
                gap = None if a is None or b is None else a - b
                recs.append({"comparison": f"{with_} - {without}", "protocol": f"{scen} {ph}ph [{prof}]",
                             "metric": metric, "measured": ("+" if d.mean() > 0 else "")
                             + _fmt(d.mean(), 0.0 if len(d) < 2 else d.std(), len(d)),
                             "published": "-" if gap is None else f"{gap:+.2f}",
                             "seeds with the published sign":
                                 "-" if gap is None else f"{int((d.apply(_sign) == _sign(gap)).sum())}/{len(d)}"
                                 + (" (one seed: no evidence either way)" if len(d) == 1 else "")})
    return pd.DataFrame.from_records(recs).set_index(["comparison", "protocol", "metric"]) if recs else None


def provenance_table(results: list[dict]) -> pd.DataFrame:
    """What made each result: the command, the code's commit, the wall time, the machine and torch's thread count
    (CONVENTIONS.md; float reductions, hence the numbers, depend on it)."""
    recs = []
    for r in results:
        v = r.get("versions", {})
        commit = (v.get("git_commit") or "?")[:10] + (" (+local changes)" if v.get("git_dirty") else "")
        recs.append({"cell": Path(r["_path"]).parent.name, "finished": r.get("finished", ""),
                     "wall_min": round(r.get("timings", {}).get("wall_seconds", float("nan")) / 60, 1),
                     "commit": commit, "machine": v.get("machine") or v.get("platform", ""),
                     "device": r.get("device", ""), "threads": v.get("torch_threads", ""), "torch": v.get("torch", ""),
                     "command": r.get("command", "")})
    return pd.DataFrame.from_records(recs).sort_values("cell").reset_index(drop=True)


def write_provenance(results: list[dict], path: Path) -> Path:
    t = provenance_table(results)
    lines = ["# Provenance of every result in this folder", "",
             "Wall times were measured on the machine named; on a shared machine they are upper bounds.", "",
             t.to_markdown(index=False), ""]
    path.write_text("\n".join(lines))
    return path
