"""Shared fixtures: the repository root on sys.path, an isolated cache, and where the team's datasets live."""
import os
import sys
from pathlib import Path

import pytest

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
