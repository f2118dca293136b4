"""Reports of the data-free distillation task, built only from ``result.json`` files (task ``dfkd``).

* ``dfkd_table1_rgal``: the RGAL paper's Table 1 layout -- rows (dataset, teacher, student), columns methods, the
  reference rows ``teacher`` and ``kd-real`` first -- with the measured accuracy (mean ± std over seeds, the profile
  in the row label) and, as separate rows, the published numbers of the same dataset (the ``cpu`` profile distils a
  smaller pair than the paper's, so the published pair is shown as its own row rather than pretending to be the same
  cell).
* ``dfkd_table1_arvi``: the activation-regularisation paper's Table 1 layout -- rows methods, columns datasets --
  measured beside published.
* ``dfkd_accuracy_curves.png``: student test accuracy against the epoch and against training wall time, one panel
  pair per scenario.
* ``dfkd_throughput.csv``: synthetic images/s and student images/s of every cell.
``top1`` is the accuracy after the last epoch; ``best_top1`` (selected on the test set, as DFAD's scripts report) and
``last5_top1`` (mean of the last 5 evaluated epochs: steadier than the last epoch alone, the criterion of the AR+VI
weight sweep) are in ``dfkd_results_long.csv`` only.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from benchmark.data import GEOMETRY
from benchmark.dfkd_methods import DFKD_METHODS
from benchmark.dfkd_profiles import dfkd_profile
from benchmark.errors import BenchError
from benchmark.reports import (DATASET_NAMES, _flat, _fmt, load_results, markdown, method_params, published, row_label,
                               varying_params)
from benchmark.summary import profile_notes


def load_dfkd_results(folders: Path | list[Path]) -> list[dict]:
    return load_results(folders, "dfkd")


def dfkd_frame(results: list[dict]) -> pd.DataFrame:
    recs, varying = [], varying_params(results)
    for r in results:
        c, t = r["cell"], r.get("timings") or {}
        pub = _published_name(c)
        for row, m in r["rows"].items():
            recs.append({"scenario": c["scenario"], "dataset": DATASET_NAMES.get(c["scenario"], c["scenario"]),
                         "teacher": c["teacher"], "student": c["student"] if row != "teacher" else c["teacher"],
                         # the pair the cell distils, the teacher's own row included (the AR+VI table's column)
                         "pair": f"{c['teacher']}->{c['student']}",
                         "method": row_label(r, row, varying),
                         "published_name": pub if row == c["method"] else "", "seed": c["seed"],
                         "profile": c["profile"], "top1": 100 * m["top1"], "best_top1": 100 * m["best_top1"],
                         "last5_top1": _last_mean(m.get("curve"), 5),
                         "teacher_top1": 100 * r["teacher"]["test_accuracy"],
                         "wall_seconds": t.get("wall_seconds"),
                         "synthesis_images_per_s": t.get("synthesis_images_per_s"),
                         "student_images_per_s": t.get("student_images_per_s")})
    return pd.DataFrame.from_records(recs)


def chance_top1(scenario: str) -> float:
    """Top-1 (%) of guessing uniformly among the scenario's classes."""
    return 100.0 / GEOMETRY[scenario][2] if scenario in GEOMETRY else float("nan")


def dfkd_summary_table(results: list[dict]) -> str:
    """The end-of-run table of a distillation run: per scenario, teacher -> student pair and method, the mean over
    seeds of the student's final and best test accuracy beside its teacher's and the chance level, and the minutes."""
    if not results:
        return "(no results)"
    df = dfkd_frame(results)
    df["minutes"] = df["wall_seconds"] / 60
    df["chance"] = [chance_top1(s) for s in df["scenario"]]
    g = df.groupby(["scenario", "pair", "method"])
    out = g[["top1", "best_top1", "teacher_top1", "chance", "minutes"]].mean().round(2)
    out["seeds"] = g["seed"].nunique()
    out = out.rename(columns={"top1": "student acc % \u2191", "best_top1": "best acc % \u2191",
                              "teacher_top1": "teacher acc %", "chance": "chance %"}).reset_index()
    return "\n".join([out.to_string(index=False, na_rep="-"), textwrap.fill(
        "\u2191 higher is better; student acc = top-1 on the real test set after the last epoch, best = the highest of "
        "its evaluations, teacher acc = the teacher's own (the ceiling)", 118)])


def _published_name(cell: dict) -> str:
    """The published row a cell stands beside: its method's, unless the cell changed the method's hyper-parameters
    from the profile's (a ``--set`` ablation such as DFAD + VI with AR off is not the published method; the student
    batch is a recipe matter, ``--batch-size``, and does not count)."""
    if cell["method"] not in DFKD_METHODS:
        return ""
    entry = DFKD_METHODS.entry(cell["method"])
    try:
        defaults = dfkd_profile(cell["profile"], cell["scenario"]).params_for(cell["method"], entry.extra["defaults"])
    except BenchError:  # a profile this version does not know: nothing to compare with
        return entry.extra["published"]
    params = method_params({"cell": cell})
    # a parameter the cell does not record is at its default: a key-neutral one added after the cell was made
    # (``benchmark.methods.cell_params`` leaves those out of a cell's configuration while they are at their default)
    changed = [k for k in params if k != "student_batch" and params[k] != defaults.get(k)]
    return "" if changed else entry.extra["published"]


def _last_mean(curve: list[dict] | None, n: int) -> float:
    """Mean top-1 (%) of the last ``n`` evaluations of a student's accuracy curve (NaN without a curve)."""
    tail = [e["top1"] for e in (curve or [])][-n:]
    return 100 * sum(tail) / len(tail) if tail else float("nan")


def _agg(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.groupby(keys)["top1"].agg(["mean", "std", "count"]).reset_index()


def table1_rgal(df: pd.DataFrame) -> pd.DataFrame:
    pub = published()
    pub = pub[(pub["source"].str.startswith("RGAL")) & (pub["table"].astype(str) == "1")]
    rows: dict[tuple, dict] = {}
    # a teacher row sits in the row of the pair its cell distils (its frame ``student`` is the teacher itself), so
    # the reference columns teacher and kd-real stand beside the methods, first
    pairs = df.assign(student=df["pair"].str.split("->").str[1])
    for _, a in _agg(pairs, ["dataset", "teacher", "student", "profile", "method"]).iterrows():
        rows.setdefault((a["dataset"], a["teacher"], a["student"], f"measured [{a['profile']}]"), {})[a["method"]] = \
            _fmt(a["mean"], 0.0 if pd.isna(a["std"]) else a["std"], int(a["count"]))
    names = df.drop_duplicates("method").set_index("method")["published_name"].to_dict()
    for ds in sorted(df["dataset"].unique()):
        for _, p in pub[pub["dataset"] == ds].iterrows():
            ours = [m for m, n in names.items() if n == p["method"]] or [p["method"]]
            rows.setdefault((ds, p["teacher"], p["student"], "published (RGAL Table 1)"), {})[ours[0]] = \
                f"{p['value']:.2f}"
    out = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    out = out[[c for c in ("teacher", "kd-real") if c in out] + [c for c in out if c not in ("teacher", "kd-real")]]
    out.index = pd.MultiIndex.from_tuples(out.index, names=["dataset", "teacher", "student", "source"])
    return out.sort_index()


def table1_arvi(df: pd.DataFrame) -> pd.DataFrame:
    pub = published()
    pub = pub[pub["source"].str.startswith("DFAD+AR+VI")]
    names = df.drop_duplicates("method").set_index("method")["published_name"].to_dict()
    cols: dict[tuple, dict] = {}
    for _, a in _agg(df, ["dataset", "pair", "profile", "method"]).iterrows():
        col = f"{a['dataset']} {a['pair']} [{a['profile']}]"
        cols.setdefault((col, "measured"), {})[a["method"]] = _fmt(a["mean"], 0.0 if pd.isna(a["std"]) else a["std"],
                                                                   int(a["count"]))
        ds_pub = pub[pub["dataset"] == a["dataset"]]
        p = ds_pub[ds_pub["method"] == names.get(a["method"], "")]
        # the paper's pair may differ from the measured one (cpu pairs): the published column names its own pair
        theirs = f"{ds_pub['teacher'].iloc[0]}->{ds_pub['student'].iloc[0]}" if len(ds_pub) else a["pair"]
        pair = f" ({theirs})" if theirs != a["pair"] else ""
        cols.setdefault((col, "published" + pair), {})[a["method"]] = f"{p['value'].iloc[0]:.2f}" if len(p) else "-"
    out = pd.DataFrame(cols)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out.sort_index(axis=1, level=0, sort_remaining=False).fillna("")


def plot_curves(results: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    recs, varying = [], varying_params(results)
    for r in results:
        c = r["cell"]
        for row, m in r["rows"].items():
            for pt in m.get("curve", []):
                recs.append({"scenario": f"{c['scenario']} {c['teacher']}->{c['student']}",
                             "method": row_label(r, row, varying),
                             "seed": c["seed"], "epoch": pt["epoch"], "minutes": pt["train_seconds"] / 60,
                             "top1 (%)": 100 * pt["top1"]})
    df = pd.DataFrame.from_records(recs)
    panels = sorted(df["scenario"].unique()) if len(df) else []
    teacher, chance = {}, {}
    for r in results:
        c = r["cell"]
        panel = f"{c['scenario']} {c['teacher']}->{c['student']}"
        teacher.setdefault(panel, []).append(100 * r["teacher"]["test_accuracy"])
        chance[panel] = chance_top1(c["scenario"])
    teacher = {k: sum(v) / len(v) for k, v in teacher.items()}
    fig, axes = plt.subplots(max(1, len(panels)), 2, figsize=(15, 4 * max(1, len(panels))), squeeze=False)
    for row_axes, panel in zip(axes, panels):
        sub = df[df["scenario"] == panel]
        sns.lineplot(data=sub, x="epoch", y="top1 (%)", hue="method", errorbar="sd", ax=row_axes[0])
        sns.lineplot(data=sub, x="minutes", y="top1 (%)", hue="method", units="seed", estimator=None,
                     ax=row_axes[1], legend=False)
        row_axes[0].set_title(f"{panel}: accuracy per epoch")
        row_axes[1].set_title(f"{panel}: accuracy vs training wall time")
        row_axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        row_axes[1].set_xlabel("training wall time (min)")
        for ax in row_axes:  # the ceiling and the floor of every curve
            ax.axhline(teacher[panel], color="black", linestyle="--", linewidth=1, label="teacher")
            ax.axhline(chance[panel], color="grey", linestyle=":", linewidth=1, label="chance")
            ax.set_ylabel("student top-1 on the real test set (%)")
            ax.grid(alpha=0.3)
        if row_axes[0].get_legend():  # beside the panels, not over the curves
            handles, labels = row_axes[0].get_legend_handles_labels()
            row_axes[0].get_legend().remove()
            row_axes[1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                               fontsize=8, title="method")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def diversity_table(results: list[dict]) -> pd.DataFrame | None:
    """Rows (scenario, method); columns (space, figure): mean over seeds of Eq. 13-15, with the real test images'
    figures as the row ``real data``."""
    recs, varying = [], varying_params(results)
    for r in results:
        a = r.get("extra", {}).get("analysis")
        if not a:
            continue
        c = r["cell"]
        for who, row in (("synthetic", row_label(r, next(iter(r["rows"])), varying)), ("real", "real test data")):
            for space in ("images", "embeddings"):
                for fig in ("global_diversity", "intra_class_diversity", "inter_class_distance"):
                    recs.append({"scenario": c["scenario"], "method": row, "space": space, "figure": fig,
                                 "value": a[who][space][fig]})
    if not recs:
        return None
    df = pd.DataFrame.from_records(recs).dropna()
    return df.pivot_table(index=["scenario", "method"], columns=["space", "figure"], values="value").round(4)


def plot_tsne(results: list[dict], path: Path) -> Path | None:
    """Figure 9: real test embeddings (small, by class) with the synthetic ones overlaid (large, black edge), one
    panel per (scenario, method), from the first seed that has an analysis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {}
    for r in sorted(results, key=lambda r: r["cell"]["seed"]):
        a = r.get("extra", {}).get("analysis")
        key = (r["cell"]["scenario"], next(iter(r["rows"])))
        if a and key not in panels:
            panels[key] = a["tsne"]
    if not panels:
        return None
    n = len(panels)
    cols = min(4, n)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(4 * cols, 4 * -(-n // cols)), squeeze=False)
    for ax, ((scen, method), t) in zip(axes.flat, sorted(panels.items())):
        real, syn = t["real"], t["synthetic"]
        top = max([*t["real_labels"], *t["synthetic_labels"], 9])  # one colour per class, CIFAR-100 included
        colour = {"cmap": "tab10" if top < 10 else "turbo", "vmin": 0, "vmax": top}
        ax.scatter([p[0] for p in real], [p[1] for p in real], c=t["real_labels"], s=6, alpha=0.5, **colour)
        ax.scatter([p[0] for p in syn], [p[1] for p in syn], c=t["synthetic_labels"], s=28, edgecolors="black",
                   linewidths=0.6, **colour)
        ax.set_title(f"{method} ({scen})")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    # wrapped to the figure's width (one panel is 4 inches wide: one line would not fit a narrow figure)
    title = textwrap.fill("t-SNE of teacher embeddings: real test images (small dots) and synthetic ones (large, black "
                          "edge); colour = class", width=int(40 * cols))
    fig.suptitle(title, fontsize=10)
    lines, height = title.count("\n") + 1, 4 * -(-n // cols)  # inches: a 10-point line is ~0.2 in
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.2 * lines + 0.1) / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_dfkd_reports(results: list[dict], rep: Path) -> list[Path]:
    """The data-free tables and plots of ``results`` (from ``load_dfkd_results``) into ``rep``."""
    if not results:
        return []
    df = dfkd_frame(results)
    paths = [rep / "dfkd_results_long.csv", rep / "dfkd_throughput.csv"]
    df.to_csv(paths[0], index=False)
    df[["scenario", "method", "seed", "profile", "wall_seconds", "synthesis_images_per_s",
        "student_images_per_s"]].to_csv(paths[1], index=False)
    t1, t2 = table1_rgal(df), table1_arvi(df)
    md = ["# Data-free knowledge distillation", "",
          "## Student top-1 (%), RGAL Table 1 layout (mean ± std over seeds; last epoch)", "", markdown(t1), "",
          "## Top-1 (%), activation-regularisation paper Table 1 layout", "", markdown(_flat(t2)), "",
          "## Notes", ""]
    notes = profile_notes(results, lambda c: f"profile {c['profile']} ({c['scenario']})")
    for r in results:
        c = r["cell"]
        notes.add(f"teacher {c['teacher']} on {c['scenario']}: {100 * r['teacher']['test_accuracy']:.2f}% "
                  f"({r['teacher'].get('source', '')})")
        if c["scenario"] == "cifar100":
            notes.add("CIFAR-100 from ../shared/data uses a stand-in train/test split: not comparable to published")
    notes.add("top1 is the student after the last epoch; DFAD's scripts report the best epoch on the test set "
              "(best_top1 in dfkd_results_long.csv), which is selected on test data")
    md += [f"- {n}" for n in sorted(notes)]
    for stem, t in (("dfkd_table1_rgal", t1), ("dfkd_table1_arvi", t2)):
        t.to_csv(rep / f"{stem}.csv")
        (rep / f"{stem}.tex").write_text(t.to_latex(escape=True))
        paths += [rep / f"{stem}.csv", rep / f"{stem}.tex"]
    div = diversity_table(results)
    if div is not None:
        div.to_csv(rep / "dfkd_diversity.csv")
        paths.append(rep / "dfkd_diversity.csv")
        md += ["", "## Diversity of the synthetic data (RGAL Eq. 13-15; mean absolute L1 distance, mean over seeds)",
               "", "Higher intra-class diversity and lower inter-class distance (more confusion) is what RGAL aims "
               "for; `real test data` gives the same figures on as many real test images.", "",
               markdown(_flat(div))]
    (rep / "dfkd_tables.md").write_text("\n".join(md) + "\n")
    paths.append(rep / "dfkd_tables.md")
    tsne = plot_tsne(results, rep / "dfkd_tsne.png")
    if tsne:
        paths.append(tsne)
    paths.append(plot_curves(results, rep / "dfkd_accuracy_curves.png"))
    return paths

