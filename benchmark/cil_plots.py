"""The class-incremental report's figures, from ``result.json`` files only: accuracy on the seen classes against the
number of classes seen (RGAL Figures 10 / 11), with what the paper publishes of each curve beside it (its final
accuracy, Table 16, and its mean, Tables 14 / 17), and a heatmap of each row's mean accuracy matrix.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmark.reports import long_frame, published, published_cil_value, row_label, varying_params


def seen_accuracy_frame(results: list[dict]) -> pd.DataFrame:
    """The points of the seen-accuracy plot (RGAL Figures 10-11): one per (protocol, row, seed, phase), x = number
    of classes seen after the phase, y = ``seen_acc`` in %."""
    recs, varying = [], varying_params(results)
    for r in results:
        c, sizes = r["cell"], r["cell"]["phase_sizes"]
        for row, m in r["rows"].items():
            for k, s in enumerate(m["seen_acc"]):
                recs.append({"panel": f"{c['scenario']} {c['phases']} phases", "scenario": c["scenario"],
                             "phases": c["phases"], "classes": sum(sizes[: k + 1]),
                             "accuracy (%)": s * 100, "method": row_label(r, row, varying),
                             "seed": c["seed"]})
    return pd.DataFrame.from_records(recs)


def mean_accuracy_matrices(results: list[dict]) -> dict[tuple, tuple]:
    """(scenario, phases, row) -> (mean over seeds of ``acc`` in %, NaN where j > k; number of seeds)."""
    import numpy as np

    groups: dict[tuple, list] = {}
    for r in results:
        c = r["cell"]
        for row, m in r["rows"].items():
            groups.setdefault((c["scenario"], c["phases"], row), []).append(m["acc"])
    return {key: (100 * np.mean([[[np.nan if v is None else v for v in rr] for rr in m] for m in mats], axis=0),
                  len(mats)) for key, mats in sorted(groups.items())}


def published_seen_points(results: list[dict]) -> pd.DataFrame:
    """What the paper publishes of each measured curve: RGAL's Figures 10-11 draw these curves, but their points are
    not printed, so a curve cannot be redrawn; its Tables give the final accuracy after the last phase (Table 16,
    ``overall_accuracy``) and the mean of the curve (Tables 14 / 17, ``average_accuracy``).  One row per (panel,
    method) that has either: ``final`` and ``average`` in %, NaN where the paper has no number."""
    df = long_frame(results)
    if df.empty:
        return pd.DataFrame(columns=["panel", "method", "classes", "final", "average"])
    pub, recs = published(), []
    last = {(r["cell"]["scenario"], r["cell"]["phases"]): sum(r["cell"]["phase_sizes"]) for r in results}
    for (scen, ph, method), g in df.groupby(["scenario", "phases", "method"]):
        name, ds = g["published_name"].iloc[0], g["dataset"].iloc[0]
        final = published_cil_value(pub, ds, ph, name, "overall_accuracy")
        avg = published_cil_value(pub, ds, ph, name, "average_accuracy")
        if final is not None or avg is not None:
            recs.append({"panel": f"{scen} {ph} phases", "method": method, "classes": last[(scen, ph)],
                         "final": float("nan") if final is None else final,
                         "average": float("nan") if avg is None else avg})
    return pd.DataFrame.from_records(recs, columns=["panel", "method", "classes", "final", "average"])


def _draw_published(ax, pub, colours: dict) -> None:
    """The paper's points of one panel in each method's colour: a star at the final accuracy, a dotted line at the
    average accuracy."""
    for _, p in pub.iterrows():
        col = colours.get(p["method"], "black")
        if not math.isnan(p["final"]):
            ax.plot([p["classes"]], [p["final"]], marker="*", markersize=13, color=col, markeredgecolor="black",
                    markeredgewidth=0.6, linestyle="none", zorder=5)
        if not math.isnan(p["average"]):
            ax.axhline(p["average"], color=col, linestyle=(0, (1, 2)), linewidth=1.1, alpha=0.8)


def _legend_beside(last, published: bool) -> None:
    """The last panel's legend moved beside the panels, with the published markers' entries when there are any."""
    from matplotlib.lines import Line2D

    if not last.get_legend():
        return
    handles, labels = last.get_legend_handles_labels()
    last.get_legend().remove()
    if published:
        handles += [Line2D([], [], marker="*", markersize=11, color="grey", markeredgecolor="black",
                           linestyle="none"),
                    Line2D([], [], color="grey", linestyle=(0, (1, 2)))]
        labels += ["published final accuracy", "published average accuracy"]
    last.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)


def plot_seen_accuracy(results: list[dict], path: Path) -> Path:
    """One panel per protocol (ordered by scenario, then number of phases as a number), every row a line with its
    own marker and dash pattern (so a line under another stays visible), the chance level dashed in grey, and the
    legend beside the panels instead of over the curves.  Beside each measured curve, in its colour, what the
    paper publishes of it (``published_seen_points``): a star at its final accuracy after the last phase and a thin
    dotted line at its average accuracy (the mean of the curve, to compare with the mean of the measured one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = seen_accuracy_frame(results)
    pub = published_seen_points(results)
    panels = list(df.sort_values(["scenario", "phases"])["panel"].drop_duplicates())
    methods = sorted(df["method"].unique())
    colours = dict(zip(methods, sns.color_palette(n_colors=len(methods))))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 2.8, 4.2), squeeze=False)
    for i, (ax, panel) in enumerate(zip(axes[0], panels)):
        sub = df[df["panel"] == panel]
        sns.lineplot(data=sub, x="classes", y="accuracy (%)", hue="method", style="method", markers=True,
                     dashes=True, errorbar="sd", ax=ax, legend=i == len(panels) - 1, alpha=0.85, palette=colours,
                     hue_order=methods, style_order=methods)
        seen = sorted(sub["classes"].unique())
        ax.plot(seen, [100.0 / c for c in seen], color="grey", linestyle=":", linewidth=1, label="chance")
        _draw_published(ax, pub[pub["panel"] == panel], colours)
        ax.set_title(panel)
        ax.set_xlabel("classes seen (after each phase)")
        ax.set_ylabel("accuracy on the classes seen (%)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    _legend_beside(axes[0][-1], bool(len(pub)))
    if len(pub):
        fig.text(0.01, 0.005, "published: the paper's numbers (its setting: ResNet-18, full schedule), in each "
                 "method's colour; the paper's curves themselves (RGAL Figs. 10-11) are not printed as numbers",
                 fontsize=7.5, color="#444")
    fig.tight_layout(rect=(0, 0.03 if len(pub) else 0, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_heatmaps(results: list[dict], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    paths = []
    for (scen, ph, row), (a, n_seeds) in mean_accuracy_matrices(results).items():
        fig, ax = plt.subplots(figsize=(1 + 0.45 * a.shape[1], 1 + 0.4 * a.shape[0]))
        sns.heatmap(a, annot=a.shape[1] <= 11, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax,
                    cbar_kws={"label": "accuracy (%)"})
        ax.set_xlabel("class group j")
        ax.set_ylabel("after phase k")
        ax.set_title(f"{row}: {scen}, {ph} phases\n(mean of {n_seeds} seed{'' if n_seeds == 1 else 's'})",
                     fontsize=10)
        fig.tight_layout()
        p = folder / f"heatmap-{scen}-p{ph}-{row}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths
