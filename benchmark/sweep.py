"""Running a planned sweep: threads, workers and options of ``--executor local|ray|slurm``, the executor itself (``execute``: cells, then
the summary table and the reports), the sweep's exit status and the lines it prints around the cells.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from benchmark.cli_args import plural


REMOTE = ("ray", "slurm")


def workers(args) -> int | None:
    """``--workers``: local processes (default 2, the team's 2-core machines); for Ray and SLURM a cap on the units
    running at once (default none: the cluster decides)."""
    return args.workers or (2 if args.executor == "local" else None)


def plan_threads(args, device_type: str) -> int | None:
    """The torch threads each cell runs at, set here before the cells are planned (their keys hold the count): on a
    CPU ``cores // N`` for N local workers, ``--cpus-per-cell`` on Ray and SLURM; None for the sequential executor
    and on CUDA (the process's own count)."""
    from benchmark.errors import BenchError

    if args.workers is not None and args.executor == "sequential":
        raise BenchError("--workers applies to --executor local, ray or slurm; add one or drop --workers")
    for flag, value, wanted in (("--ray-address", args.ray_address, ("ray",)),
                                ("--cpus-per-cell", args.cpus_per_cell, REMOTE),
                                ("--slurm-partition", args.slurm_partition, ("slurm",)),
                                ("--slurm-time", args.slurm_time, ("slurm",)),
                                ("--slurm-gpus", args.slurm_gpus, ("slurm",)),
                                ("--slurm-cluster", args.slurm_cluster, ("slurm",))):
        if value is not None and args.executor not in wanted:
            raise BenchError(f"{flag} applies to --executor {' or '.join(wanted)}; add it or drop {flag}")
    if device_type != "cpu" or args.executor == "sequential":
        return None
    import torch

    if args.executor in REMOTE:
        threads = cpus_per_cell(args)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // workers(args))
    torch.set_num_threads(threads)
    return threads


def cpus_per_cell(args) -> int:
    """``--cpus-per-cell`` (Ray, SLURM), 2 by default: the thread count of the committed CPU cells, so that a cluster
    run of their commands finds them (a CPU cell's key names its thread count)."""
    return args.cpus_per_cell or 2


def executor_options(args, device_type: str, seconds_of=None) -> dict:
    """The remote executors' own settings from the command line (``benchmark.executor.make_executor``)."""
    gpu = device_type == "cuda"
    if args.executor == "local" and gpu:
        from benchmark.local_executor import visible_gpus

        return {"gpus": visible_gpus()}
    if args.executor == "ray":
        return {"address": args.ray_address, "cpus_per_cell": cpus_per_cell(args), "gpus_per_cell": 1 if gpu else 0}
    if args.executor == "slurm":
        return {"cpus_per_cell": cpus_per_cell(args), "partition": args.slurm_partition, "time_min": args.slurm_time,
                "gpus": args.slurm_gpus if args.slurm_gpus is not None else int(gpu),
                "cluster": args.slurm_cluster, "seconds_of": seconds_of}
    return {}


def workers_text(args, threads) -> str:
    if args.executor == "sequential":
        return ""
    per = f" of {threads} thread{'s' * (threads > 1)}" if threads else ""
    if args.executor == "local":
        return f", {workers(args)} local workers{per}"
    cap = f", at most {workers(args)} at once" if workers(args) else ""
    return f", {args.executor} executor: one task per unit of work{per}{cap}"


def unit_index(jobs) -> dict[str, int]:
    """Cell key -> its unit of work (1-based), for --dry-run."""
    from benchmark.cells import Cell
    from benchmark.executor import units_of_work

    return {Cell(j.config).key: i + 1 for i, unit in enumerate(units_of_work(jobs)) for j in unit}


def unit_column(args, value) -> str:
    """The dry-run's unit-of-work column, shown for the executors that run units (sequential runs the cells in plan
    order)."""
    return f"{value:>4} " if args.executor != "sequential" else ""


def executor_line(args, unit_seconds: dict, unit_of: dict) -> str:
    """The dry-run's last words on the executor: units of work and the predicted wall time of their schedule (most
    cells first, each unit to the worker free first; with no cap on Ray / SLURM workers, the longest unit: the
    critical path)."""
    from benchmark.executor import makespan

    n = len(unit_seconds)
    if args.executor == "sequential" or not n:
        return ""
    cells = {u: list(unit_of.values()).count(u) for u in unit_seconds}
    order = sorted(unit_seconds, key=lambda u: -cells[u])
    w = workers(args) or n
    where = {"local": f"on {w} local workers", "ray": f"as {w} Ray tasks at once",
             "slurm": f"as {w} SLURM jobs at once"}[args.executor]
    line = (f"; {plural(n, 'unit')} of work (cells that make a phase 0 or teacher for others run together) {where}: "
            f"~{makespan([unit_seconds[u] for u in order], w) / 60:.1f} min wall time")
    if args.executor == "slurm":
        from benchmark.slurm_executor import time_limit

        line += f", time limit {time_limit(list(unit_seconds.values()), args.slurm_time)} min a job"
    return line + " (each worker's share of the cores is slower than the whole machine)"


def report_outcome(o) -> None:
    from tqdm.auto import tqdm

    if o.status == "failed":
        tqdm.write(f"error: cell {o.folder} failed: {o.error}", file=sys.stderr)
    elif o.status == "held":
        tqdm.write(f"note: cell {o.folder} is being run by another process ({o.owner}); left to it")


def execute(args, jobs, threads, out, on_outcome, summary_table, load_methods, device_type: str = "cpu",
            seconds_of=None) -> int:
    """Runs ``jobs`` through the chosen executor, then prints the summary of the finished cells and writes the
    report (both tasks); returns the sweep's exit status.  ``load_methods``: registers every method (the CLI's
    loader, run in each worker); ``seconds_of(job)``: a cell's predicted seconds (SLURM's default time limit)."""
    from benchmark.executor import make_executor
    from benchmark.report_writer import write_reports

    executor = make_executor(args.executor, workers(args), threads, load_methods,
                             **executor_options(args, device_type, seconds_of))
    outcomes = executor.run(jobs, on_outcome, progress=not args.no_progress)
    results = [o.result for o in outcomes if o.status == "finished"]
    if results:
        print(summary_table(results))
        print_written(write_reports(out))
    return sweep_status(outcomes)


def sweep_status(outcomes) -> int:
    """Exit status of a sweep: 2 when a cell failed, 1 when another process holds one, else 0; with a line that
    says which and what to do."""
    failed = [o for o in outcomes if o.status == "failed"]
    held = [o for o in outcomes if o.status == "held"]
    if held:
        print(f"{plural(len(held), 'cell')} left to another process that runs them "
              f"({', '.join(sorted({o.owner for o in held}))}): {' '.join(o.folder for o in held)}; run the same "
              f"command when it ends", file=sys.stderr)
    if failed:
        print(f"error: {plural(len(failed), 'cell')} failed ({' '.join(o.folder for o in failed)}); the others are "
              f"saved; fix the cause and run the same command again (finished cells are skipped; with the sequential "
              f"executor a failing cell stops the sweep with its whole error)", file=sys.stderr)
        return 2
    return 1 if held else 0


def print_written(paths) -> None:
    if not paths:
        print("report: no file written")
        return
    names = [Path(p).name for p in paths]
    md = [n for n in names if n.endswith(".md")]
    png = sum(n.endswith(".png") for n in names)
    page = " (index.html: all of it on one page, open it in a browser)" if "index.html" in names else ""
    print(f"report: {plural(len(paths), 'file')} in {Path(paths[0]).parent}{page}: {' and '.join(sorted(md))}, "
          f"{plural(png, 'plot')} (.png), .csv and .tex copies of each table")


def precision_note(args, device) -> None:
    from benchmark.precision import emulation_note, resolve_precision

    note = emulation_note(args.precision and resolve_precision(args.precision, device.type), device.type)
    if note:
        print(note)


def out_and_cache(args, default_name: str) -> tuple[Path, Path]:
    from benchmark.store import default_cache_dir

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/{default_name}-{stamp}")
    return out, Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()


def start_sweep(args, out: Path, cache: Path, line: str) -> None:
    """Before the first cell: both folders writable (one-line errors otherwise), then the sweep's first line."""
    from benchmark.store import check_writable

    check_writable(out)
    check_writable(cache, "--cache-dir")
    print(line)
