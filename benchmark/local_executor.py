"""``--executor local``: ``--workers N`` processes on this machine (``concurrent.futures`` with ``spawn``), one unit
of work per task, each worker with ``cores // N`` threads on a CPU, or one GPU of its own on CUDA (worker i sees GPU
i mod the GPUs visible here, through ``CUDA_VISIBLE_DEVICES``, set before it imports torch) (``benchmark.executor``
says what all executors share).

A worker that dies (``kill -9``, out of memory) breaks the whole pool: the units it and the other workers had not
finished are submitted again, once, to a new pool, and resume from their checkpoints; a unit whose worker died twice
is reported failed.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Callable

from tqdm.auto import tqdm

from benchmark.executor import (CellJob, Outcome, UnitProgress, failed_outcome, last_line, make_run, quiet, run_unit,
                                schedule_order, units_of_work, worker_init)


class LocalExecutor:
    """``workers`` processes on this machine (``spawn``: a fresh interpreter each, no state inherited).
    ``load_methods``: a picklable function that registers every method in a worker (the command line's own loader,
    which also imports the packages of a bare checkout)."""

    def __init__(self, workers: int, threads: int | None = None, retries: int = 1, load_methods=None,
                 gpus: list[str] | None = None):
        self.workers, self.threads, self.retries = max(1, workers), threads, retries
        self.load_methods, self.gpus = load_methods, gpus

    def run(self, jobs: list[CellJob], on_outcome: Callable[[Outcome], None] | None = None,
            progress: bool = True) -> list[Outcome]:
        units = units_of_work(quiet(jobs))
        pending = schedule_order(units)
        deaths = {i: 0 for i in pending}  # how often a unit was running when its worker died
        bar = UnitProgress(units, on_outcome, progress)
        while pending:
            bar.running(min(self.workers, len(pending)))
            broken = self._pool_round(units, pending, bar.record)
            pending = []
            for i in broken:  # a worker died: the units cut short run again, from their checkpoints
                if _was_running(units[i]):
                    deaths[i] += 1
                if deaths[i] <= self.retries:
                    pending.append(i)
                else:
                    bar.fail(i, "its worker process died twice (killed, or out of memory)")
            if pending:
                tqdm.write(f"note: a worker process died; {len(pending)} unit(s) of work start again from their "
                           "checkpoints")
        return bar.close()

    def _pool_round(self, units, pending: list[int], record) -> list[int]:
        """Runs the ``pending`` units in a fresh pool, ``record``-ing each unit's outcomes as it ends; returns the
        units cut short by a dead worker (the pool breaks for all of them)."""
        ctx = multiprocessing.get_context("spawn")
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=local_worker_init,
                                      initargs=(self.threads, self.load_methods, self.gpus, ctx.Value("i", 0)))
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
                    record(i, [failed_outcome(j, f"{type(e).__name__}: {last_line(e)}") for j in units[i]])
        except BaseException:  # Ctrl-C: no queued unit starts, the running ones are stopped
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            raise
        pool.shutdown(wait=True)
        return broken


def local_worker_init(threads, load_methods, gpus: list[str] | None, counter) -> None:
    """A local worker's start: on CUDA its own GPU (the ``counter``-th worker of the pool takes GPU ``counter mod
    len(gpus)``), then what every worker does (``benchmark.executor.worker_init``)."""
    if gpus:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    worker_init(threads, load_methods)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (its own list when set)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


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
