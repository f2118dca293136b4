"""``--executor ray``: every unit of work (``benchmark.executor``: cells that share a phase 0 or a teacher, in order)
is one Ray task, on a local Ray instance started for the sweep (default) or on a running cluster
(``--ray-address auto`` or ``HOST:PORT``, e.g. after ``ray start --head`` on one node and ``ray start --address ...``
on the others).

Each task asks for ``--cpus-per-cell`` CPUs (and runs its cells at that many torch threads, the count their keys
name) and one GPU when the cells run on CUDA.  Cells run in the Ray workers, never in the driver, and write into the
same ``--out`` and ``--cache-dir`` with the suite's atomic writes and cell locks (on a cluster both must be on a file
system every node sees, at the same path).  A task whose worker dies (``kill -9``, out of memory, a lost node) is
retried once by Ray (``max_retries=1``): its finished cells are skipped and the interrupted one resumes from its
checkpoint.  Errors inside a cell are not task failures: they come back as that cell's ``failed`` outcome while the
unit's other cells go on.  ``--workers N`` caps the tasks in flight (default: as many as the cluster schedules).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from benchmark.executor import (CellJob, Outcome, UnitProgress, last_line, optional_import, portable, quiet, run_unit,
                                schedule_order, units_of_work, worker_init)

_READY = {"threads": None}  # what worker_init last set in this Ray worker process (workers are reused across tasks)


def unit_task(jobs: list[CellJob], threads: int | None, load_methods) -> list[Outcome]:
    """The Ray task: one unit of work in a Ray worker process."""
    if _READY["threads"] != threads:
        worker_init(threads, load_methods)
        _READY["threads"] = threads
    return run_unit(jobs)


class RayExecutor:
    def __init__(self, workers: int | None, threads: int | None, load_methods=None, address: str | None = None,
                 cpus_per_cell: int = 1, gpus_per_cell: float = 0, retries: int = 1):
        self.workers, self.threads, self.load_methods = workers, threads, load_methods
        self.address, self.cpus, self.gpus, self.retries = address, cpus_per_cell, gpus_per_cell, retries

    def _connect(self, ray) -> bool:
        """Connects to the cluster (or starts a local instance); True when this call started Ray."""
        if ray.is_initialized():
            return False
        root = str(Path(__file__).resolve().parents[1])  # the workers import the suite from this checkout
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        kw = {"runtime_env": {"env_vars": {"PYTHONPATH": path}}, "logging_level": logging.WARNING,
              "log_to_driver": False}
        if self.address:
            ray.init(address=self.address, **kw)
        else:
            ray.init(include_dashboard=False, **kw)
        res = ray.cluster_resources()
        print(f"ray: {len(ray.nodes())} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs "
              f"({'cluster ' + self.address if self.address else 'a local instance'}); each unit of work asks for "
              f"{self.cpus} CPU(s)" + (f" and {self.gpus:g} GPU" if self.gpus else ""), flush=True)
        return True

    def run(self, jobs: list[CellJob], on_outcome: Callable[[Outcome], None] | None = None,
            progress: bool = True) -> list[Outcome]:
        ray = optional_import("ray", "ray")
        started = self._connect(ray)
        units = units_of_work(portable(quiet(jobs)))
        queue, inflight = schedule_order(units), {}
        task = ray.remote(unit_task).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries,
                                             retry_exceptions=False)
        bar = UnitProgress(units, on_outcome, progress)
        try:
            while queue or inflight:
                while queue and (not self.workers or len(inflight) < self.workers):
                    i = queue.pop(0)
                    inflight[task.remote(units[i], self.threads, self.load_methods)] = i
                bar.running(len(inflight))
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    self._collect(ray, ref, inflight.pop(ref), bar)
        except BaseException:  # Ctrl-C: the running tasks are stopped (their cells resume from checkpoints)
            for ref in inflight:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()
        return bar.close()

    def _collect(self, ray, ref, i: int, bar: UnitProgress) -> None:
        try:
            bar.record(i, ray.get(ref))
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.OutOfMemoryError):
            bar.fail(i, f"its Ray worker died {self.retries + 1} times (killed, out of memory, or a lost node)")
        except ray.exceptions.RayError as e:
            bar.fail(i, f"{type(e).__name__}: {last_line(e)}")
