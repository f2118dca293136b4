"""Reports from result.json contents alone, on a worked example: the table cells (mean ± std over seeds, published
number beside), the points of the seen-accuracy plot and the mean accuracy matrix of the heatmaps."""
import math

import pytest

from benchmark.cil_plots import mean_accuracy_matrices, seen_accuracy_frame
from benchmark.reports import long_frame, metric_table, paired_gain_table
from benchmark.summary import _notes, chance_average_accuracy, summary_table


def _result(seed, acc, seen, avg, method="lwf-mc", published="LwF-MC"):
    return {"cell": {"scenario": "cifar100", "phases": 2, "phase_sizes": [50, 25, 25], "seed": seed,
                     "profile": "cpu", "method": method},
            "rows": {method: {"acc": acc, "seen_acc": seen, "average_accuracy": avg, "overall_accuracy": seen[-1],
                              "forgetting_max": 0.1, "forgetting_first": 0.1, "published_name": published}},
            "memory": "none", "timings": {"wall_seconds": 60.0}}


RESULTS = [_result(0, [[0.6, None, None], [0.4, 0.8, None], [0.2, 0.5, 0.9]], [0.6, 0.5, 0.45], 0.5),
           _result(1, [[0.8, None, None], [0.6, 0.6, None], [0.4, 0.3, 0.7]], [0.8, 0.6, 0.55], 0.7)]


def test_table_cell_is_mean_and_std_over_seeds_with_the_published_number_beside():
    t = metric_table(long_frame(RESULTS), "average_accuracy")
    col = "cifar100 2ph [cpu]"
    # mean of 50 and 70 = 60, sample std = sqrt(((50-60)^2 + (70-60)^2) / 1) = 14.14
    assert t.loc["lwf-mc", (col, "measured")] == "60.00 ± 14.14 (n=2)"
    # LwF-MC has no published 2-phase figure: a dash, never an invented number
    assert t.loc["lwf-mc", (col, "published")] == "-"


def test_offline_row_says_so_in_tables_and_plot():
    joint = {**_result(0, [[0.9, None, None], [0.9, 0.9, None], [0.9, 0.9, 0.9]], [0.9, 0.9, 0.9], 0.9, "joint", ""),
             "offline": True}
    label = "joint (offline upper bound: one training on all classes)"
    t = metric_table(long_frame(RESULTS + [joint]), "average_accuracy")
    assert set(t.index) == {"lwf-mc", label}
    assert set(seen_accuracy_frame([joint])["method"]) == {label}


def test_one_method_with_different_settings_gives_separate_rows_not_seeds():
    a, b = _result(0, [[0.5]], [0.5], 0.5, "pass+rgal-g", ""), _result(0, [[0.7]], [0.7], 0.7, "pass+rgal-g", "")
    a["cell"]["method_params"] = {"rgal_steps": 10}  # rgal_schedule at its (key-neutral) default: not recorded
    b["cell"]["method_params"] = {"rgal_steps": 10, "rgal_schedule": "epoch"}
    t = metric_table(long_frame([a, b]), "average_accuracy")
    # the left-out default is named by its value
    assert set(t.index) == {"pass+rgal-g [rgal_schedule=step]", "pass+rgal-g [rgal_schedule=epoch]"}
    assert t.loc["pass+rgal-g [rgal_schedule=epoch]", ("cifar100 2ph [cpu]", "measured")] == "70.00 (n=1)"
    # the same settings over two seeds stay one row
    c = {**b, "cell": {**b["cell"], "seed": 1}}
    assert len(metric_table(long_frame([b, c]), "average_accuracy")) == 1


def test_new_accuracy_column_is_recomputed_from_the_matrix():
    # results written before the metric existed have no "new_accuracy" field: the matrix diagonal gives it
    df = long_frame(RESULTS).set_index("seed")
    assert df.loc[0, "new_accuracy"] == pytest.approx((80 + 90) / 2)
    assert df.loc[1, "new_accuracy"] == pytest.approx((60 + 70) / 2)
    assert math.isnan(long_frame([_result(0, [[0.5]], [0.5], 0.5)])["new_accuracy"][0])


def test_seen_accuracy_plot_points_are_classes_seen_and_percentages():
    df = seen_accuracy_frame(RESULTS)
    s0 = df[df["seed"] == 0].sort_values("classes")
    assert s0["classes"].tolist() == [50, 75, 100]
    assert s0["accuracy (%)"].tolist() == pytest.approx([60.0, 50.0, 45.0])
    assert set(df["panel"]) == {"cifar100 2 phases"} and len(df) == 6


def test_heatmap_matrix_is_the_mean_over_seeds_with_blanks_above_the_diagonal():
    (key, (a, n)), = mean_accuracy_matrices(RESULTS).items()
    assert key == ("cifar100", 2, "lwf-mc") and n == 2
    assert a[1, 0] == pytest.approx(50.0) and a[2, 1] == pytest.approx(40.0) and a[2, 2] == pytest.approx(80.0)
    assert math.isnan(a[0, 1]) and math.isnan(a[1, 2])


def test_published_number_comes_from_the_reference_csv():
    r = _result(0, [[0.5]], [0.5], 0.3)
    r["cell"]["phases"] = 10
    t = metric_table(long_frame([r]), "average_accuracy")
    assert t.loc["lwf-mc", ("cifar100 10ph [cpu]", "measured")] == "30.00 (n=1)"
    assert t.loc["lwf-mc", ("cifar100 10ph [cpu]", "published")] == "27.43"  # RGAL Table 14, CIFAR-100, 10 phases


def test_a_profile_gets_one_note_the_text_of_its_newest_cell():
    old = {**RESULTS[0], "profile_gap_to_paper": "20 epochs", "finished": "2026-11-20T10:00:00"}
    new = {**RESULTS[1], "profile_gap_to_paper": "20 epochs; PASS 5 epochs", "finished": "2026-11-24T10:00:00"}
    notes = [n for n in _notes([new, old]) if n.startswith("profile cpu")]
    assert notes == ["profile cpu: 20 epochs; PASS 5 epochs (the newest of 2 texts these cells recorded; each cell's "
                     "recipe is in its cell.json)"]
    assert [n for n in _notes([old, old]) if n.startswith("profile")] == ["profile cpu: 20 epochs"]


def test_rgal_gain_is_paired_by_seed_with_the_published_difference_and_sign_count():
    def cell(method, published, seed, avg, forget):
        r = _result(seed, [[0.5]], [0.5], avg, method, published)
        r["cell"]["phases"] = 10
        r["rows"][method]["forgetting_max"] = forget
        return r

    # seeds differ a lot (0.20 vs 0.40) but RGAL adds +2 and +1 points in each: paired, 1.50 ± 0.71
    runs = [cell("pass", "PASS", 0, 0.20, 0.10), cell("pass+rgal", "PASS+RGAL", 0, 0.22, 0.12),
            cell("pass", "PASS", 1, 0.40, 0.30), cell("pass+rgal", "PASS+RGAL", 1, 0.41, 0.20),
            cell("pass+rgal", "PASS+RGAL", 2, 0.50, 0.10)]  # no PASS run of seed 2: not paired, left out
    t = paired_gain_table(long_frame(runs)).loc[("pass+rgal - pass", "cifar100 10ph [cpu]")]
    assert t.loc["average_accuracy", "measured"] == "+1.50 ± 0.71 (n=2)"
    assert t.loc["average_accuracy", "published"] == "+3.63"  # 65.47 - 61.84 (RGAL Table 14, 10 phases)
    assert t.loc["average_accuracy", "seeds with the published sign"] == "2/2"
    # forgetting: +2 and -10 points; published 22.16 - 30.25 = -8.09, so one seed of two has its sign
    assert t.loc["forgetting_max", "measured"] == "-4.00 ± 8.49 (n=2)"
    assert t.loc["forgetting_max", "published"] == "-8.09"
    assert t.loc["forgetting_max", "seeds with the published sign"] == "1/2"
    assert paired_gain_table(long_frame(runs[:1])) is None  # nothing to pair
    one = paired_gain_table(long_frame(runs[:2])).loc[("pass+rgal - pass", "cifar100 10ph [cpu]")]
    assert one.loc["average_accuracy", "seeds with the published sign"] == "1/1 (one seed: no evidence either way)"


def test_columns_follow_the_number_of_phases_and_the_mini_subset_names_its_published_column():
    runs = []
    for ph in (20, 5, 10):
        r = _result(0, [[0.5]], [0.5], 0.5)
        r["cell"]["phases"] = ph
        runs.append(r)
    mini = _result(0, [[0.5]], [0.5], 0.5)
    mini["cell"]["scenario"] = "cifar100-mini"
    t = metric_table(long_frame(runs + [mini]), "average_accuracy")
    assert [c for c, _ in t.columns[::2]] == ["cifar100 5ph [cpu]", "cifar100 10ph [cpu]", "cifar100 20ph [cpu]",
                                              "cifar100-mini 2ph [cpu]"]
    assert t.columns[-1] == ("cifar100-mini 2ph [cpu]", "published (full CIFAR-100)")


def test_dfkd_frame_gives_last_epoch_best_epoch_and_mean_of_the_last_five():
    from benchmark.dfkd_reports import dfkd_frame

    curve = [{"epoch": e, "top1": t} for e, t in enumerate([0.1, 0.5, 0.9, 0.8, 0.7, 0.6, 0.7], start=1)]
    r = {"cell": {"scenario": "mnist", "teacher": "lenet5", "student": "lenet5_half", "method": "dfad", "seed": 0,
                  "profile": "cpu"},
         "rows": {"dfad": {"top1": 0.7, "best_top1": 0.9, "curve": curve}}, "teacher": {"test_accuracy": 0.99}}
    row = dfkd_frame([r]).iloc[0]
    assert row["top1"] == pytest.approx(70) and row["best_top1"] == pytest.approx(90)
    assert row["last5_top1"] == pytest.approx((90 + 80 + 70 + 60 + 70) / 5)  # epochs 3-7


def test_merged_folders_read_a_shared_key_once_and_keep_results_without_a_key(tmp_path):
    import json

    from benchmark.reports import load_results

    def put(folder, name, key):
        (tmp_path / folder / name).mkdir(parents=True)
        res = {"cell": {"task": "cil"}, "rows": {"m": {}}, **({"key": key} if key else {})}
        (tmp_path / folder / name / "result.json").write_text(json.dumps(res))

    put("a", "c1", "k1"), put("b", "c1-copy", "k1"), put("a", "old1", None), put("b", "old2", None)
    got = load_results([tmp_path / "a", tmp_path / "b"])
    assert sorted(r["_path"].split("/")[-2] for r in got) == ["c1", "old1", "old2"]


def test_dfkd_tables_put_the_teacher_beside_its_pair_and_no_published_number_beside_an_ablation():
    from strategies.dfkd import DFKD_METHODS

    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.dfkd_reports import dfkd_frame, table1_arvi, table1_rgal

    prof = dfkd_profile("cpu", "mnist")

    def res(method, row, top1, **changed):
        params = {**prof.params_for(method, DFKD_METHODS.entry(method).extra["defaults"]), **changed}
        return {"cell": {"scenario": "mnist", "teacher": "lenet5", "student": "lenet5_half", "method": method,
                         "method_params": params, "seed": 0, "profile": "cpu"},
                "rows": {row: {"top1": top1, "best_top1": top1}}, "teacher": {"test_accuracy": 0.99}}

    frame = dfkd_frame([res("teacher", "teacher", 0.99), res("dfad+ar+vi", "dfad+ar+vi", 0.95),
                        res("dfad+ar+vi", "dfad+ar+vi", 0.94, ar_l=0.0, ar_m=0.0),
                        res("rgal", "rgal", 0.96), res("rgal", "rgal[released]", 0.93, variant="released")])
    # RGAL Table 1 layout: one measured row for the pair, the teacher first among its columns
    r = table1_rgal(frame)
    measured = r.loc[("MNIST", "lenet5", "lenet5_half", "measured [cpu]")]
    assert r.columns[0] == "teacher" and measured["teacher"] == "99.00 (n=1)"
    assert measured["rgal [variant=paper]"] == "96.00 (n=1)"
    assert len(r) == 1  # no row of its own for the teacher (lenet5 -> lenet5); RGAL publishes no MNIST row
    t = table1_arvi(frame)
    col = "MNIST lenet5->lenet5_half [cpu]"
    assert list(t.columns) == [(col, "measured"), (col, "published")]  # one pair: the teacher is not a column
    assert t.loc["teacher", (col, "measured")] == "99.00 (n=1)"
    assert t.loc["teacher", (col, "published")] == "98.89"
    d = prof.params_for("dfad+ar+vi", DFKD_METHODS.entry("dfad+ar+vi").extra["defaults"])
    on, off = f"dfad+ar+vi [ar_l={d['ar_l']}, ar_m={d['ar_m']}]", "dfad+ar+vi [ar_l=0.0, ar_m=0.0]"
    assert t.loc[on, (col, "published")] == "98.41"
    assert t.loc[off, (col, "published")] == "-"  # AR off is an ablation, not the published DFAD+AR+VI
    # the released variant's name already says so; the paper one is told apart by its parameter
    assert {"rgal[released]", "rgal [variant=paper]"} <= set(t.index)


def test_terminal_summary_has_units_directions_seed_count_and_chance():
    # chance: guessing among 50, 75, 100 seen classes -> (2 + 1.333 + 1) / 3 = 1.444 %
    assert chance_average_accuracy([50, 25, 25]) == pytest.approx(100 * (1 / 50 + 1 / 75 + 1 / 100) / 3)
    text = summary_table(RESULTS)
    header, row = text.splitlines()[:2]
    for col in ("avg acc % \u2191", "final acc % \u2191", "forgetting % \u2193", "new-class acc % \u2191",
                "chance avg acc %", "seeds"):
        assert col in header
    # means over the two seeds: avg (50 + 70) / 2, final (45 + 55) / 2, forgetting 10, new-class (85 + 65) / 2
    assert row.split() == ["cifar100", "2", "lwf-mc", "60.0", "50.0", "10.0", "75.0", "1.44", "2"]
    assert "higher is better" in text and "pipeline demo" not in text  # cpu profile: no demo warning
    demo = [{**r, "cell": {**r["cell"], "profile": "mini"}} for r in RESULTS]
    assert "profile mini: a pipeline demo" in summary_table(demo)


def test_the_ablation_table_keeps_the_rgal_family_also_under_a_varied_parameter_label():
    from benchmark.reports import rgal_pairs, table_filter

    keep = table_filter("rgal")
    assert ("pass+rgal", "pass") in rgal_pairs() and ("ssre+rgal", "ssre") in rgal_pairs()
    assert keep("pass+rgal") and keep("pass") and keep("ssre+rgal [rgal_steps=20]") and keep("pass+rgal-g")
    assert not keep("finetune") and not keep("icarl-cnn") and table_filter(None) is None
