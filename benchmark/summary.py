"""What a run prints at its end and every report's notes: the summary table (mean over seeds of each metric per
scenario, phases and method, with units, direction, seed count and chance level), the chance level of an
incremental protocol, and the notes (each profile's gap to the paper, the data's caveats, each method's memory).
"""
from __future__ import annotations

import textwrap

import numpy as np

from benchmark.reports import long_frame


# the terminal summary's columns: long_frame column -> header (unit and which way is better)
SUMMARY_COLUMNS = {"average_accuracy": "avg acc % \u2191", "overall_accuracy": "final acc % \u2191",
                   "forgetting_max": "forgetting % \u2193", "new_accuracy": "new-class acc % \u2191",
                   "chance": "chance avg acc %"}
DEMO_PROFILES = ("mini", "smoke")


def chance_average_accuracy(phase_sizes: list[int]) -> float:
    """Average incremental accuracy (%) of guessing uniformly among the classes seen so far."""
    seen = np.cumsum(phase_sizes)
    return float(np.mean(100.0 / seen))


def summary_table(results: list[dict]) -> str:
    """The end-of-run table: the mean over seeds of each metric per scenario, phases and method, with units, which
    way is better, the seed count and the chance level, then one line of definitions (and a warning when a demo
    profile's numbers could be read as results)."""
    if not results:
        return "(no results)"
    df = long_frame(results)
    chance = {(r["cell"]["scenario"], r["cell"]["phases"]): chance_average_accuracy(r["cell"]["phase_sizes"])
              for r in results}
    df["chance"] = [chance[(s, p)] for s, p in zip(df["scenario"], df["phases"])]
    g = df.groupby(["scenario", "phases", "method"])
    out = g[list(SUMMARY_COLUMNS)].mean().round(2)
    out["seeds"] = g["seed"].nunique()
    out = out.rename(columns=SUMMARY_COLUMNS).reset_index()
    lines = [out.to_string(index=False, na_rep="-"),
             "\u2191 higher is better, \u2193 lower is better; accuracies are % of the test images of the classes seen "
             "so far: avg = mean over phases, final = after the last phase; forgetting = mean drop of each old group "
             "from its best accuracy; chance = the avg of uniform guessing"]
    demo = sorted({r["cell"]["profile"] for r in results} & set(DEMO_PROFILES))
    if demo:
        lines.append(f"profile {' and '.join(demo)}: a pipeline demo (1-3 epochs on a few images per class), so "
                     f"numbers sit near chance and are not comparable with published ones; --profile cpu or paper "
                     f"measures")
    return "\n".join(lines[:1] + [textwrap.fill(line, 118) for line in lines[1:]])


def profile_notes(results: list[dict], label=lambda c: f"profile {c['profile']}") -> set[str]:
    """One note per profile (``label`` of the cell): the gap-to-paper text of its most recently finished cell.  A
    profile's text grows as methods are added or retuned while a sweep runs over sessions; cells that finished earlier
    under the same key ran the same recipe (the recipe is part of the key and of each cell.json), so the newest text
    describes them."""
    newest: dict[str, tuple[str, str]] = {}
    texts: dict[str, set[str]] = {}
    for r in results:
        prof, text = label(r["cell"]), r.get("profile_gap_to_paper", "")
        texts.setdefault(prof, set()).add(text)
        if prof not in newest or r.get("finished", "") >= newest[prof][0]:
            newest[prof] = (r.get("finished", ""), text)
    out = set()
    for prof, (_, text) in newest.items():
        older = len(texts[prof]) - 1
        more = (f" (the newest of {older + 1} texts these cells recorded; each cell's recipe is in its cell.json)"
                if older else "")
        out.add(f"{prof}: {text}{more}")
    return out


def _notes(results: list[dict]) -> list[str]:
    notes = profile_notes(results)
    for r in results:
        c = r["cell"]
        if c["scenario"] == "cifar100":
            notes.add("CIFAR-100 from ../shared/data uses a stand-in train/test split (not the official one): "
                      "numbers are not directly comparable to the published ones")
        if c["scenario"] == "cifar100-mini":
            notes.add("cifar100-mini: 20 training images per class, a demo; published numbers are full CIFAR-100")
        for n in r.get("notes", []):
            notes.add(n)
        notes.add(f"memory of {c['method']}: {r.get('memory', 'none')}")
    return sorted(notes)
