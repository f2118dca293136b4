"""benchmarks/phase0_cache.py's split of cells into those that trained phase 0 and those that loaded it: a cache hit
and a phase 0 restored from a carried ``phase0.pt`` both count as loaded, so neither inflates the measured saving."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "phase0_cache.py"
spec = importlib.util.spec_from_file_location("phase0_cache", SCRIPT)
phase0_cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(phase0_cache)


def _cell(cache: str, seconds: float) -> dict:
    return {"timings": {"phase0_cache": cache, "phase_seconds": [seconds, 99.0]}}


def test_hits_and_restored_phase0_count_as_loaded_only_training_counts_as_trained():
    cells = [_cell("miss, trained and stored abc.pt", 600.0), _cell("hit abc.pt", 2.0),
             _cell("miss, restored from cifar100-p10-pass-s1-6e254e1466/phase0.pt", 3.0), _cell(None, 500.0)]
    trained, loaded = phase0_cache.phase0_times(cells)
    assert trained == [600.0, 500.0] and loaded == [2.0, 3.0]  # a cell without a family trains its own phase 0
