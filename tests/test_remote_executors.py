"""``--executor ray`` and ``--executor slurm`` on real runs (the tiny CIFAR-10 data root, smoke profile, the 4-cell
sweep of ``test_executor``): a Ray cluster of two nodes on 127.0.0.1 (``ray.cluster_utils.Cluster``) with a worker
killed by ``kill -9`` mid-cell, and submitit's local executor (real subprocesses) with a job preempted mid-cell
(SIGUSR2, as SLURM signals it) and requeued; both end with the cells, keys and numbers of the sequential run at one
thread, each phase 0 trained once.  Plus the one-line errors: a missing optional package, a flag of another
executor, no SLURM on this machine; and the SLURM time limit by hand."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.slurm_executor import time_limit
from conftest import ROOT, run_main
from test_executor import SWEEP, _cache_use, _rows, needs_two_cores, reference  # noqa: F401 (the fixture)


def cell_process(out: Path, driver: subprocess.Popen, timeout: float = 300) -> int:
    """The pid of a worker process running a cell of ``out`` (read from the cell's lock), as soon as one runs."""
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        for lock in out.glob("*/.lock"):
            try:
                pid = json.loads(lock.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue
            if pid != driver.pid:
                return pid
        time.sleep(0.02)
    raise AssertionError("no cell started in a worker")


def _sweep(out: Path, cache: Path, *executor: str) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "run_benchmark.py"), *SWEEP, "--out", str(out), "--cache-dir", str(cache),
            *executor]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _same_as_sequential(out: Path, reference: dict) -> None:  # noqa: F811
    assert _rows(out) == reference  # same folders (keys) and numbers as the sequential run at 1 thread
    uses = sorted(v.split(" ")[0] for v in _cache_use(out).values())
    assert uses.count("miss,") == 2 and uses.count("hit") == 2  # one phase 0 trained per seed
    assert not list(out.glob("*/.lock"))
    assert (out / "report" / "index.html").is_file()  # one report, written by the driver at the end


@pytest.fixture(scope="module")
def ray_cluster():
    ray_utils = pytest.importorskip("ray.cluster_utils")
    small = {"object_store_memory": 100 * 1024 ** 2}
    cluster = ray_utils.Cluster(initialize_head=True,
                                head_node_args={"num_cpus": 1, "include_dashboard": False, **small})
    cluster.add_node(num_cpus=1, **small)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@needs_two_cores
def test_ray_on_a_two_node_cluster_survives_a_killed_worker_and_matches_sequential(reference, ray_cluster,  # noqa: F811
                                                                                    tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = _sweep(out, cache, "--executor", "ray", "--ray-address", ray_cluster.address, "--cpus-per-cell", "1")
    os.kill(cell_process(out, proc), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "ray: 2 node(s), 2 CPUs" in stdout  # the cluster's two nodes, one unit of work each
    _same_as_sequential(out, reference)


@needs_two_cores
def test_slurm_jobs_through_submitit_requeue_after_preemption_and_match_sequential(reference, tmp_path):  # noqa: F811
    pytest.importorskip("submitit")
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = _sweep(out, cache, "--executor", "slurm", "--slurm-cluster", "local", "--cpus-per-cell", "1")
    victim = cell_process(out, proc)
    os.kill(victim, signal.SIGUSR2)  # what SLURM sends before preempting a job or at its time limit
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "slurm: 2 job(s) (local executor), each 1 CPU(s), time limit 10 min" in stdout
    logs = "".join(p.read_text() for p in (out / ".slurm").glob("*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, logs  # submitit requeued the unit
    _same_as_sequential(out, reference)


def test_a_missing_optional_package_and_another_executors_flag_are_one_line_errors(tmp_path):
    fake = tmp_path / "site"
    for name in ("ray", "submitit"):  # packages that fail to import, as when they are not installed
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(f"raise ImportError('No module named {name}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}
    for executor, extra in (("ray", "ray"), ("slurm", "slurm")):
        p = subprocess.run([sys.executable, str(ROOT / "run_benchmark.py"), *SWEEP, "--out", str(tmp_path / "o"),
                            "--executor", executor, "--slurm-cluster" if executor == "slurm" else "--cpus-per-cell",
                            "local" if executor == "slurm" else "1"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert f"error: --executor {executor} needs the {'ray' if extra == 'ray' else 'submitit'} package, which is " \
               f"not installed; pip install -e .[{extra}]" in p.stderr
    p = run_main(*SWEEP, "--out", str(tmp_path / "o"), "--ray-address", "auto")
    assert p.returncode == 2 and "--ray-address applies to --executor ray" in p.stderr
    p = run_main(*SWEEP, "--out", str(tmp_path / "o"), "--executor", "local", "--slurm-time", "30")
    assert p.returncode == 2 and "--slurm-time applies to --executor slurm" in p.stderr
    p = run_main(*SWEEP, "--out", str(tmp_path / "o"), "--executor", "slurm", "--cpus-per-cell", "1", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "2 units of work (cells that make a phase 0 or teacher for others run together) as 2 SLURM jobs at once" \
        in p.stdout and "time limit 10 min a job" in p.stdout


def test_no_slurm_here_is_a_one_line_error(tmp_path):
    if __import__("shutil").which("sbatch"):
        pytest.skip("this machine has SLURM")
    pytest.importorskip("submitit")
    p = run_main(*SWEEP, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--executor", "slurm",
                 "--cpus-per-cell", "1")
    assert p.returncode == 2 and "no SLURM here (sbatch not found)" in p.stderr and "--slurm-cluster local" in p.stderr


def test_slurm_time_limit_is_the_longest_unit_times_one_and_a_half():
    assert time_limit([600.0, 3000.0], None) == 75  # 3000 s x 1.5 = 75 min
    assert time_limit([3001.0], None) == 76  # rounded up to a whole minute
    assert time_limit([60.0], None) == 10  # never below 10 min
    assert time_limit([3000.0], 30) == 30  # --slurm-time wins
