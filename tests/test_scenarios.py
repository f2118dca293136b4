"""Phase splits, class order and the embedded scenario."""
import numpy as np
import pytest

from benchmark.errors import BenchError
from benchmark.scenarios import build_scenario, class_order, phase_sizes


def test_pass_split_drops_classes_with_20_phases():
    assert phase_sizes(100, 10, 50) == [50] + [5] * 10
    assert phase_sizes(100, 5, 50) == [50] + [10] * 5
    s = phase_sizes(100, 20, 50)
    assert s == [50] + [2] * 20 and sum(s) == 90  # official PASS: int(50 / 20) = 2, last 10 never shown


def test_spread_remaining_uses_all_classes():
    s = phase_sizes(100, 20, 50, spread_remaining=True)
    assert sum(s) == 100 and s[1:11] == [3] * 10 and s[11:] == [2] * 10


def test_even_split_and_errors():
    assert phase_sizes(10, 4, None) == [2] * 5
    with pytest.raises(BenchError, match="do not split"):
        phase_sizes(10, 3, None)
    with pytest.raises(BenchError, match="do not fit"):
        phase_sizes(100, 60, 50)
    # more experiences than classes: --spread-remaining cannot help, so the error does not suggest it
    with pytest.raises(BenchError, match="do not fit 10 classes; use at most 9 phases"):
        phase_sizes(10, 10, None)
    with pytest.raises(BenchError, match="--base-classes 100 leaves no class .* at most 90 base classes"):
        phase_sizes(100, 10, 100)
    with pytest.raises(BenchError, match="--base-classes must be between 1 and 100"):
        phase_sizes(100, 10, 200)


def test_class_order_is_pass_order():
    np.random.seed(1993)
    expected = np.random.permutation(100).tolist()
    assert class_order(100, 1993) == expected and expected[:5] == [68, 56, 78, 8, 23]
    assert class_order(5, "natural") == [0, 1, 2, 3, 4]


def test_embedded_scenario_remaps_labels_to_order_positions():
    sc = build_scenario("cifar100-mini", 10)
    d = sc.data
    assert str(d.x_train.dtype) == "torch.uint8" and tuple(d.x_train.shape[1:]) == (3, 32, 32)
    assert len(d.y_train) == 2000 and len(d.y_test) == 500
    # label 0 is the first class of the PASS order, with its 20 training images
    assert int((d.y_train == 0).sum()) == 20
    assert sc.group_bounds()[:2] == [(0, 50), (50, 55)]
    bench = sc.benchmark
    assert bench.n_classes_per_exp == sc.sizes
    assert sorted(bench.train_stream[1].classes_in_this_experience) == [50, 51, 52, 53, 54]


def test_twenty_phases_drop_unused_classes_from_data():
    sc = build_scenario("cifar100-mini", 20)
    assert sc.dropped_classes == 10 and int(sc.data.y_train.max()) == 89 and len(sc.data.y_train) == 1800
