"""Executors: how a sweep's cells are run.  ``sequential`` (default) runs them in this process, one after another;
``local`` in ``--workers N`` processes on this machine (``benchmark.local_executor``); ``ray`` as Ray tasks on a Ray
cluster (``benchmark.ray_executor``); ``slurm`` as a SLURM job array through submitit (``benchmark.slurm_executor``).
This module holds what they share.

* **A job is data.**  ``CellJob`` holds everything a cell needs (its configuration, ``--out``, ``--cache-dir``,
  ``--data-root``, device, command line, loggers), and ``run_cell(job)`` is a top-level function: it pickles, so a
  worker process, a Ray task or a SLURM job runs it with no state of the command line.
* **Units of work respect shared models.**  Cells that share a phase-0 model (same ``phase0_key``) or a distillation
  teacher (same teacher cache entry) form one unit, run in order by one worker: the first trains and caches the
  shared model, the others load it.  Two workers never train the same phase 0 or teacher, and no cell waits on a
  half-written cache file (the cache writes are atomic anyway).  A unit is one local task, one Ray task, one SLURM
  array job.  Units are scheduled longest first.
* **Locks.**  Every cell runs under its ``CellLock``: a second process on the same ``--out`` leaves a cell another
  live process holds alone and reports it (``held``); a lock of a dead process is taken over.
* **Failures.**  On workers, a cell that raises is reported with its folder and the error's last line, the other
  cells go on, and the command exits non-zero; re-running it retries only what is unfinished.  A worker that dies
  (``kill -9``, out of memory, a lost node) has its unit run once more, resuming from the cells' checkpoints.
  ``sequential`` stops at the first error, as it always has (one line, exit status 2).
* **Threads.**  On a CPU each worker gets a fixed share of cores as intra-op threads (local: ``cores // N``; Ray and
  SLURM: ``--cpus-per-cell``).  The thread count is part of a CPU cell's key (``cells.thread_entry``), so the command
  plans the cells at that count: ``--executor local --workers 2`` on 2 cores gives the same cells, keys and numbers
  as a sequential run with ``OMP_NUM_THREADS=1``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

EXECUTORS = ("sequential", "local", "ray", "slurm")


@dataclass
class CellJob:
    """One cell as data (picklable): what ``run_cell`` needs to run it anywhere."""
    config: dict
    out: str
    cache_dir: str
    data_root: str | None
    device: str
    command: str = ""
    progress: bool = True
    log: tuple = ()
    teacher_checkpoint: str | None = None

    @property
    def task(self) -> str:
        return self.config.get("task", "cil")


@dataclass
class Outcome:
    folder: str
    status: str  # finished | held | failed
    result: dict | None = None
    error: str = ""
    owner: str = ""


def make_run(job: CellJob):
    """The cell's runner (``CellRun``, ``DFKDCellRun`` or ``DFQCellRun``) for ``job``."""
    import torch

    from benchmark.cells import Cell

    cell, out, cache = Cell(job.config), Path(job.out), Path(job.cache_dir)
    if job.task == "dfq":
        from benchmark.dfq_runner import DFQCellRun

        return DFQCellRun(cell, out, cache, torch.device(job.device), job.data_root, job.progress, job.command,
                          job.teacher_checkpoint, job.log)
    if job.task == "dfkd":
        from benchmark.dfkd_runner import DFKDCellRun

        return DFKDCellRun(cell, out, cache, torch.device(job.device), job.data_root, job.progress, job.command,
                           job.teacher_checkpoint, job.log)
    from benchmark.runner import CellRun

    return CellRun(cell, out, cache, torch.device(job.device), job.data_root, job.progress, job.command, job.log)


def run_cell(job: CellJob, catch: bool = False) -> Outcome:
    """Runs one cell under its lock.  ``catch``: any exception (an unreadable result, a lock that cannot be written,
    the training itself) becomes a ``failed`` outcome with its last line instead of propagating (workers; the
    sequential executor lets a ``BenchError`` reach the command line's one-line error)."""
    try:
        return _run_locked(job)
    except Exception as e:  # noqa: BLE001 -- reported per cell by the driver
        if not catch:
            raise
        return failed_outcome(job, f"{type(e).__name__}: {last_line(e)}")


def last_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[-1]


def failed_outcome(job: CellJob, error: str) -> Outcome:
    from benchmark.cells import Cell

    cell = Cell(job.config)
    try:
        folder = make_run(job).dir.name
    except Exception:  # noqa: BLE001 -- the folder name is for the message only
        folder = cell.key[:10]
    return Outcome(folder, "failed", error=error)


def _run_locked(job: CellJob) -> Outcome:
    from benchmark.locks import CellLock

    run = make_run(job)
    done = run.finished()
    if done:
        return Outcome(run.dir.name, "finished", done)
    lock = CellLock(run.dir)
    if not lock.acquire():
        return Outcome(run.dir.name, "held", owner=lock.owner_text())
    try:  # run() looks for result.json again: a process that finished the cell meanwhile is not repeated
        return Outcome(run.dir.name, "finished", run.run())
    finally:
        lock.release()


def shared_model_key(job: CellJob) -> str | None:
    """The key of the model ``job``'s cell still has to make for others (phase 0 of its family, a teacher, an image
    set), if any: None when that is cached or carried by a cell folder already (the cells then only load it, and run
    in parallel), or when the cell is finished.  Each task's run says it (``shared_model_key()``)."""
    return make_run(job).shared_model_key()


def units_of_work(jobs: list[CellJob]) -> list[list[CellJob]]:
    """Jobs grouped by the model they share, each group in the given order; groups in order of first appearance."""
    units: dict[str, list[CellJob]] = {}
    for i, job in enumerate(jobs):
        units.setdefault(shared_model_key(job) or f"cell:{i}", []).append(job)
    return list(units.values())


def schedule_order(units: list[list[CellJob]]) -> list[int]:
    """The order ``LocalExecutor`` submits units in: most cells first (a unit's shared model is paid once in it)."""
    return sorted(range(len(units)), key=lambda i: -len(units[i]))


def makespan(seconds: list[float], workers: int) -> float:
    """Wall time of running tasks of these durations, in the given order, on ``workers`` workers, each to the worker
    free first (``LocalExecutor``'s schedule in ``schedule_order``; the critical path when there are more workers
    than units)."""
    free = [0.0] * max(1, workers)
    for s in seconds:
        i = free.index(min(free))
        free[i] += s
    return max(free)


# -- executors --------------------------------------------------------------------------------------------------
class SequentialExecutor:
    def run(self, jobs: list[CellJob], on_outcome: Callable[[Outcome], None] | None = None,
            progress: bool = True) -> list[Outcome]:
        out = []
        bar = tqdm(total=len(jobs), desc="cells", unit="cell", disable=not progress, position=0)
        for job in jobs:  # in the planned (seed-major) order: the first cell of a family caches what the others load
            bar.set_postfix_str(job_label(job))
            o = run_cell(job)
            out.append(o)
            if on_outcome:
                on_outcome(o)
            bar.update(1)
        bar.close()
        return out


def job_label(job: CellJob) -> str:
    from benchmark.cells import Cell

    return Cell(job.config).label


def worker_init(threads: int | None, load_methods: Callable[[], object] | None) -> None:
    """What a worker process does before its first unit (any executor but ``sequential``): its share of the cores
    as threads (the count the cells were planned and keyed at), and every method registered."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    if load_methods is None:
        from benchmark.registry import load_methods
    load_methods()


def run_unit(jobs: list[CellJob]) -> list[Outcome]:
    """A unit of work in a worker: its cells in order; a cell that fails does not stop the others (a later cell that
    needs the shared model the failed one was to train trains it itself)."""
    return [run_cell(job, catch=True) for job in jobs]


def quiet(jobs: list[CellJob]) -> list[CellJob]:
    """The jobs without their own progress bars: a sweep on workers shows one bar, the driver's."""
    return [CellJob(**{**job.__dict__, "progress": False}) for job in jobs]


def portable(jobs: list[CellJob]) -> list[CellJob]:
    """The jobs with absolute paths (``--out``, ``--cache-dir``, the data root -- ``$BENCH_DATA`` or the default
    resolved here --, ``--teacher-checkpoint``): a Ray task or a SLURM job starts in another directory, perhaps on
    another machine that sees the same shared file system."""
    from benchmark.data import default_data_root

    def absolute(p):
        return str(Path(p).expanduser().resolve()) if p else p

    return [CellJob(**{**job.__dict__, "out": absolute(job.out), "cache_dir": absolute(job.cache_dir),
                       "data_root": absolute(job.data_root or default_data_root()),
                       "teacher_checkpoint": absolute(job.teacher_checkpoint)}) for job in jobs]


class UnitProgress:
    """The driver's side of a sweep on workers: one bar over cells with the finished / failed / held counts and
    the units running, every outcome passed to ``on_outcome`` as its unit ends, the outcomes in job order at the
    end."""

    def __init__(self, units: list[list[CellJob]], on_outcome, progress: bool):
        self.units, self.on_outcome, self.outcomes = units, on_outcome, {}
        self.bar = tqdm(total=sum(map(len, units)), desc="cells", unit="cell", disable=not progress, position=0)
        self.counts = {"finished": 0, "failed": 0, "held": 0}

    def running(self, n: int) -> None:
        done = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        self.bar.set_postfix_str(f"running {n} unit{'s' * (n != 1)}" + (f", {done}" if done else ""))

    def record(self, i: int, res: list[Outcome]) -> None:
        self.outcomes[i] = res
        for o in res:
            self.counts[o.status] += 1
            if self.on_outcome:
                self.on_outcome(o)
        self.bar.update(len(res))

    def fail(self, i: int, error: str) -> None:
        """Every cell of unit ``i`` that did not finish, failed with ``error`` (a lost worker, a task error)."""
        self.record(i, [failed_outcome(j, error) for j in self.units[i]])

    def close(self) -> list[Outcome]:
        self.bar.close()
        return [o for i in range(len(self.units)) for o in self.outcomes.get(i, [])]


def optional_import(module: str, extra: str):
    """``module`` of an optional extra, or the one-line error that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        from benchmark.errors import BenchError

        raise BenchError(f"--executor {extra} needs the {module} package, which is not installed; "
                         f"pip install -e .[{extra}]") from None


def make_executor(name: str, workers: int | None, threads: int | None = None, load_methods=None, **options):
    """The executor ``name`` (``EXECUTORS``); ``options``: the remote executors' own (``--ray-address``,
    ``--cpus-per-cell``, ``--slurm-*``)."""
    if name == "sequential":
        return SequentialExecutor()
    if name == "local":
        from benchmark.local_executor import LocalExecutor

        return LocalExecutor(workers or 2, threads, load_methods=load_methods, **options)
    if name == "ray":
        from benchmark.ray_executor import RayExecutor

        return RayExecutor(workers, threads, load_methods=load_methods, **options)
    if name == "slurm":
        from benchmark.slurm_executor import SlurmExecutor

        return SlurmExecutor(workers, threads, load_methods=load_methods, **options)
    from benchmark.errors import BenchError

    raise BenchError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
