"""``--executor slurm``: every unit of work (``benchmark.executor``: cells that share a phase 0 or a teacher, in
order) is one job of a SLURM job array, submitted through submitit (``pip install -e .[slurm]``).

Each job gets ``--cpus-per-cell`` CPUs (its cells run at that many torch threads, the count their keys name),
``--slurm-gpus`` GPUs (default one when the cells run on CUDA), ``--slurm-partition`` and a time limit of
``--slurm-time`` minutes (default: the ``--dry-run`` estimate of the longest unit x 1.5, at least 10 minutes).
``--workers N`` caps how many of the array's jobs run at once (SLURM's ``%N``).  The job is checkpointable: when
SLURM preempts it or its time runs out, submitit signals it and requeues the same unit, whose finished cells are
skipped and whose interrupted cell resumes from its checkpoint (saved after every phase / epoch).  ``--out`` and
``--cache-dir`` must be on a file system every node sees at the same path; submitit's job files and logs go to
``<out>/.slurm/``.  ``--slurm-cluster local`` runs the same jobs as local subprocesses through submitit's local
executor (a dry run of the cluster set-up on one machine; the tests use it).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from benchmark.executor import (CellJob, Outcome, UnitProgress, last_line, optional_import, portable, quiet, run_unit,
                                schedule_order, units_of_work, worker_init)

POLL_SECONDS = 2.0
MIN_TIME_MIN = 10


class UnitJob:
    """The submitted callable: one unit of work in a SLURM job.  ``checkpoint`` (submitit's requeue hook, called on
    preemption or time-out) resubmits the same unit unchanged: the cells' own checkpoints carry the progress."""

    def __call__(self, jobs: list[CellJob], threads: int | None, load_methods) -> list[Outcome]:
        worker_init(threads, load_methods)
        return run_unit(jobs)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def time_limit(unit_seconds: list[float], given: int | None) -> int:
    """``--slurm-time`` in minutes, or the longest unit's predicted time x 1.5 (at least ``MIN_TIME_MIN``)."""
    if given:
        return given
    return max(MIN_TIME_MIN, math.ceil(1.5 * max(unit_seconds, default=0.0) / 60))


class SlurmExecutor:
    def __init__(self, workers: int | None, threads: int | None, load_methods=None, cpus_per_cell: int = 1,
                 gpus: int = 0, partition: str | None = None, time_min: int | None = None, cluster: str | None = None,
                 seconds_of: Callable[[CellJob], float] | None = None):
        self.workers, self.threads, self.load_methods = workers, threads, load_methods
        self.cpus, self.gpus, self.partition, self.time_min = cpus_per_cell, gpus, partition, time_min
        self.cluster, self.seconds_of = cluster, seconds_of

    def _executor(self, submitit, folder: Path, units):
        import shutil

        if self.cluster is None and shutil.which("sbatch") is None:
            from benchmark.errors import BenchError

            raise BenchError("--executor slurm: no SLURM here (sbatch not found); submit from a SLURM login node, or "
                             "add --slurm-cluster local to run the jobs on this machine")
        ex = submitit.AutoExecutor(folder=folder, cluster=self.cluster or "slurm")
        minutes = time_limit([sum(map(self.seconds_of, u)) for u in units] if self.seconds_of else [], self.time_min)
        params = {"timeout_min": minutes, "cpus_per_task": self.cpus, "gpus_per_node": self.gpus,
                  "name": "rgal-bench"}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.workers:
            params["slurm_array_parallelism"] = self.workers
        ex.update_parameters(**params)
        print(f"slurm: {len(units)} job(s) ({ex.cluster} executor), each {self.cpus} CPU(s)"
              + (f", {self.gpus} GPU(s)" if self.gpus else "") + f", time limit {minutes} min"
              + (f", partition {self.partition}" if self.partition else "") + f"; job files in {folder}", flush=True)
        return ex

    def run(self, jobs: list[CellJob], on_outcome: Callable[[Outcome], None] | None = None,
            progress: bool = True) -> list[Outcome]:
        submitit = optional_import("submitit", "slurm")
        jobs = portable(quiet(jobs))
        units = units_of_work(jobs)
        order = schedule_order(units)
        ex = self._executor(submitit, Path(jobs[0].out) / ".slurm" if jobs else Path(".slurm"), units)
        with ex.batch():  # one job array
            submitted = [ex.submit(UnitJob(), units[i], self.threads, self.load_methods) for i in order]
        waiting = dict(zip(submitted, order))
        bar = UnitProgress(units, on_outcome, progress)
        try:
            while waiting:
                bar.running(len(waiting))
                for job in [j for j in waiting if j.done()]:
                    self._collect(job, waiting.pop(job), bar)
                if waiting:
                    time.sleep(POLL_SECONDS)
        except BaseException:  # Ctrl-C: the jobs are cancelled (their cells resume from checkpoints next time)
            for job in waiting:
                job.cancel(check=False)
            raise
        return bar.close()

    @staticmethod
    def _collect(job, i: int, bar: UnitProgress) -> None:
        try:
            bar.record(i, job.result())
        except Exception as e:  # noqa: BLE001 -- a job that failed outside its cells (killed, node lost, time-out)
            bar.fail(i, f"SLURM job {job.job_id} ended without results: {last_line(e)} (its log: "
                        f"{job.paths.stderr})")
