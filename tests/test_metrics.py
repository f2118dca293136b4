"""Metrics against worked examples computed by hand."""
import math

import pytest

from benchmark import metrics

# 3 phases; groups of 100, 50, 50 test samples
ACC = [[0.80, None, None],
       [0.60, 0.90, None],
       [0.50, 0.70, 0.95]]
COUNTS = [100, 50, 50]


def test_seen_accuracy_is_sample_weighted():
    s = metrics.seen_accuracy(ACC, COUNTS)
    assert s[0] == pytest.approx(0.80)
    assert s[1] == pytest.approx((0.60 * 100 + 0.90 * 50) / 150)  # 0.70
    assert s[2] == pytest.approx((50 + 35 + 47.5) / 200)  # 0.6625


def test_average_and_overall():
    assert metrics.average_incremental_accuracy(ACC, COUNTS) == pytest.approx((0.80 + 0.70 + 0.6625) / 3)
    assert metrics.overall_accuracy(ACC, COUNTS) == pytest.approx(0.6625)


def test_forgetting_max_and_first():
    # group 0: max(0.80, 0.60) - 0.50 = 0.30; group 1: max(0.90) - 0.70 = 0.20
    assert metrics.forgetting_max(ACC) == pytest.approx(0.25)
    # first: (0.80 - 0.50 + 0.90 - 0.70) / 2
    assert metrics.forgetting_first(ACC) == pytest.approx(0.25)


def test_forgetting_max_differs_from_first_when_accuracy_rises_later():
    acc = [[0.5, None, None], [0.7, 0.8, None], [0.4, 0.6, 0.9]]
    assert metrics.forgetting_max(acc) == pytest.approx(((0.7 - 0.4) + (0.8 - 0.6)) / 2)
    assert metrics.forgetting_first(acc) == pytest.approx(((0.5 - 0.4) + (0.8 - 0.6)) / 2)


def test_best_so_far_keeps_each_group_at_its_best_and_bounds_the_room_for_less_forgetting():
    acc = [[0.5, None, None], [0.7, 0.8, None], [0.4, 0.6, 0.9]]  # group 0 rises, then falls; group 1 falls
    assert metrics.best_so_far(acc) == [[0.5, None, None], [0.7, 0.8, None], [0.7, 0.8, 0.9]]
    # the same test counts as COUNTS: seen accuracy becomes 0.5, (0.7*100 + 0.8*50)/150, (0.7*100 + 0.8*50 + 0.9*50)/200
    room = (metrics.average_incremental_accuracy(metrics.best_so_far(acc), COUNTS)
            - metrics.average_incremental_accuracy(acc, COUNTS))
    assert room == pytest.approx(((0.7 - 0.4) * 100 + (0.8 - 0.6) * 50) / 200 / 3)
    assert metrics.best_so_far(ACC[:1]) == [[0.80, None, None]]


def test_new_accuracy_is_the_diagonal_of_the_incremental_phases():
    # acc[1][1] = 0.90, acc[2][2] = 0.95; phase 0's 0.80 is not a new-class figure
    assert metrics.new_accuracy(ACC) == pytest.approx((0.90 + 0.95) / 2)
    assert metrics.summarize(ACC, COUNTS)["new_accuracy"] == pytest.approx(0.925)
    # a method that never learns its new classes in their own phase, whatever it does later
    assert metrics.new_accuracy([[0.9, None, None], [0.8, 0.0, None], [0.7, 0.3, 0.0]]) == 0.0
    assert math.isnan(metrics.new_accuracy([[0.42]])) and metrics.summarize([[0.42]], [10])["new_accuracy"] is None


def test_one_phase_only():
    s = metrics.summarize([[0.42]], [10])
    assert s["average_accuracy"] == pytest.approx(0.42) and s["overall_accuracy"] == pytest.approx(0.42)
    assert s["forgetting_max"] is None and s["forgetting_first"] is None
    assert math.isnan(metrics.forgetting_max([[0.42]]))


def test_group_never_learned():
    # group 1 is never recognised: 0 accuracy from the start, so it adds nothing to forgetting
    acc = [[0.9, None, None], [0.8, 0.0, None], [0.7, 0.0, 0.6]]
    assert metrics.forgetting_max(acc) == pytest.approx((0.2 + 0.0) / 2)
    assert metrics.seen_accuracy(acc, [10, 10, 10])[1] == pytest.approx(0.4)


def test_several_classifiers_are_independent_rows():
    rows = {"icarl-cnn": ACC, "icarl-ncm": [[0.8, None, None], [0.7, 0.8, None], [0.65, 0.7, 0.8]]}
    out = {k: metrics.summarize(v, COUNTS) for k, v in rows.items()}
    assert out["icarl-cnn"]["forgetting_max"] == pytest.approx(0.25)
    assert out["icarl-ncm"]["forgetting_max"] == pytest.approx((0.15 + 0.10) / 2)
    assert out["icarl-ncm"]["overall_accuracy"] == pytest.approx((65 + 35 + 40) / 200)


def test_backward_transfer_is_the_end_accuracy_of_each_old_group_minus_its_own_phase():
    # group 0: 0.50 - 0.80 = -0.30; group 1: 0.70 - 0.90 = -0.20; BWT = -0.25 (forgetting)
    assert metrics.backward_transfer(ACC) == pytest.approx(-0.25)
    assert metrics.summarize(ACC, COUNTS)["bwt"] == pytest.approx(-0.25)
    # an old group that improves later gives positive transfer
    assert metrics.backward_transfer([[0.5, None], [0.7, 0.9]]) == pytest.approx(0.2)
    assert math.isnan(metrics.backward_transfer([[0.5]])) and metrics.summarize([[0.5]], [10])["bwt"] is None


def test_the_long_table_carries_bwt_recomputed_from_the_matrix():
    from benchmark.reports import long_frame

    r = {"cell": {"scenario": "cifar100", "phases": 2, "phase_sizes": [50, 25, 25], "seed": 0, "profile": "cpu",
                  "method": "lwf"},
         "rows": {"lwf": {"acc": ACC, "seen_acc": [0.8, 0.7, 0.6625], "average_accuracy": 0.72, "overall_accuracy":
                          0.6625, "forgetting_max": 0.25, "forgetting_first": 0.25}},  # written before bwt existed
         "memory": "none", "timings": {"wall_seconds": 1.0}}
    assert long_frame([r])["bwt"][0] == pytest.approx(-25.0)
