"""Faults found from outside: damaged or wrong data files, a damaged result, unwritable folders, a
bad ``--set`` value, the state a module needs to compute the same thing after a resume, determinism at 2 threads,
file modes, stale report files and Tiny-ImageNet's class numbering.  Each case is one line and exit code 2, found
before any training, and writes nothing."""
import json
import os

import numpy as np
import pytest
import torch

from benchmark.data import load_arrays
from benchmark.errors import BenchError
from conftest import run_main as in_process


def _npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(20) % 10,
              "x_test": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(10),
              "classes": np.array([f"c{i}" for i in range(10)])}
    arrays.update(over)
    np.savez(path, **arrays)
    return path


def test_a_well_formed_file_loads(tmp_path):
    d = load_arrays("cifar10", _npz(tmp_path / "cifar10.npz").parent)
    assert tuple(d.x_train.shape) == (20, 3, 32, 32) and d.x_train.dtype == torch.uint8 and d.n_classes == 10


@pytest.mark.parametrize("damage,words", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(_npz(p).read_bytes()[:3000]), "BadZipFile"),
    (lambda p: p.write_bytes(_npz(p).read_bytes()[:-40000]), "cannot read"),
])
@pytest.mark.parametrize("name", ["cifar100", "mnist"])
def test_a_damaged_npz_is_one_line_naming_the_file_and_nothing_is_written(name, damage, words, tmp_path):
    damage(tmp_path / f"{name}.npz")
    r = in_process("--scenario", name, "--data-root", str(tmp_path), "--out", str(tmp_path / "out"), "--phases",
                   "1", "--methods", "finetune")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert str(tmp_path / f"{name}.npz") in r.stderr and words in r.stderr and "expand.py" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("over,words", [
    ({"x_train": np.random.default_rng(0).random((20, 32, 32, 3), dtype=np.float32)}, "float32 images"),
    ({"y_train": np.arange(19) % 10}, "20 train images but 19 labels"),
    ({"x_train": np.zeros((20, 28, 28, 3), np.uint8)}, "train images are 3x28x28"),
    ({"x_train": np.zeros((20, 3072), np.uint8)}, "not flattened rows"),
    ({"x_train": np.zeros((20, 32, 32, 4), np.uint8)}, "train images are 32x32x4"),
    ({"y_test": np.arange(10) + 5}, "test labels span 5..14, cifar10 needs 0..9"),
    ({"y_train": np.linspace(0, 9, 20)}, "float64 labels"),
    ({"classes": np.array(["a", "b"])}, "names 2 classes, cifar10 has 10"),
])
def test_arrays_of_the_wrong_kind_are_refused_at_load(over, words, tmp_path):
    _npz(tmp_path / "cifar10.npz", **over)
    with pytest.raises(BenchError, match=words.replace("(", r"\(")) as e:
        load_arrays("cifar10", tmp_path)
    assert "\n" not in str(e.value) and "cifar10.npz" in str(e.value)


def test_the_packed_shared_copy_says_to_expand_it(tmp_path):
    np.savez(tmp_path / "cifar100.npz", webp=np.zeros(4, np.uint8), offsets=np.zeros(2, np.int64))
    with pytest.raises(BenchError, match="packed copy.*expand.py"):
        load_arrays("cifar100", tmp_path)


def test_report_on_a_result_without_rows_is_one_line_and_writes_nothing(tmp_path):
    cell = tmp_path / "res" / "cell"
    cell.mkdir(parents=True)
    (cell / "result.json").write_text(json.dumps({"key": "k", "cell": {"task": "cil"}}))
    r = in_process("report", str(tmp_path / "res"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "no 'rows'" in r.stderr and str(cell / "result.json") in r.stderr
    assert not (tmp_path / "res" / "report").exists()


def test_unwritable_cache_dir_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("x")  # a folder below a file cannot be made, whoever runs the test
    r = in_process("--methods", "finetune", "--phases", "1", "--out", str(tmp_path / "out"), "--cache-dir",
                   str(tmp_path / "file" / "cache"))
    assert r.returncode == 2 and "--cache-dir" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not list((tmp_path / "out").rglob("*.pt"))


def test_a_set_value_of_the_wrong_type_for_a_null_default_fails_at_dry_run(tmp_path):
    r = in_process("--methods", "pass", "--set", "pass.proto_samples=abc", "--dry-run", "--out", str(tmp_path))
    assert r.returncode == 2 and "proto_samples takes null" in r.stderr, r.stderr
    assert in_process("--methods", "pass", "--set", "pass.proto_samples=32", "--dry-run", "--out",
                      str(tmp_path)).returncode == 0


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    from benchmark import store

    store.save_json(tmp_path / "r.json", {"a": 1})

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(BenchError, match="cannot write .*r.json \\(No space left on device\\)"):
        store.save_json(tmp_path / "r.json", {"a": 2})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_written_files_follow_the_umask_not_0600(tmp_path):
    from benchmark import store

    old = os.umask(0o022)
    try:
        store.save_json(tmp_path / "a.json", {})
        store.save_torch(tmp_path / "b.pt", {"x": torch.zeros(1)})
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {"0o644"}


def test_a_missing_pool_batch_points_to_the_checkpoint_not_to_itself(tmp_path):
    from strategies.dfkd.pool import DataPool

    pool = DataPool(tmp_path / "pool", "k")
    pool.add(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]))
    pool.add(torch.rand(2, 1, 4, 4), torch.tensor([1, 0]))
    (tmp_path / "pool" / "000001.pt").unlink()
    with pytest.raises(BenchError, match="000001.pt is missing; the pool cannot be rebuilt.*checkpoint.pt") as e:
        DataPool(tmp_path / "pool", "k").load(2)
    assert str(tmp_path / "checkpoint.pt") in str(e.value)


def test_report_removes_the_files_of_its_previous_run_that_it_no_longer_writes(tmp_path):
    from benchmark.report_writer import prune_stale

    rep = tmp_path / "report"
    rep.mkdir()
    for name in ("tables.md", "heatmap_old_cell.png", "mine.txt"):
        (rep / name).write_text("x")
    prune_stale(rep, [rep / "tables.md", rep / "heatmap_old_cell.png"])
    prune_stale(rep, [rep / "tables.md"])  # the cell of the heatmap is skipped now
    assert sorted(p.name for p in rep.iterdir()) == [".report-files", "mine.txt", "tables.md"]


def test_the_sliced_heads_active_classes_are_part_of_the_state():
    """PASS's previous model is rebuilt from a fresh network at resume: it must score the classes it scored."""
    from benchmark.models import build_model
    from benchmark.models.base import frozen_copy

    net = build_model("resnet20", 10, 3, (0.5,) * 3, (0.5,) * 3)
    net.head.active = 4
    fresh = build_model("resnet20", 10, 3, (0.5,) * 3, (0.5,) * 3)
    old = frozen_copy(fresh, net.state_dict())
    assert old.head.active == 4 and old(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    legacy = {k: v for k, v in net.state_dict().items() if not k.endswith("_extra_state")}  # a phase-0 cache
    fresh.head.active = 7
    fresh.load_state_dict(legacy)
    assert fresh.head.active == 7


def test_a_trained_icarl_models_state_loads_into_a_fresh_copy():
    """The NCM classifier's class means are a buffer that exists only once filled (a resume once crashed on it)."""
    from avalanche.models import NCMClassifier, TrainEvalModel

    from benchmark.models import build_model
    from benchmark.models.base import frozen_copy

    def model():
        net = build_model("resnet20", 10, 3, (0.5,) * 3, (0.5,) * 3)
        return TrainEvalModel(net.backbone, net.head, NCMClassifier())

    trained = model()
    trained.eval_classifier.replace_class_means_dict({0: torch.ones(64), 1: torch.zeros(64)})
    copy = frozen_copy(model(), trained.state_dict())
    assert torch.equal(copy.eval_classifier.class_means, trained.eval_classifier.class_means)


def test_triplet_backward_is_bit_identical_at_two_threads():
    """The backward of ``emb[anchors]`` accumulates with CPU atomics above 32768 elements unless the runners'
    ``deterministic_kernels`` is on; RGAL's distillation differed between identical runs at 2 threads."""
    from benchmark.training import deterministic_kernels
    from strategies.rgal.losses import triplet_loss

    threads, was = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    deterministic_kernels("cpu")
    try:
        gen = torch.Generator().manual_seed(0)
        emb0 = torch.randn(256, 64, generator=gen)
        a, p, n = (torch.randint(0, 256, (4000,), generator=gen) for _ in range(3))
        grads = set()
        for _ in range(6):
            emb = emb0.clone().requires_grad_()
            triplet_loss(emb, a, p, n).backward()
            grads.add(emb.grad.numpy().tobytes())
        assert len(grads) == 1
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was)


def test_keys_name_the_thread_count_and_a_student_names_its_teacher(tiny_data):
    """Float reductions depend on the thread count: cells, phase-0 models and teachers computed at different counts
    must not share a key (one cache entry gave 59.82 % to one cell and 60.22 % to another)."""
    import baselines  # noqa: F401
    import strategies.dfkd  # noqa: F401
    from benchmark.cells import phase0_key
    from benchmark.dfkd_runner import make_dfkd_cells
    from benchmark.runner import make_cells

    def plan():
        (cil,) = make_cells(scenarios=["cifar10"], phases=[1], methods=["finetune"], seeds=[0], profile="smoke",
                            data_root=tiny_data)
        (kd,) = make_dfkd_cells(scenarios=["cifar10"], methods=["dfad"], seeds=[0], profile="smoke",
                                data_root=tiny_data)
        return cil, kd

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cil1, kd1 = plan()
        torch.set_num_threads(2)
        cil2, kd2 = plan()
    finally:
        torch.set_num_threads(threads)
    assert (cil1.config["torch_threads"], cil2.config["torch_threads"]) == (1, 2)
    assert cil1.key != cil2.key and kd1.key != kd2.key
    assert phase0_key(cil1.config, "ce") != phase0_key(cil2.config, "ce")
    assert kd1.config["teacher_key"] and kd1.config["teacher_key"] != kd2.config["teacher_key"]
    on_gpu = make_cells(scenarios=["cifar10"], phases=[1], methods=["finetune"], seeds=[0], profile="smoke",
                        data_root=tiny_data, device_type="cuda")[0]
    assert "torch_threads" not in on_gpu.config


def test_a_bare_npy_under_the_npz_name_is_one_line(tmp_path):
    np.save(tmp_path / "arr.npy", np.zeros((4, 32, 32, 3), np.uint8))
    (tmp_path / "arr.npy").rename(tmp_path / "cifar10.npz")
    with pytest.raises(BenchError, match="not an .npz archive") as e:
        load_arrays("cifar10", tmp_path)
    assert "\n" not in str(e.value)


def test_deterministic_mode_is_keyed_only_when_set_and_sets_every_flag(tiny_data, monkeypatch):
    """``--deterministic`` (GPU users' reproducibility switch): the cell, its phase-0 model and its teacher are keyed
    by it only when it is set (every existing key stays), and it sets the whole torch / cuDNN / cuBLAS state; the
    next cell without it gets the default state back."""
    import os

    import strategies.dfkd  # noqa: F401
    from benchmark.cells import phase0_key
    from benchmark.dfkd_runner import make_dfkd_cells
    from benchmark.runner import make_cells
    from benchmark.training import deterministic_kernels

    kw = dict(scenarios=["cifar10"], phases=[1], methods=["finetune"], seeds=[0], profile="smoke", data_root=tiny_data)
    (plain,), (strict,) = make_cells(**kw), make_cells(**kw, deterministic=True)
    assert "deterministic" not in plain.config and strict.config["deterministic"] is True
    assert plain.key != strict.key and phase0_key(plain.config, "ce") != phase0_key(strict.config, "ce")
    dk = dict(scenarios=["cifar10"], methods=["dfad"], seeds=[0], profile="smoke", data_root=tiny_data)
    (kd,), (kd_strict,) = make_dfkd_cells(**dk), make_dfkd_cells(**dk, deterministic=True)
    assert kd.config["teacher_key"] != kd_strict.config["teacher_key"] and "deterministic" not in kd.config

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        deterministic_kernels("cuda", strict=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        deterministic_kernels("cuda")
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        deterministic_kernels("cpu")  # the suite's CPU default for the tests that follow
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
