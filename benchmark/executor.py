"""Executors: how a sweep's cells are run.  ``sequential`` (default) runs them in this process, one after another;
``local`` runs them in ``--workers N`` processes on this machine.

* **A job is data.**  ``CellJob`` holds everything a cell needs (its configuration, ``--out``, ``--cache-dir``,
  ``--data-root``, device, command line, loggers), and ``run_cell(job)`` is a top-level function: it pickles, so a
  worker process (or, later, a cluster task) runs it with no state of the command line.
* **Units of work respect shared models.**  Cells that share a phase-0 model (same ``phase0_key``) or a distillation
  teacher (same teacher cache entry) form one unit, run in order by one worker: the first trains and caches the
  shared model, the others load it.  Two workers never train the same phase 0 or teacher, and no cell waits on a
  half-written cache file (the cache writes are atomic anyway).  Units are scheduled longest first.
* **Locks.**  Every cell runs under its ``CellLock``: a second process on the same ``--out`` leaves a cell another
  live process holds alone and reports it (``held``); a lock of a dead local process is taken over.
* **Failures.**  ``local``: a cell that raises is reported with its folder and the error's last line, the other
  cells go on, and the command exits non-zero; re-running it retries only what is unfinished.  A worker that dies
  (``kill -9``, out of memory) breaks the pool: the units it and the other workers had not finished are submitted
  again, once, to a new pool, and resume from their checkpoints.  ``sequential`` stops at the first error, as it
  always has (one line, exit status 2).
* **Threads.**  On a CPU each of N local workers gets ``cores // N`` intra-op threads.  The thread count is part of
  a CPU cell's key (``cells.thread_entry``), so the command plans the cells at that count: ``--executor local
  --workers 2`` on 2 cores gives the same cells, keys and numbers as a sequential run with ``OMP_NUM_THREADS=1``.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

EXECUTORS = ("sequential", "local")


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
    """The cell's runner (``CellRun`` or ``DFKDCellRun``) for ``job``."""
    import torch

    from benchmark.cells import Cell

    cell, out, cache = Cell(job.config), Path(job.out), Path(job.cache_dir)
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
        return failed_outcome(job, f"{type(e).__name__}: {_last_line(e)}")


def _last_line(e: BaseException) -> str:
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
    """The key of the model ``job``'s cell still has to make for others (phase 0 of its family, or its teacher), if
    any: None when that model is cached or carried by a cell folder already (the cells then only load it, and run
    in parallel), or when the cell is finished."""
    cfg, run = job.config, make_run(job)
    if run.finished():
        return None
    if job.task == "dfkd":
        if run.teacher_source()[0] != "train":
            return None
        return "teacher:" + run.teacher_cache_path().stem
    from benchmark.cells import phase0_key
    from benchmark.methods import METHODS, full_params

    family = METHODS.get(cfg["method"]).phase0_family_for(full_params(cfg["method"], cfg["method_params"]))
    if not family or run.phase0_cache_path(family).is_file() or run.carried_phase0(family, strict=False):
        return None
    return f"phase0:{phase0_key(cfg, family)}"


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


def _worker_init(threads: int | None, load_methods: Callable[[], object] | None) -> None:
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


class LocalExecutor:
    """``workers`` processes on this machine (``spawn``: a fresh interpreter each, no state inherited).
    ``load_methods``: a picklable function that registers every method in a worker (the command line's own loader,
    which also imports the packages of a bare checkout)."""

    def __init__(self, workers: int, threads: int | None = None, retries: int = 1, load_methods=None):
        self.workers, self.threads, self.retries = max(1, workers), threads, retries
        self.load_methods = load_methods

    def run(self, jobs: list[CellJob], on_outcome: Callable[[Outcome], None] | None = None,
            progress: bool = True) -> list[Outcome]:
        jobs = [CellJob(**{**job.__dict__, "progress": False}) for job in jobs]  # one bar: the driver's
        units = units_of_work(jobs)
        pending = schedule_order(units)
        deaths = {i: 0 for i in pending}  # how often a unit was running when its worker died
        outcomes: dict[int, list[Outcome]] = {}
        bar = tqdm(total=len(jobs), desc="cells", unit="cell", disable=not progress, position=0)
        counts = {"finished": 0, "failed": 0, "held": 0}

        def record(i: int, res: list[Outcome]) -> None:
            outcomes[i] = res
            for o in res:
                counts[o.status] += 1
                if on_outcome:
                    on_outcome(o)
            bar.update(len(res))
            bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in counts.items() if v))

        while pending:
            bar.set_postfix_str(f"running {min(self.workers, len(pending))} units")
            broken = self._pool_round(units, pending, record)
            pending = []
            for i in broken:  # a worker died: the units cut short run again, from their checkpoints
                if _was_running(units[i]):
                    deaths[i] += 1
                if deaths[i] <= self.retries:
                    pending.append(i)
                else:
                    record(i, [failed_outcome(j, "its worker process died twice (killed, or out of memory)")
                               for j in units[i]])
            if pending:
                tqdm.write(f"note: a worker process died; {len(pending)} unit(s) of work start again from their "
                           "checkpoints")
        bar.close()
        return [o for i in range(len(units)) for o in outcomes.get(i, [])]


    def _pool_round(self, units, pending: list[int], record) -> list[int]:
        """Runs the ``pending`` units in a fresh pool, ``record``-ing each unit's outcomes as it ends; returns the
        units cut short by a dead worker (the pool breaks for all of them)."""
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_worker_init, initargs=(self.threads, self.load_methods))
        broken = []
        try:
            futures = {pool.submit(run_unit, units[i]): i for i in pending}
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    record(i, fut.result())
                except cf.process.BrokenProcessPool:
                    broken.append(i)
                except Exception as e:  # noqa: BLE001 -- e.g. an outcome that cannot be unpickled
                    record(i, [failed_outcome(j, f"{type(e).__name__}: {_last_line(e)}") for j in units[i]])
        except BaseException:  # Ctrl-C: no queued unit starts, the running ones are stopped
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            raise
        pool.shutdown(wait=True)
        return broken


def _was_running(unit: list[CellJob]) -> bool:
    """Whether a worker was running a cell of ``unit`` when the pool broke: a cell folder's lock left by a process
    that no longer holds it (a unit that had not started has none; one whose cells all finished is not pending)."""
    from benchmark.locks import CellLock

    for job in unit:
        folder = make_run(job).dir
        if (folder / ".lock").is_file():
            probe = CellLock(folder)
            if probe.acquire():
                probe.release()
                return True
    return False


def make_executor(name: str, workers: int, threads: int | None = None, load_methods=None):
    if name == "sequential":
        return SequentialExecutor()
    if name == "local":
        return LocalExecutor(workers, threads, load_methods=load_methods)
    from benchmark.errors import BenchError

    raise BenchError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
