"""The report command's writer: every table and plot of the results below one or more folders, every task, built
from ``result.json`` files alone.  ``write_reports(DIR)`` rebuilds everything from a folder, so folders from many
machines merge by copying; ``write_reports([DIR, ...], out)`` puts several sweeps' rows in one report (a cell found in
two folders, same key, counts once).  ``index.html`` (``benchmark.report_html``) puts every table and plot on one
self-contained page.  A report folder lists the files it wrote (``.report-files``), so a rebuilt
report drops the files of cells that are gone and never touches a user's own files.
"""
from __future__ import annotations

import sys
from pathlib import Path

from benchmark.dfkd_reports import load_dfkd_results, write_dfkd_reports
from benchmark.dfq_reports import load_dfq_results, write_dfq_reports
from benchmark.errors import BenchError
from benchmark.report_html import write_index
from benchmark.cil_plots import plot_heatmaps, plot_seen_accuracy
from benchmark.reports import (TABLES, _flat, load_results, long_frame, markdown, metric_table, movement_table,
                               paired_gain_table, table_filter, unreadable_results, write_provenance)
from benchmark.summary import _notes
from benchmark.store import check_writable


def _as_list(folders) -> list[Path]:
    return [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]


def collect_results(folders: Path | list[Path]) -> tuple[list[dict], list[dict], list[dict]]:
    """(class-incremental, distillation, quantization) results below ``folders``; one line per unreadable
    ``result.json`` on stderr, a ``BenchError`` when there is none to report."""
    folders = _as_list(folders)
    for f in folders:
        if not f.is_dir():
            raise BenchError(f"no result folder {f}; give a folder made by run_benchmark.py --out")
    results, dfkd, dfq = load_results(folders), load_dfkd_results(folders), load_dfq_results(folders)
    bad = unreadable_results(folders)
    if not results and not dfkd and not dfq:
        names = " ".join(map(str, folders))
        if bad:
            raise BenchError(f"{len(bad)} result.json under {names}, none readable ({bad[0]}); delete them and run "
                             "their cells again")
        raise BenchError(f"no result.json under {names}; run cells first (python run_benchmark.py --out {folders[0]})")
    for line in bad:  # reported, not silently left out of the tables
        print(f"warning: skipped {line}; delete it and run its cell again", file=sys.stderr)
    return results, dfkd, dfq


def write_reports(folders: Path | list[Path], out: Path | None = None,
                  collected: tuple[list[dict], list[dict], list[dict]] | None = None) -> list[Path]:
    """Tables and plots of the results below ``folders`` into ``out`` (default: ``<folder>/report`` of a single
    folder; required for several); ``collected``: what ``collect_results(folders)`` returned, if the caller has it."""
    folders = _as_list(folders)
    if out is None and len(folders) != 1:
        raise BenchError("several result folders need --out REPORT_DIR for the merged report")
    results, dfkd, dfq = collected or collect_results(folders)
    rep = Path(out) if out is not None else folders[0] / "report"
    check_writable(rep)
    paths = _write_all(results, dfkd, dfq, rep)
    prune_stale(rep, paths)
    return paths


MANIFEST = ".report-files"


def prune_stale(rep: Path, paths: list[Path]) -> None:
    """Deletes the files that the previous report into ``rep`` wrote and this one did not (the heatmap of a cell
    that is now skipped or gone would otherwise stay beside the new tables), then records this report's files.
    Only files listed by an earlier report are ever deleted: a user's own files in ``--out`` stay."""
    manifest = rep / MANIFEST
    now = {Path(p).name for p in paths}
    old = manifest.read_text().split("\n") if manifest.is_file() else []
    for name in old:
        if name and name not in now and "/" not in name and (rep / name).is_file():
            (rep / name).unlink()
    manifest.write_text("\n".join(sorted(now)) + "\n")


def _write_all(results: list[dict], dfkd: list[dict], dfq: list[dict], rep: Path) -> list[Path]:
    prov = write_provenance(results + dfkd + dfq, rep / "provenance.md")
    paths = [prov] + write_cil_reports(results, rep) + write_dfkd_reports(dfkd, rep) + write_dfq_reports(dfq, rep)
    return paths + [write_index(rep, paths, results + dfkd + dfq)]  # last: it inlines what the others wrote


def write_cil_reports(results: list[dict], rep: Path) -> list[Path]:
    """The class-incremental tables (CSV, LaTeX, ``tables.md``) and plots of ``results`` into ``rep``."""
    if not results:
        return []
    df = long_frame(results)
    paths = []
    df.to_csv(rep / "results_long.csv", index=False)
    paths.append(rep / "results_long.csv")
    md = ["# Class-incremental results", ""]
    for stem, metric, pub_metric, table, keep, title in TABLES:
        keep = table_filter(keep)
        sub = df if keep is None else df[df["method"].map(keep)]
        if sub.empty:
            continue
        t = metric_table(sub, metric, pub_metric, table)
        t.to_csv(rep / f"{stem}.csv")
        (rep / f"{stem}.tex").write_text(t.to_latex(escape=True))
        paths += [rep / f"{stem}.csv", rep / f"{stem}.tex"]
        md += [f"## {title} (%; RGAL Table {table} layout; mean ± std over seeds, published beside)", "",
               _flat(t).to_markdown(), ""]
    gains = paired_gain_table(df)
    if gains is not None:
        gains.to_csv(rep / "rgal_paired_gain.csv")
        paths.append(rep / "rgal_paired_gain.csv")
        md += ["## RGAL's effect, paired by seed (with minus without, percentage points; published beside)", "",
               gains.reset_index().to_markdown(index=False), ""]
    moves = movement_table(results)
    if moves is not None:
        moves.to_csv(rep / "prototype_movement.csv")
        paths.append(rep / "prototype_movement.csv")
        md += ["## RGAL L'_g: mean prototype movement ||p' - p|| / r per phase (mean over seeds)", "",
               markdown(moves), ""]
    md += ["## Notes", ""] + [f"- {n}" for n in _notes(results)]
    (rep / "tables.md").write_text("\n".join(md) + "\n")
    paths.append(rep / "tables.md")
    paths.append(plot_seen_accuracy(results, rep / "seen_accuracy.png"))
    paths += plot_heatmaps(results, rep)
    return paths
