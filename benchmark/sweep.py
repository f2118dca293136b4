"""Running a planned sweep: threads and workers of ``--executor local``, the executor itself (``execute``: cells, then
the summary table and the reports), the sweep's exit status and the lines it prints around the cells.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from benchmark.cli_args import plural


def workers(args) -> int:
    """``--workers``, 2 by default (the team's 2-core machines)."""
    return args.workers or 2


def plan_threads(args, device_type: str) -> int | None:
    """``--executor local`` on a CPU: each of the N workers gets ``cores // N`` threads, set here before the cells
    are planned (their keys hold the count); None otherwise (the process's own count)."""
    if args.executor != "local" or device_type != "cpu":
        if args.workers is not None and args.executor != "local":
            from benchmark.errors import BenchError

            raise BenchError("--workers applies to --executor local; add --executor local or drop --workers")
        return None
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers(args))
    torch.set_num_threads(threads)
    return threads


def workers_text(args, threads) -> str:
    if args.executor != "local":
        return ""
    return f", {workers(args)} local workers" + (f" of {threads} thread{'s' * (threads > 1)}" if threads else "")


def unit_index(jobs) -> dict[str, int]:
    """Cell key -> its unit of work (1-based), for --dry-run."""
    from benchmark.cells import Cell
    from benchmark.executor import units_of_work

    return {Cell(j.config).key: i + 1 for i, unit in enumerate(units_of_work(jobs)) for j in unit}


def unit_column(args, value) -> str:
    """The dry-run's unit-of-work column, shown for the local executor (sequential runs the cells in plan order)."""
    return f"{value:>4} " if args.executor == "local" else ""


def executor_line(args, unit_seconds: dict, unit_of: dict) -> str:
    """The dry-run's last words on the executor: units of work and, for ``local``, the predicted wall time of the
    schedule it follows (most cells first, each unit to the worker free first)."""
    from benchmark.executor import makespan

    n = len(unit_seconds)
    if args.executor != "local":
        return ""
    cells = {u: list(unit_of.values()).count(u) for u in unit_seconds}
    order = sorted(unit_seconds, key=lambda u: -cells[u])
    w = workers(args)
    return (f"; {plural(n, 'unit')} of work (cells that make a phase 0 or teacher for others run together) on {w} "
            f"local workers: ~{makespan([unit_seconds[u] for u in order], w) / 60:.1f} min wall time (each worker's "
            f"share of the cores is slower than the whole machine)")


def report_outcome(o) -> None:
    from tqdm.auto import tqdm

    if o.status == "failed":
        tqdm.write(f"error: cell {o.folder} failed: {o.error}", file=sys.stderr)
    elif o.status == "held":
        tqdm.write(f"note: cell {o.folder} is being run by another process ({o.owner}); left to it")


def execute(args, jobs, threads, out, on_outcome, summary_table, load_methods) -> int:
    """Runs ``jobs`` through the chosen executor, then prints the summary of the finished cells and writes the
    report (both tasks); returns the sweep's exit status.  ``load_methods``: registers every method (the CLI's
    loader, run in each local worker)."""
    from benchmark.executor import make_executor
    from benchmark.report_writer import write_reports

    executor = make_executor(args.executor, workers(args), threads, load_methods)
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
              f"saved; fix the cause and run the same command again (finished cells are skipped; without --executor "
              f"local a failing cell stops the sweep with its whole error)", file=sys.stderr)
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
