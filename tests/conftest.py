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


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    yield


def cli(*args, env=None, timeout=600):
    """Runs run_benchmark.py in a subprocess; returns CompletedProcess."""
    import subprocess

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "run_benchmark.py"), *args], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=ROOT)
