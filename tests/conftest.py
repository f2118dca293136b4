"""Shared fixtures: the repository root on sys.path, an isolated cache, and where the team's datasets live; under
pytest-xdist (`make test` runs one worker per core), each worker's share of the cores."""
import os
import sys
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers x threads must not exceed the cores: two workers of two OpenMP threads on two cores spin against each
    # other (a test run beside a training was ~3x slower).  Set before torch is imported here, and inherited by the
    # command-line runs the tests start.
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

# every method registered, as the command line does, whichever test module a worker runs first (a module that only
# calls the framework, e.g. DFKDCellRun, would otherwise depend on another module having imported the methods)
__import__("run_benchmark").load_all_methods()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    yield


def cli(*args, env=None, timeout=1500):
    """Runs run_benchmark.py in a subprocess; returns CompletedProcess."""
    import subprocess

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "run_benchmark.py"), *args], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=ROOT)


def random_teacher(name: str = "wrn16_1", n_classes: int = 10):
    """A frozen random teacher in eval mode (CIFAR-shaped, mean 0.5, std 0.25) whose BatchNorm running statistics are
    not the identity, for the synthesis losses that match them."""
    import torch

    from benchmark.models import build_model

    t = build_model(name, n_classes, 3, (0.5,) * 3, (0.25,) * 3).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return t


def dfkd_context(method_name: str, pool_dir: Path, precision: str = "fp32", teacher: str = "wrn16_1"):
    """A data-free method's context on random CIFAR-10-shaped models (smoke recipe): a teacher in eval mode with
    BatchNorm statistics that are not the identity, a fresh student, 64 random 'real' images for ``kd-real``."""
    from dataclasses import replace

    import torch

    from benchmark.augment import AugmentSpec
    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.models import build_model
    from benchmark.training import seed_everything
    from strategies.dfkd import DFKD_METHODS, DFKDContext

    prof = dfkd_profile("smoke", "cifar10")
    recipe = replace(prof.distill_for(method_name), precision=precision)
    seed_everything(0)
    t = random_teacher(teacher)
    student = build_model("wrn16_1", 10, 3, (0.5,) * 3, (0.25,) * 3)
    real = (torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (64,)))
    params = prof.params_for(method_name, DFKD_METHODS.entry(method_name).extra["defaults"])
    return DFKDContext(t, student, params, recipe, 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3,
                       AugmentSpec(crop_padding=4, flip=True), torch.device("cpu"), torch.Generator().manual_seed(0),
                       pool_dir, "k", real_data=real)


def write_tiny_datasets(folder: Path, per_class: int = 8, test_per_class: int = 2) -> Path:
    """``cifar10.npz`` (from the embedded real CIFAR-10 subset) and, when the team's MNIST is there, ``mnist.npz``
    with ``per_class`` training and ``test_per_class`` test images of each class: a data root on which a full
    pipeline (phase 0, later phases, a teacher, distillation) runs in seconds."""
    import numpy as np

    def pick(y, n):
        return np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)])

    folder.mkdir(parents=True, exist_ok=True)
    sources = {"cifar10": ROOT / "benchmark" / "data_files" / "cifar10_mini.npz", "mnist": SHARED_DATA / "mnist.npz"}
    for name, src in sources.items():
        if not src.is_file():
            continue
        d = np.load(src)
        tr, te = pick(d["y_train"], per_class), pick(d["y_test"], test_per_class)
        np.savez(folder / f"{name}.npz", x_train=d["x_train"][tr], y_train=d["y_train"][tr], x_test=d["x_test"][te],
                 y_test=d["y_test"][te], classes=d["classes"])
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return write_tiny_datasets(tmp_path_factory.mktemp("tiny-data"))


def run_main(*args):
    """``run_benchmark.main`` in this process (no interpreter start-up, ~10 s here): returncode, stdout, stderr."""
    import contextlib
    import io
    import types

    import run_benchmark

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run_benchmark.main(list(args))
        except SystemExit as e:  # argparse's usage errors exit
            code = e.code
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def make_tinyimagenet_layout(root: Path, wnids=None, train_per_class: int = 2, val_per_class: int = 1) -> Path:
    """A miniature of the standard ``tiny-imagenet-200/`` layout under ``root`` (200 classes unless ``wnids`` says
    otherwise; ``wnids.txt`` in the given order, as the real archive lists them unsorted); every image of a class is
    one flat 64x64 colour whose value is the class's rank among the sorted folder names (its official index)."""
    import numpy as np
    from PIL import Image

    wnids = wnids or [f"n{i:08d}" for i in range(200)]
    top = root / "tiny-imagenet-200"
    (top / "val" / "images").mkdir(parents=True)
    (top / "wnids.txt").write_text("\n".join(wnids) + "\n")
    ann = []
    for i, w in enumerate(sorted(wnids)):
        img = Image.fromarray(np.full((64, 64, 3), i, np.uint8))
        d = top / "train" / w / "images"
        d.mkdir(parents=True)
        for k in range(train_per_class):
            img.save(d / f"{w}_{k}.JPEG", quality=100)
        for k in range(val_per_class):
            img.save(top / "val" / "images" / f"val_{i}_{k}.JPEG", quality=100)
            ann.append(f"val_{i}_{k}.JPEG\t{w}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return top
