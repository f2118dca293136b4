"""The committed evidence (``results/``) carries its provenance, and numbers that ``results/README.md`` quotes from
its cells match the files (quoted numbers had drifted from their files before this check)."""
import json
import re
import statistics
from pathlib import Path

import pytest

from benchmark.cells import stable_hash
from conftest import ROOT

RESULTS = sorted((ROOT / "results").glob("*/*/result.json"))
README = (ROOT / "results" / "README.md").read_text()
VERSIONS = ("python", "platform", "torch", "torchvision", "avalanche-lib", "numpy", "git_commit")
MAY_BE_UNKNOWN = ("torch_threads", "machine", "git_dirty")  # only with a provenance_gaps entry naming the field


def _load(p: Path) -> dict:
    return json.loads(p.read_text())


def test_there_is_committed_evidence():
    assert len(RESULTS) > 100


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_committed_result_carries_its_provenance_or_names_the_gap(path):
    r = _load(path)
    assert r["key"] == stable_hash(r["cell"]), "the key is the hash of the configuration the file records"
    assert path.parent.name.endswith(r["key"][:10]), "the folder is named by the key"
    assert "run_benchmark.py" in r["command"]
    v = r["versions"]
    assert all(v.get(k) for k in VERSIONS), [k for k in VERSIONS if not v.get(k)]
    gaps = " ".join(r.get("provenance_gaps", []))
    for k in MAY_BE_UNKNOWN:
        assert k in v, f"versions.{k} is absent: record it or write it as null with a provenance_gaps entry"
        if v[k] is None:
            assert k in gaps, f"versions.{k} is null and no provenance_gaps entry says why"
    if r["cell"].get("device_type") == "cpu":
        if "torch_threads" in r["cell"]:  # the key names the thread count the cell ran at
            assert r["cell"]["torch_threads"] == v["torch_threads"]
        else:
            assert "torch_threads" in gaps, "a CPU cell keyed without its thread count must say why"


def _rows(sweep: str) -> dict:
    out = {}
    for p in (ROOT / "results" / sweep).glob("*/result.json"):
        r = _load(p)
        for row, m in r["rows"].items():
            out[(row, r["cell"]["seed"])] = m
    return out


def _quoted(pattern: str) -> re.Match:
    m = re.search(pattern, README.replace("\n", " "))
    assert m, f"results/README.md no longer says {pattern!r}"
    return m


def test_the_baselines_summary_quoted_in_the_readme_matches_the_files():
    rows = _rows("cil-baselines-cpu")
    m = _quoted(r"Seeds 0-2 \(average accuracy / forgetting_max, %, mean ± std\): (.*?)\.  The expected")
    for name, row in (("finetune", "finetune"), ("EWC", "ewc"), ("LwF-MC", "lwf-mc"), ("iCaRL-CNN", "icarl-cnn"),
                      ("iCaRL-NCM", "icarl-ncm")):
        q = re.search(re.escape(name) + r" ([\d.]+) ± ([\d.]+) / ([\d.]+) ± ([\d.]+)", m.group(1))
        assert q, name
        for metric, (mean, sd) in (("average_accuracy", q.group(1, 2)), ("forgetting_max", q.group(3, 4))):
            vals = [100 * rows[(row, s)][metric] for s in range(3)]
            assert f"{statistics.mean(vals):.2f}" == mean and f"{statistics.stdev(vals):.2f}" == sd, (name, metric)


def test_the_numbers_the_audit_found_drifted_match_their_files():
    rows = _rows("cil-baselines-cpu")
    q = _quoted(r"it keeps ([\d.]+) % of group 0 \(from ([\d.]+) %\) while scoring ([\d.]+) % on the 5 new")
    acc = rows[("lwf-mc", 0)]["acc"]
    assert (q.group(1), q.group(2), q.group(3)) == (f"{100 * acc[1][0]:.1f}", f"{100 * acc[0][0]:.1f}",
                                                   f"{100 * acc[1][1]:.1f}")
    q = _quoted(r"just below LwF-MC in every seed \(by ([\d.]+), ([\d.]+) and ([\d.]+) points in seeds 0-2")
    gaps = [100 * (rows[("lwf-mc", s)]["average_accuracy"] - rows[("ewc", s)]["average_accuracy"]) for s in range(3)]
    assert list(q.groups()) == [f"{g:.2f}" for g in gaps]
    (probe,) = [r for r in map(_load, (ROOT / "results" / "dfkd-cifar10-cpu").glob("*-dfad-s0-*/result.json"))
                if r["cell"]["method_params"].get("g_schedule") == "student"]
    curve = {c["epoch"]: 100 * c["top1"] for c in probe["rows"]["dfad"]["curve"]}
    q = _quoted(r"then ([\d.]+)-([\d.]+) % at\s+epochs 33-35, ([\d.]+)-([\d.]+) % at epochs 36-39 and ([\d.]+) % at "
                r"the end \(best ([\d.]+)\)")

    def span(epochs):
        return f"{min(curve[e] for e in epochs):.1f}", f"{max(curve[e] for e in epochs):.1f}"

    assert q.group(1, 2) == span(range(33, 36)) and q.group(3, 4) == span(range(36, 40))
    assert q.group(5) == f"{curve[max(curve)]:.2f}" and q.group(6) == f"{max(curve.values()):.2f}"


def _checker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_quoted_numbers",
                                                  ROOT / "benchmarks" / "check_quoted_numbers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_number_quoted_beside_a_cell_name_matches_its_file():
    lines = _checker().check(README)
    assert len(lines) >= 4 and all(line.startswith("ok ") for line in lines), "\n".join(lines)


def test_the_quote_checker_catches_a_drifted_number_and_a_missing_cell():
    check = _checker().check
    drifted = README.replace("(`mnist-teacher-s0`, 98.68 %)", "(`mnist-teacher-s0`, 98.83 %)")
    assert drifted != README
    assert any(line.startswith("MISMATCH") and "98.83 %" in line for line in check(drifted))
    # a number goes to the nearest name: swapping the two phase-0 times breaks both quotes
    cell = "(`cifar100-p10-pass+rgal-g-s0`)"
    swapped = README.replace(f"took 8.2 min {cell}", f"took 19.4 min {cell}")
    assert swapped != README and any(line.startswith("MISMATCH") and "19.4 min" in line for line in check(swapped))
    assert check("it took 3.0 min (`cifar100-p10-nope-s0`)")[0].startswith("MISMATCH line 1: `cifar100-p10-nope-s0`")
