"""Reports of the data-free quantization task (task ``dfq``), built only from ``result.json`` files.

* ``dfq_table12``: the RGAL paper's Table 12 layout (Table 13's for ImageNet) -- rows bit-width x method (each
  method beside its ``+rgal`` variants), the measured top-1 (last epoch; mean ± std over seeds, the profile named)
  beside the published number, the best epoch's top-1 (what the official logs report; selected on the test set), and
  the quantized teacher before any fine-tuning (``calibrated``); reference rows: the full-precision teacher and the
  8-bit bound (the teacher quantized to W8A8, ranges calibrated on each cell's warm-up images, no fine-tuning; the
  mean over every cell).
* ``dfq_rgal_gain``: RGAL's effect paired by seed (``+rgal`` minus its method, same bit-width and seed), mean ± std,
  beside the published difference.
* ``dfq_throughput.csv``: synthetic images/s (generator or pixel-optimisation images) and student images/s.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from benchmark.dfq_methods import DFQ_METHODS
from benchmark.dfq_profiles import dfq_profile
from benchmark.errors import BenchError
from benchmark.reports import DATASET_NAMES, _fmt, load_results, method_params, published

TEACHER_ROW, BOUND_ROW = "teacher (float)", "8-bit bound (W8A8, no fine-tuning)"


def load_dfq_results(folders) -> list[dict]:
    return load_results(folders, "dfq")


def _bits(cell: dict) -> str:
    b = cell.get("bits")
    return f"W{b['weights']}A{b['activations']}" if b else "float"


def published_name(cell: dict) -> str:
    """The published row a cell stands beside: its method's, unless the cell changed the method's parameters from
    the profile's (a ``--set`` ablation is not the published method)."""
    if cell["method"] not in DFQ_METHODS:
        return ""
    entry = DFQ_METHODS.entry(cell["method"])
    try:
        defaults = dfq_profile(cell["profile"], cell["scenario"]).params_for(cell["method"], entry.extra["family"],
                                                                              entry.extra["defaults"])
    except BenchError:
        return entry.extra["published"]
    params = method_params({"cell": cell})
    return "" if any(params[k] != defaults.get(k) for k in params) else entry.extra["published"]


def dfq_frame(results: list[dict]) -> pd.DataFrame:
    recs = []
    for r in results:
        c, t, x = r["cell"], r.get("timings") or {}, r.get("extra") or {}
        for row, m in r["rows"].items():
            recs.append({"scenario": c["scenario"], "dataset": DATASET_NAMES.get(c["scenario"], c["scenario"]),
                         "teacher": c["teacher"],
                         "teacher_id": c.get("teacher_key") or c.get("teacher_checkpoint_sha256"),
                         "bits": _bits(c), "method": row, "cell_method": c["method"],
                         "published_name": published_name(c), "seed": c["seed"], "profile": c["profile"],
                         "top1": 100 * m["top1"], "best_top1": 100 * m["best_top1"],
                         "calibrated_top1": 100 * x["calibrated_top1"] if x.get("calibrated_top1") is not None
                         else None,
                         "w8a8_top1": 100 * x["w8a8_top1"] if x.get("w8a8_top1") is not None else None,
                         "teacher_top1": 100 * r["teacher"]["test_accuracy"],
                         "wall_seconds": t.get("wall_seconds"),
                         "synthesis_images_per_s": _synthesis_rate(r),
                         "student_images_per_s": t.get("student_images_per_s")})
    return pd.DataFrame.from_records(recs)


def _synthesis_rate(r: dict) -> float | None:
    """Generator images/s (GDFQ), or IntraQ's pixel-optimisation rate: images x steps / seconds of its synthesis."""
    t, x = r.get("timings") or {}, r.get("extra") or {}
    s = x.get("synthesis") or {}
    if s.get("seconds") and s.get("images"):
        p = r["cell"]["method_params"]
        steps = p.get("synth_steps") or DFQ_METHODS.entry(r["cell"]["method"]).extra["defaults"]["synth_steps"]
        return s["images"] * steps / s["seconds"]
    return t.get("synthesis_images_per_s")


def dfq_summary_table(results: list[dict]) -> str:
    """The end-of-run table: per scenario, bit-width and method, the mean over seeds of the quantized student's last
    and best test accuracy, before fine-tuning, the 8-bit bound and the teacher, and the minutes."""
    if not results:
        return "(no results)"
    df = dfq_frame(results)
    df["minutes"] = df["wall_seconds"] / 60
    g = df.groupby(["scenario", "bits", "method"])
    out = g[["top1", "best_top1", "calibrated_top1", "w8a8_top1", "teacher_top1", "minutes"]].mean().round(2)
    out["seeds"] = g["seed"].nunique()
    out = out.rename(columns={"top1": "student acc % \u2191", "best_top1": "best acc % \u2191",
                              "calibrated_top1": "before fine-tuning %", "w8a8_top1": "W8A8 %",
                              "teacher_top1": "teacher acc %"}).reset_index()
    return "\n".join([out.to_string(index=False, na_rep="-"), textwrap.fill(
        "\u2191 higher is better; student acc = top-1 of the quantized student on the real test set after the last "
        "epoch, best = the highest of its evaluations (the official logs' number), before fine-tuning = the "
        "quantized teacher with calibrated ranges, W8A8 = the 8-bit bound, teacher = full precision", 118)])


# Table 13 names the full RGAL variant by its two parts (IntraQ + L'_g + L'_s); Table 12 calls it IntraQ+RGAL
TABLE13_NAMES = {"IntraQ+RGAL": "IntraQ+L'_g+L'_s"}


def _published_dfq(dataset: str) -> pd.DataFrame:
    """The RGAL paper's quantization rows of ``dataset`` (Table 12: CIFAR-100; Table 13: ImageNet)."""
    pub = published()
    return pub[(pub["source"].str.startswith("RGAL")) & (pub["task"] == "dfq") & (pub["dataset"] == dataset)]


def _published_value(pub: pd.DataFrame, bits: str, name: str) -> float | None:
    for n in (name, TABLE13_NAMES.get(name)):
        hit = pub[(pub["student"].str.endswith(bits)) & (pub["method"] == n)]
        if len(hit):
            return float(hit["value"].iloc[0])
    return None


def _order(methods) -> list[str]:
    """Each method followed by its ``+rgal`` variant, in registry order."""
    names = [m for m in DFQ_METHODS.names() if m in set(methods)]
    return names + sorted(set(methods) - set(names))


def table12(df: pd.DataFrame) -> pd.DataFrame:
    """Rows (dataset, bits, method), columns measured / published / best epoch / before fine-tuning (the layout of
    Table 12, and of Table 13 for ImageNet)."""
    rows = []
    students = df[df["bits"] != "float"]
    for (ds, prof), d in df.groupby(["dataset", "profile"]):
        pub = _published_dfq(ds)
        rows.append({"dataset": ds, "bits": "float", "method": TEACHER_ROW,
                     **_cells(d.drop_duplicates("teacher_id")["teacher_top1"]), "profile": prof})  # each teacher once
        s = students[(students["dataset"] == ds) & (students["profile"] == prof)]
        if len(s):
            # every cell calibrates its 8-bit copy on its own warm-up images (the method's): all cells count
            rows.append({"dataset": ds, "bits": "W8A8", "method": BOUND_ROW,
                         **_cells(s["w8a8_top1"].dropna()), "profile": prof})
        for bits in sorted(s["bits"].unique(), reverse=True):
            sb = s[s["bits"] == bits]
            for m in _order(sb["method"].unique()):
                sm = sb[sb["method"] == m]
                name = sm["published_name"].iloc[0]
                rows.append({"dataset": ds, "bits": bits, "method": m, **_cells(sm["top1"]),
                             "published": _published_value(pub, bits, name) if name else None,
                             "best epoch": _fmt_series(sm["best_top1"]),
                             "before fine-tuning": _fmt_series(sm["calibrated_top1"].dropna()),
                             "collapsed": int(collapsed(sm).sum()), "profile": prof})
    out = pd.DataFrame(rows).set_index(["dataset", "bits", "method"])
    if "collapsed" in out.columns:  # counts; the reference rows have none
        out["collapsed"] = pd.Series([None if pd.isna(v) else int(v) for v in out["collapsed"]], index=out.index,
                                     dtype=object)
    cols = ["measured", "published", "best epoch", "before fine-tuning", "collapsed", "seeds", "profile"]
    return out[[c for c in cols if c in out.columns]]


def collapsed(d: pd.DataFrame) -> pd.Series:
    """Cells whose student ended below half its best evaluation: a run that diverged.  Their last accuracy stays in
    the mean (the table reports what the recipe gives); the count says that the mean hides a collapse."""
    return d["top1"] < 0.5 * d["best_top1"]


def _cells(values: pd.Series) -> dict:
    return {"measured": _fmt_series(values), "seeds": int(values.count())}


def _fmt_series(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "-"
    return _fmt(v.mean(), v.std() if len(v) > 1 else 0.0, len(v))


def rgal_gain_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """``+rgal`` minus its method, paired by (bits, seed): mean ± std of the per-seed differences (points)."""
    rows = []
    for m in df["method"].unique():
        base = DFQ_METHODS.entry(m).extra.get("rgal_baseline") if m in DFQ_METHODS else None
        if not base:
            continue
        for (ds, prof, bits), d in df.groupby(["dataset", "profile", "bits"]):
            a = d[d["method"] == m].set_index("seed")["top1"]
            b = d[d["method"] == base].set_index("seed")["top1"]
            diff = (a - b).dropna()
            if diff.empty:
                continue
            names = (d[d["method"] == m]["published_name"].iloc[0], d[d["method"] == base]["published_name"].iloc[0])
            pa, pb = (_published_value(_published_dfq(ds), bits, n) if n else None for n in names)
            rows.append({"dataset": ds, "bits": bits, "method": m, "gain (points)": _fmt_series(diff),
                         "seeds": len(diff), "published gain": round(pa - pb, 2) if None not in (pa, pb) else None,
                         "profile": prof})
    return pd.DataFrame(rows).set_index(["dataset", "bits", "method"]) if rows else None


def write_dfq_reports(results: list[dict], rep: Path) -> list[Path]:
    """``dfq_tables.md`` (Table 12 and the paired gains), their CSVs, ``dfq_results_long.csv`` and
    ``dfq_throughput.csv`` into ``rep``."""
    if not results:
        return []
    df = dfq_frame(results)
    paths = [rep / "dfq_results_long.csv", rep / "dfq_table12.csv", rep / "dfq_throughput.csv"]
    df.to_csv(paths[0], index=False)
    t12 = table12(df)
    t12.to_csv(paths[1])
    cols = ["scenario", "bits", "method", "seed", "profile", "synthesis_images_per_s", "student_images_per_s",
            "wall_seconds"]
    df[df["bits"] != "float"][cols].to_csv(paths[2], index=False)
    md = ["# Data-free quantization", "",
          "## Table 12 / 13 layout: top-1 (%) of the quantized student on the real test set", "",
          "measured = after the last epoch, mean ± std over seeds (n); published = RGAL paper Table 12 (CIFAR-100) or "
          "13 (ImageNet) (the official logs' best epoch); best epoch = the highest evaluation of each cell (a test-set "
          "selection, as published); before fine-tuning = the quantized teacher with calibrated ranges; collapsed = "
          "cells whose last evaluation is below half their best (a diverged student, counted in the mean; a run "
          "stopped by a non-finite loss has no result and is not in the table).", "",
          t12.fillna("-").to_markdown(), ""]
    gains = rgal_gain_table(df)
    if gains is not None:
        gains.to_csv(rep / "dfq_rgal_gain.csv")
        paths.append(rep / "dfq_rgal_gain.csv")
        md += ["## RGAL's effect, paired by seed (with minus without, points of top-1)", "",
               gains.fillna("-").to_markdown(), ""]
    (rep / "dfq_tables.md").write_text("\n".join(md))
    return [rep / "dfq_tables.md"] + paths
