#!/usr/bin/env python
"""Command line of the suite: plan cells, run them (resuming finished and partial ones), write reports.

    python run_benchmark.py                                  # embedded cifar100-mini demo, profile mini
    python run_benchmark.py --scenario cifar100 --phases 10  # the main job (profile cpu)
    python run_benchmark.py report DIR                        # tables and plots from DIR's result.json files
    python run_benchmark.py report DIR1 DIR2 --out OUT        # several sweeps' rows in one report
"""
from __future__ import annotations

import difflib
import sys

from benchmark.cli_args import parse_report_args, plural
from benchmark.hparams import parse_settings
from benchmark.sweep import (REMOTE, execute, out_and_cache, plan_threads, precision_note, print_written, report_outcome,
                             start_sweep, workers_text)

# the no-flag run (<= 3 min on 2 cores, CONVENTIONS.md): the cheapest informative subset; ewc and joint by flag
DEFAULT_METHODS = ["finetune", "lwf", "lwf-mc", "icarl", "pass", "pass+rgal"]
DEFAULT_DFKD_METHODS = ["teacher", "kd-real", "dafl", "zskt", "dfq", "dfad", "dfad+ar+vi", "deepinversion", "cmi",
                        "rgal"]
DEFAULT_DFQ_BITS = ["4", "3"]  # RGAL paper Table 12
# the methods of the paper's tables: Table 12 (CIFAR-100) and Table 13 (ImageNet: IntraQ, + L'_g, + L'_g + L'_s)
DEFAULT_DFQ_METHODS = ["teacher", "gdfq", "gdfq+rgal", "intraq", "intraq+rgal"]
DEFAULT_DFQ_IMAGENET_METHODS = ["teacher", "intraq", "intraq+rgal-g", "intraq+rgal"]


def load_all_methods() -> None:
    """Registers every method: this repository's packages (imported here, the top layer, so that a bare checkout
    works without installing) and any other package of the ``rgal_bench.methods`` entry points."""
    import baselines  # noqa: F401
    import strategies  # noqa: F401
    import strategies.dfkd  # noqa: F401
    import strategies.dfq  # noqa: F401
    from benchmark.registry import load_methods

    load_methods()


def parse_args(argv):
    """The run's arguments (``benchmark.cli_args``), with the CLI's default method lists."""
    from benchmark.cli_args import parse_args as parse

    return parse(argv, DEFAULT_METHODS, DEFAULT_DFKD_METHODS, __doc__)


def _registries():
    load_all_methods()
    from benchmark.dfkd_methods import DFKD_METHODS
    from benchmark.dfq_methods import DFQ_METHODS
    from benchmark.methods import METHODS
    from benchmark.models import MODELS
    from benchmark.profiles import PROFILES
    from benchmark.scenarios import SCENARIOS

    return {"scenario": SCENARIOS, "method (cil)": METHODS, "method (dfkd, --task dfkd)": DFKD_METHODS,
            "method (dfq, --task dfq)": DFQ_METHODS, "model": MODELS, "profile": PROFILES}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from benchmark.errors import BenchError

    try:
        first = argv[0] if argv else ""
        if first and not first.startswith("-") and first != "report":
            near = difflib.get_close_matches(first, ["report"], n=1)
            hint = "did you mean 'report'?" if near else "the only command is 'report'; the rest are --flags"
            raise BenchError(f"unknown command {first!r}; {hint} (see run_benchmark.py --help)")
        if argv[:1] == ["report"]:
            return report(parse_report_args(argv[1:]))
        return run(parse_args(argv))
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished phases are saved; run the same command again to resume", file=sys.stderr)
        return 130


def report(args) -> int:
    """``report DIR ...``: the summary tables of the results found (what a run prints at its end), then the files
    written."""
    load_all_methods()
    from benchmark.dfkd_reports import dfkd_summary_table
    from benchmark.dfq_reports import dfq_summary_table
    from benchmark.report_writer import collect_results, write_reports
    from benchmark.summary import summary_table

    cil, dfkd, dfq = collect_results(args.folders)
    paths = write_reports(args.folders, args.out, collected=(cil, dfkd, dfq))
    if cil:
        print(summary_table(cil))
    if dfkd:
        print(dfkd_summary_table(dfkd))
    if dfq:
        print(dfq_summary_table(dfq))
    print_written(paths)
    return 0


def run(args) -> int:
    if args.dump_config:
        from benchmark.config_file import dump_config

        print(dump_config(args, args.defaults), end="")
        return 0
    load_all_methods()
    if args.list:
        from benchmark.listing import print_list, print_one

        print_list(_registries()) if args.list is True else print_one(args.list, _registries())
        return 0
    from benchmark.errors import BenchError

    if args.task in ("dfkd", "dfq"):
        for flag in ("phases", "model", "class_order_seed", "memory_total", "base_classes", "spread_remaining",
                     "inc_epochs", "per_class"):
            if getattr(args, flag) not in (None, False):
                hint = " (data-free runs choose models with --teacher and --student)" if flag == "model" else ""
                raise BenchError(f"--{flag.replace('_', '-')} belongs to class-incremental runs; drop it or drop "
                                 f"--task {args.task}{hint}")
        own = {"dfkd": ("bits",), "dfq": ("student", "rgal_variant")}[args.task]
        for flag in own:
            if getattr(args, flag) is not None:
                other = "dfq" if args.task == "dfkd" else "dfkd"
                raise BenchError(f"--{flag.replace('_', '-')} belongs to --task {other}; drop it or use --task "
                                 f"{other}")
        return run_datafree(args, args.task)
    for flag in ("teacher", "student", "teacher_checkpoint", "rgal_variant", "bits"):
        if getattr(args, flag) is not None:
            task = "dfq" if flag == "bits" else "dfkd"
            raise BenchError(f"--{flag.replace('_', '-')} belongs to --task {task}; add --task {task} or drop it")
    return run_cil(args)


def _check_memory_total(args, methods) -> None:
    from benchmark.errors import BenchError
    from benchmark.methods import METHODS

    if args.memory_total is None:
        return
    kept = [m for m in methods if m in METHODS and "memory_total" in METHODS.entry(m).extra["defaults"]]
    if not kept and all(m in METHODS for m in methods):  # an unknown method gets its own error below
        raise BenchError(f"--memory-total sets the exemplar budget, and none of --methods ({' '.join(methods)}) "
                         "keeps exemplars; add icarl, ucir or eeil, or drop the flag")


def _seconds_of(args, cells, runs, task: str):
    """``--executor slurm``: each cell's predicted seconds (the dry run's plan), for the jobs' default time limit."""
    if args.executor != "slurm":
        return None
    from benchmark.cells import Cell
    from benchmark.dry_run import cil_plans, dfkd_plans, dfq_plans

    plans = {"cil": cil_plans, "dfkd": dfkd_plans, "dfq": dfq_plans}[task](cells, runs)
    seconds = {p.key: p.seconds for p in plans}
    return lambda job: seconds.get(Cell(job.config).key, 0.0)


def run_cil(args) -> int:
    from benchmark.executor import CellJob
    from benchmark.run_logging import check_loggers
    from benchmark.provenance import command_line
    from benchmark.runner import CellRun, make_cells, resolve_device

    scenarios = args.scenario or ["cifar100-mini"]
    profile = args.profile or ("mini" if scenarios == ["cifar100-mini"] else "cpu")
    methods = args.methods or DEFAULT_METHODS
    device = resolve_device(args.device, remote=args.executor in REMOTE)
    _check_memory_total(args, methods)
    order_seed = 1993 if args.class_order_seed is None else args.class_order_seed
    threads = plan_threads(args, device.type)  # before the cells: a CPU cell's key holds its thread count
    cells = make_cells(scenarios=scenarios, phases=args.phases or [10], methods=methods, seeds=args.seeds,
                       profile=profile, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       inc_epochs=args.inc_epochs, class_order_seed=order_seed, data_root=args.data_root,
                       spread_remaining=args.spread_remaining, base_classes=args.base_classes, model=args.model,
                       memory_total=args.memory_total, device_type=device.type,
                       method_params=parse_settings(args.settings, methods), precision=args.precision,
                       per_class=args.per_class, deterministic=args.deterministic)
    precision_note(args, device)
    out, cache = out_and_cache(args, "+".join(scenarios))
    loggers = check_loggers(args.log)
    runs = {c.key: CellRun(c, out, cache, device, args.data_root, not args.no_progress, command_line(), loggers)
            for c in cells}
    jobs = [CellJob(c.config, str(out), str(cache), args.data_root, str(device), command_line(),
                    not args.no_progress, loggers) for c in cells]
    for c in cells:
        if c.config["dropped_classes"]:
            print(f"note: {c.config['scenario']} with {c.config['phases']} phases shows "
                  f"{sum(c.config['phase_sizes'])} classes; {c.config['dropped_classes']} are never shown "
                  f"(official PASS split; --spread-remaining uses them all)")
            break
    if args.dry_run:
        from benchmark.dry_run import print_cil_plan

        return print_cil_plan(args, cells, runs, jobs)
    start_sweep(args, out, cache, f"{plural(len(cells), 'cell')} -> {out}  (profile {profile}, device {device}"
                             f"{workers_text(args, threads)})")
    from benchmark.summary import summary_table

    return execute(args, jobs, threads, out, report_outcome, summary_table, load_all_methods, device.type,
                   _seconds_of(args, cells, runs, "cil"))


def _dfkd_settings(args, methods) -> list[str]:
    """``--set`` values, plus ``--rgal-variant`` as the setting it stands for."""
    from benchmark.dfkd_methods import DFKD_METHODS
    from benchmark.errors import BenchError

    settings = list(args.settings)
    for m in methods:
        DFKD_METHODS.entry(m)  # an unknown name: its own error before any flag refers to the list
    if args.rgal_variant:
        if "rgal" not in methods:
            raise BenchError(f"--rgal-variant applies to rgal, which is not among --methods ({' '.join(methods)}); "
                             "add rgal or drop the flag")
        settings.append(f"rgal.variant={args.rgal_variant}")
    return settings


def _datafree_cells(args, task: str, device):
    """(scenarios, cells, the cell runner class, the task's summary table, its plan printer, cell noun) of a
    data-free run: distillation (``--task dfkd``) or quantization (``--task dfq``)."""
    if task == "dfkd":
        from benchmark.dfkd_methods import DFKD_METHODS
        from benchmark.dfkd_reports import dfkd_summary_table
        from benchmark.dfkd_runner import DFKDCellRun, make_dfkd_cells
        from benchmark.dry_run import print_dfkd_plan

        scenarios, methods = args.scenario or ["mnist"], args.methods or DEFAULT_DFKD_METHODS
        settings = _dfkd_settings(args, methods)
        cells = make_dfkd_cells(scenarios=scenarios, methods=methods, seeds=args.seeds, profile=args.profile or "cpu",
                                teacher=args.teacher, student=args.student, epochs=args.epochs,
                                batch_size=args.batch_size, lr=args.lr, data_root=args.data_root,
                                device_type=device.type,
                                method_params=parse_settings(settings, methods, DFKD_METHODS),
                                teacher_checkpoint=args.teacher_checkpoint, precision=args.precision,
                                deterministic=args.deterministic)
        return scenarios, cells, DFKDCellRun, dfkd_summary_table, print_dfkd_plan, "distillation cell"
    from benchmark.dfq_methods import DFQ_METHODS
    from benchmark.dfq_reports import dfq_summary_table
    from benchmark.dfq_runner import DFQCellRun, make_dfq_cells
    from benchmark.dry_run import print_dfq_plan
    from benchmark.quantization import parse_bits

    scenarios = args.scenario or ["cifar100"]
    methods = args.methods or (DEFAULT_DFQ_IMAGENET_METHODS if set(scenarios) == {"imagenet"} else DEFAULT_DFQ_METHODS)
    bits = list(dict.fromkeys(parse_bits(b) for b in (args.bits or DEFAULT_DFQ_BITS)))
    cells = make_dfq_cells(scenarios=scenarios, methods=methods, seeds=args.seeds, profile=args.profile or "cpu",
                           bits=bits, teacher=args.teacher, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           data_root=args.data_root, device_type=device.type,
                           method_params=parse_settings(args.settings, methods, DFQ_METHODS),
                           teacher_checkpoint=args.teacher_checkpoint, precision=args.precision,
                           deterministic=args.deterministic)
    return scenarios, cells, DFQCellRun, dfq_summary_table, print_dfq_plan, "quantization cell"


def run_datafree(args, task: str) -> int:
    """A data-free sweep (``--task dfkd`` or ``dfq``): the cells, then a dry run or their execution, each finished
    cell's throughput printed as it ends (a later failure does not hide it)."""
    from tqdm.auto import tqdm

    from benchmark.dfkd_estimates import throughput_line
    from benchmark.executor import CellJob
    from benchmark.provenance import command_line
    from benchmark.run_logging import check_loggers
    from benchmark.runner import resolve_device

    device = resolve_device(args.device, remote=args.executor in REMOTE)
    threads = plan_threads(args, device.type)  # before the cells: a CPU cell's key holds its thread count
    scenarios, cells, run_cls, summary_table, print_plan, noun = _datafree_cells(args, task, device)
    precision_note(args, device)
    out, cache = out_and_cache(args, f"{task}-{'+'.join(scenarios)}")
    loggers = check_loggers(args.log)
    runs = {c.key: run_cls(c, out, cache, device, args.data_root, not args.no_progress, command_line(),
                           args.teacher_checkpoint, loggers) for c in cells}
    jobs = [CellJob(c.config, str(out), str(cache), args.data_root, str(device), command_line(),
                    not args.no_progress, loggers, args.teacher_checkpoint) for c in cells]
    if args.dry_run:
        return print_plan(args, cells, runs, jobs)
    start_sweep(args, out, cache, f"{plural(len(cells), noun)} -> {out}  (profile {args.profile or 'cpu'}, device "
                             f"{device}{workers_text(args, threads)})")

    def on_outcome(o):
        if o.status == "finished":
            tqdm.write(throughput_line(o.result))
        report_outcome(o)

    return execute(args, jobs, threads, out, on_outcome, summary_table, load_all_methods, device.type,
                   _seconds_of(args, cells, runs, task))


if __name__ == "__main__":
    sys.exit(main())
