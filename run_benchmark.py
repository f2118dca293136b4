#!/usr/bin/env python
"""Command line of the suite: plan cells, run them (resuming finished and partial ones), write reports.

    python run_benchmark.py                                  # embedded cifar100-mini demo, profile mini
    python run_benchmark.py --scenario cifar100 --phases 10  # the main job (profile cpu)
    python run_benchmark.py report DIR                        # tables and plots from DIR's result.json files
    python run_benchmark.py report DIR1 DIR2 --out OUT        # several sweeps' rows in one report
"""
from __future__ import annotations

import argparse
import datetime as dt
import difflib
import math
import sys
from pathlib import Path

# the no-flag run (<= 3 min on 2 cores, CONVENTIONS.md): the cheapest informative subset; ewc and joint by flag
DEFAULT_METHODS = ["finetune", "lwf", "lwf-mc", "icarl", "pass", "pass+rgal"]
DEFAULT_DFKD_METHODS = ["teacher", "kd-real", "dafl", "zskt", "dfq", "dfad", "dfad+ar+vi", "deepinversion", "cmi",
                        "rgal"]


def _order_seed(text: str):
    if text == "natural":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an integer seed nor 'natural'") from None


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _Parser(argparse.ArgumentParser):
    """argparse with the suite's one-line errors (CONVENTIONS.md) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{v} is below {minimum}")
        return v

    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text} is not a positive finite number")
    return v


def _per_class(text: str):
    """``all`` or ``TRAIN[/TEST]`` (TEST defaults to a quarter of TRAIN, at least 1: cifar100-mini's 20 / 5)."""
    if text == "all":
        return "all"
    try:
        parts = [int(t) for t in text.split("/")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'all' nor TRAIN[/TEST] with positive integers "
                                         "(e.g. 20/5)")
    return (parts[0], parts[1] if len(parts) == 2 else max(1, parts[0] // 4))


def parse_args(argv):
    p = _Parser(prog="run_benchmark.py", description=__doc__.split("\n")[0],
                epilog="examples:\n" + __doc__.split("\n\n", 1)[1].rstrip().rstrip('"') +
                       "\n\nREADME.md (Usage) lists every flag; `run_benchmark.py report --help` the report command.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=["cil", "dfkd"], default="cil",
                   help="cil: class-incremental learning (default); dfkd: data-free knowledge distillation")
    p.add_argument("--scenario", nargs="+", default=None,
                   help="scenario name(s) (see --list); default cifar100-mini, with --task dfkd mnist")
    p.add_argument("--phases", nargs="+", type=_count(0), default=None,
                   help="incremental phases after phase 0 (5 10 20; default 10; 0: phase 0 alone)")
    p.add_argument("--methods", "--strategies", nargs="+", default=None, dest="methods",
                   help=f"methods (see --list); default {' '.join(DEFAULT_METHODS)}, with --task dfkd "
                        f"{' '.join(DEFAULT_DFKD_METHODS)}")
    p.add_argument("--seeds", nargs="+", type=_count(0), default=[0], help="training seeds (default 0)")
    p.add_argument("--profile", default=None, help="paper | cpu | mini | smoke (default: mini for cifar100-mini, "
                                                   "else cpu)")
    p.add_argument("--epochs", type=_count(1), help="override the epochs of every phase (dfkd: of distillation)")
    p.add_argument("--inc-epochs", type=_count(1),
                   help="override the epochs of the incremental phases only (phase 0 and its cache stay the "
                        "profile's)")
    p.add_argument("--batch-size", type=_count(1), help="override the training batch (dfkd: the student's)")
    p.add_argument("--lr", type=_positive_float, help="override the learning rate (dfkd: the student's)")
    p.add_argument("--model", help="override the profile's backbone (see --list)")
    p.add_argument("--class-order-seed", default=None, type=_order_seed,
                   help="seed of the class permutation (an integer; default 1993, PASS's), or 'natural'")
    p.add_argument("--spread-remaining", action="store_true",
                   help="spread all remaining classes over the phases instead of int((n-base)/phases) each")
    p.add_argument("--base-classes", type=_count(1),
                   help="classes in phase 0 (default: half for cifar100/tinyimagenet)")
    p.add_argument("--per-class", type=_per_class, default=None, metavar="TRAIN[/TEST]|all",
                   help="train and test on the first TRAIN / TEST images of each class (default: the profile's; "
                        "mini keeps 20 / 5, smoke 5 / 2, cpu and paper all)")
    p.add_argument("--memory-total", type=_count(1),
                   help="fixed exemplar budget instead of 20 per class (exemplar methods: icarl, ucir, eeil)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--deterministic", action="store_true",
                   help="strictly deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic, "
                        "no cuDNN benchmarking): reproducible CUDA runs, somewhat slower; recorded in the cell "
                        "(and its key). CPU cells are deterministic without it")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default=None,
                   help="training arithmetic: bf16 / fp16 autocast (fp16: CUDA only, with loss scaling), auto = bf16 "
                        "where the CPU or GPU computes it natively; evaluation and statistics stay fp32 "
                        "(default: the profile's)")
    p.add_argument("--data-root", default=None, help="folder with <name>.npz or torchvision layouts "
                                                     "(default $BENCH_DATA, then ~/.cache/rgal-bench/data)")
    p.add_argument("--cache-dir", default=None, help="phase-0 / teacher cache (default $BENCH_CACHE, then "
                                                     "~/.cache/rgal-bench/cache)")
    p.add_argument("--out", default=None, help="output folder (default runs/<scenario>-<date>-<time>, with --task "
                                               "dfkd runs/dfkd-<scenario>-<date>-<time>)")
    p.add_argument("--dry-run", action="store_true", help="print the cells, their status and predicted time")
    p.add_argument("--list", nargs="?", const=True, default=None, metavar="NAME",
                   help="print scenarios, methods, models and profiles; with a NAME, that one in full")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]KEY=VALUE", dest="settings",
                   help="override a method hyper-parameter (JSON value), e.g. --set pass+rgal.triplet_sampler=random "
                        "or --set triplet_weight=0.2 for every selected method that has it (see --list)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from benchmark.executor import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default="sequential",
                   help="how cells run: one after another in this process (default), or local: --workers processes "
                        "on this machine, each with cores/N threads (cells sharing a phase 0 or teacher run in one "
                        "worker, in order)")
    p.add_argument("--workers", type=_count(1), default=None,
                   help="worker processes of --executor local (default: 2)")
    p.add_argument("--log", nargs="+", action="extend", default=[], metavar="LOGGER",
                   help="experiment loggers per cell, any of tensorboard wandb csv (files in the cell folder: tb/, "
                        "wandb/ (offline unless WANDB_MODE or an API key says otherwise), log.csv): every loss "
                        "term, the learning rate, accuracy after each phase / epoch; never part of a cell's key")
    g = p.add_argument_group("data-free distillation (--task dfkd)")
    g.add_argument("--teacher", help="teacher model (default: the scenario's pair in the profile; see --list)")
    g.add_argument("--student", help="student model (default: the scenario's pair in the profile)")
    g.add_argument("--teacher-checkpoint", help="a state_dict of --teacher to distil instead of the suite's cached one")
    g.add_argument("--rgal-variant", choices=["paper", "released"], default=None,
                   help="RGAL generator loss: the paper's reversed triplet L_ntri (default) or the released code's "
                        "unswapped triplet (row rgal[released])")
    p.add_argument("--config", metavar="FILE",
                   help="a YAML or JSON file of flags and --set values (`set: {pass+rgal.rgal_steps: 20}`); flags "
                        "typed on the command line override it (configs/ holds the sweeps behind results/)")
    p.add_argument("--dump-config", action="store_true",
                   help="print this command's resolved configuration as a --config file, and stop")
    from benchmark.config_file import expand_config

    args = p.parse_args(expand_config(argv, {a.dest: a for a in p._actions}))
    for name in ("scenario", "phases", "methods", "seeds"):  # a name given twice is one cell, not two
        if getattr(args, name):
            setattr(args, name, list(dict.fromkeys(getattr(args, name))))
    args.defaults = {a.dest: a.default for a in p._actions}
    return args


def parse_settings(settings: list[str], methods: list[str], registry=None) -> dict[str, dict]:
    """``[METHOD.]KEY=VALUE`` strings -> {method: {key: value}}, checked against each method's defaults."""
    import json

    from benchmark.errors import BenchError
    from benchmark.methods import METHODS

    METHODS = registry or METHODS  # noqa: N806

    out: dict[str, dict] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--set {item!r}: expected [METHOD.]KEY=VALUE, e.g. --set pass+rgal.triplet_weight=0.2")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        method, dot, name = key.rpartition(".")
        if dot and not (method and name):
            raise BenchError(f"--set {item!r}: {'the method before' if not method else 'the parameter after'} '.' "
                             f"is missing; write METHOD.KEY=VALUE or KEY=VALUE")
        targets = [method] if method else methods
        if method and method not in methods:
            raise BenchError(f"--set {item!r}: method {method!r} is not among --methods ({' '.join(methods)})")
        hit = [m for m in targets if name in METHODS.entry(m).extra["defaults"]]
        if not hit:
            known = sorted({k for m in targets for k in METHODS.entry(m).extra["defaults"]})
            which = f"{method} has no" if method else "no selected method has a"
            raise BenchError(f"--set {item!r}: {which} parameter {name!r}; known: {', '.join(known) or '(none)'}")
        for m in hit:
            extra = METHODS.entry(m).extra
            default, allowed = extra["defaults"][name], extra.get("choices", {}).get(name)
            if allowed is not None and value not in allowed:
                raise BenchError(f"--set {item!r}: {name} must be one of {', '.join(map(str, allowed))}")
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            if default is not None and (isinstance(default, bool) != isinstance(value, bool)
                                        or (numeric and not isinstance(value, (int, float)))
                                        or (isinstance(default, str) and not isinstance(value, str))):
                kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
                    type(default), f"a {type(default).__name__}")
                raise BenchError(f"--set {item!r}: {name} takes {kind} like {json.dumps(default)}")
            # a parameter whose default is null is an optional count (proto_samples, memory_total): null or >= 1
            if default is None and value is not None and (type(value) is not int or value < 1):
                raise BenchError(f"--set {item!r}: {name} takes null (the method's own choice) or a whole number "
                                 f">= 1, like 64")
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if number and not (math.isfinite(value) and value >= 0):  # no parameter of the suite is negative
                like = f", like {json.dumps(default)}" if default is not None else ""
                raise BenchError(f"--set {item!r}: {name} must be a finite number >= 0{like}")
            # --set w=1 is the same cell as the default 1.0; an integer parameter takes whole numbers only
            coerced = float(value) if isinstance(default, float) and type(value) is int else value
            if type(default) is int and type(value) is float:
                if not value.is_integer():
                    raise BenchError(f"--set {item!r}: {name} takes an integer like {default}")
                coerced = int(value)
            out.setdefault(m, {})[name] = coerced
    return out


def _wrapped(text: str, indent: int = 19, width: int = 118) -> str:
    import textwrap

    return textwrap.fill(text, width, initial_indent=" " * indent, subsequent_indent=" " * indent,
                         break_on_hyphens=False)


def _set_line(defaults: dict) -> str:
    """The ``--list`` lines showing a method's parameters as ``--set`` would take them (defaults as JSON values),
    wrapped to the terminal's usual width."""
    import json

    return _wrapped("--set " + " ".join(f"{k}={json.dumps(v)}" for k, v in defaults.items()))


def load_all_methods() -> None:
    """Registers every method: this repository's packages (imported here, the top layer, so that a bare checkout
    works without installing) and any other package of the ``rgal_bench.methods`` entry points."""
    import baselines  # noqa: F401
    import strategies  # noqa: F401
    import strategies.dfkd  # noqa: F401
    from benchmark.registry import load_methods

    load_methods()


def _registries():
    load_all_methods()
    from benchmark.dfkd_methods import DFKD_METHODS
    from benchmark.methods import METHODS
    from benchmark.models import MODELS
    from benchmark.profiles import PROFILES
    from benchmark.scenarios import SCENARIOS

    return {"scenario": SCENARIOS, "method (cil)": METHODS, "method (dfkd, --task dfkd)": DFKD_METHODS,
            "model": MODELS, "profile": PROFILES}


def print_one(name: str) -> None:
    """``--list NAME``: everything the suite knows of one scenario, method, model or profile, a parameter a line."""
    import json

    from benchmark.errors import BenchError

    found = [(kind, reg.entry(name)) for kind, reg in _registries().items() if name in reg]
    if not found:
        raise BenchError(f"--list {name}: no scenario, method, model or profile of that name; `--list` shows them "
                         f"all")
    for kind, e in found:
        print(f"{name} ({kind})")
        print(_wrapped(e.description, 2))
        extra = e.extra
        if "published" in extra:
            pub = extra["published"]
            pub = ", ".join(f"{k}: {v}" for k, v in pub.items() if v) if isinstance(pub, dict) else pub
            print(f"  published as: {pub or '- (no published row)'}")
        if "rows" in extra:
            print(f"  rows: {', '.join(extra['rows'])}; memory: {extra['memory']}")
        if extra.get("defaults"):
            print(f"  hyper-parameters (--set {name}.KEY=VALUE, JSON values), defaults:")
            for k, v in extra["defaults"].items():
                print(f"    {k} = {json.dumps(v)}")
            if kind == "method (cil)":
                _print_profile_overrides(name, extra["defaults"])


def _print_profile_overrides(name: str, defaults: dict) -> None:
    """The values the class-incremental profiles set instead of the defaults (``Profile.method_params``)."""
    import json

    from benchmark.profiles import PROFILES

    for e in PROFILES.entries():
        prof = PROFILES.get(e.name)
        over = {k: v for k, v in prof.method_params.get("*", {}).items() if k in defaults}
        over.update(prof.method_params.get(name, {}))
        if over:
            print(f"  profile {e.name} sets: " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in over.items()))


def print_list():
    from benchmark.dfkd_profiles import dfkd_profile, dfkd_scenarios

    regs = _registries()
    print("scenarios:")
    for e in regs["scenario"].entries():
        print(f"  {e.name:16s} {e.description}")
    print("methods (cil):               [name in published.csv] rows / memory   (--list NAME: one of them in full)")
    for e in regs["method (cil)"].entries():
        pub = e.extra["published"]
        pub = ", ".join(v for v in pub.values() if v) if isinstance(pub, dict) else pub  # rows without one: none
        print(f"  {e.name:16s} [{pub or '-'}] rows {', '.join(e.extra['rows'])}; memory {e.extra['memory']}")
        print(_wrapped(e.description))
        if e.extra["defaults"]:
            print(_set_line(e.extra["defaults"]))
    print("methods (dfkd, --task dfkd):  [name in published.csv]")
    for e in regs["method (dfkd, --task dfkd)"].entries():
        print(f"  {e.name:16s} [{e.extra['published'] or '-'}]{' reference row' if e.extra['reference'] else ''}")
        print(_wrapped(e.description))
        if e.extra["defaults"]:
            print(_set_line(e.extra["defaults"]))
    print("dfkd default pairs (teacher -> student) per profile:")
    for sc in dfkd_scenarios():
        pairs = []
        for prof in ("paper", "cpu", "mini", "smoke"):
            try:
                pr = dfkd_profile(prof, sc)
                pairs.append(f"{prof} {pr.teacher} -> {pr.student}")
            except Exception:  # noqa: BLE001 - a profile without this scenario
                pass
        print(f"  {sc}")
        print(_wrapped("; ".join(pairs)))
    print("models:")
    for e in regs["model"].entries():
        print(f"  {e.name:16s} {e.description}")
    print("profiles:")
    for e in regs["profile"].entries():
        print(f"  {e.name}")
        print(_wrapped(e.description))


def parse_report_args(argv):
    p = _Parser(prog="run_benchmark.py report",
                                description="Tables and plots from the result.json files below one or more folders.")
    p.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="result folders (made by --out)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default DIR/report; required with several DIRs: a merged report, a cell "
                        "present in two folders counted once)")
    return p.parse_args(argv)


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
    from benchmark.report_writer import collect_results, write_reports
    from benchmark.reports import summary_table

    cil, dfkd = collect_results(args.folders)
    paths = write_reports(args.folders, args.out, collected=(cil, dfkd))
    if cil:
        print(summary_table(cil))
    if dfkd:
        print(dfkd_summary_table(dfkd))
    print_written(paths)
    return 0


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


def execute(args, jobs, threads, out, on_outcome, summary_table) -> int:
    """Runs ``jobs`` through the chosen executor, then prints the summary of the finished cells and writes the
    report (both tasks); returns the sweep's exit status."""
    from benchmark.executor import make_executor
    from benchmark.report_writer import write_reports

    executor = make_executor(args.executor, workers(args), threads, load_all_methods)
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


def run(args) -> int:
    if args.dump_config:
        from benchmark.config_file import dump_config

        print(dump_config(args, args.defaults), end="")
        return 0
    load_all_methods()
    from benchmark.errors import BenchError
    from benchmark.precision import emulation_note, resolve_precision
    from benchmark.executor import CellJob
    from benchmark.run_logging import check_loggers
    from benchmark.runner import CellRun, command_line, make_cells, predicted_seconds, resolve_device
    from benchmark.store import default_cache_dir

    if args.list:
        print_list() if args.list is True else print_one(args.list)
        return 0
    if args.task == "dfkd":
        for flag in ("phases", "model", "class_order_seed", "memory_total", "base_classes", "spread_remaining",
                     "inc_epochs", "per_class"):
            if getattr(args, flag) not in (None, False):
                hint = " (data-free runs choose models with --teacher and --student)" if flag == "model" else ""
                raise BenchError(f"--{flag.replace('_', '-')} belongs to class-incremental runs; drop it or drop "
                                 f"--task dfkd{hint}")
        return run_dfkd(args)
    for flag in ("teacher", "student", "teacher_checkpoint", "rgal_variant"):
        if getattr(args, flag) is not None:
            raise BenchError(f"--{flag.replace('_', '-')} belongs to --task dfkd; add --task dfkd or drop it")
    scenarios = args.scenario or ["cifar100-mini"]
    profile = args.profile or ("mini" if scenarios == ["cifar100-mini"] else "cpu")
    methods = args.methods or DEFAULT_METHODS
    device = resolve_device(args.device)
    if args.memory_total is not None:
        from benchmark.methods import METHODS

        kept = [m for m in methods if m in METHODS and "memory_total" in METHODS.entry(m).extra["defaults"]]
        if not kept and all(m in METHODS for m in methods):  # an unknown method gets its own error below
            raise BenchError(f"--memory-total sets the exemplar budget, and none of --methods ({' '.join(methods)}) "
                             "keeps exemplars; add icarl, ucir or eeil, or drop the flag")
    order_seed = 1993 if args.class_order_seed is None else args.class_order_seed
    threads = plan_threads(args, device.type)  # before the cells: a CPU cell's key holds its thread count
    cells = make_cells(scenarios=scenarios, phases=args.phases or [10], methods=methods, seeds=args.seeds,
                       profile=profile, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       inc_epochs=args.inc_epochs, class_order_seed=order_seed, data_root=args.data_root,
                       spread_remaining=args.spread_remaining, base_classes=args.base_classes, model=args.model,
                       memory_total=args.memory_total, device_type=device.type,
                       method_params=parse_settings(args.settings, methods), precision=args.precision,
                       per_class=args.per_class, deterministic=args.deterministic)
    note = emulation_note(args.precision and resolve_precision(args.precision, device.type), device.type)
    if note:
        print(note)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/{'+'.join(scenarios)}-{stamp}")
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
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
        from benchmark.cells import phase0_key
        from benchmark.methods import METHODS, full_params

        total, planned, unit_of, unit_sec = 0.0, set(), unit_index(jobs), {}
        print(f"{'cell':40s} {'folder':55s} {unit_column(args, 'unit')}{'status':22s} {'time left':>10s}  "
              f"phase-0 model (shared by "
              f"a family)")
        for c in cells:
            r = runs[c.key]
            st = r.status()
            p0_sec, rest_sec = predicted_seconds(c.config)
            fam = METHODS.get(c.config["method"]).phase0_family_for(
                full_params(c.config["method"], c.config["method_params"]))
            p0 = ""
            done = (r.checkpoint_state() or {}).get("phases_done", 0) if st == "partial" else 0
            if fam:
                key = phase0_key(c.config, fam)
                if r.phase0_cache_path(fam).is_file() or key in planned:
                    p0, p0_sec = "phase-0 cache: hit" + ("" if r.phase0_cache_path(fam).is_file() else
                                                          " (filled by an earlier cell)"), 0.0
                elif st != "finished" and not done and (src := r.carried_phase0(fam)) is not None:
                    p0, p0_sec = f"phase-0 cache: miss (restored from {src.parent.name}/{src.name}, no training)", 0.0
                else:
                    p0 = f"phase-0 cache: miss ({fam})"
                if st != "finished":  # a finished cell trains nothing, so it fills no cache
                    planned.add(key)
            n_phases = len(c.config["phase_sizes"])
            if st == "partial":  # what is left: phase 0 unless done, and the later phases not yet done
                p0_sec = 0.0 if done else p0_sec
                rest_sec *= (n_phases - max(done, 1)) / max(n_phases - 1, 1)
                st = f"partial {done}/{n_phases} phases"
            sec = 0.0 if st == "finished" else p0_sec + rest_sec
            total += sec
            unit_sec[unit_of[c.key]] = unit_sec.get(unit_of[c.key], 0.0) + sec
            print(f"{c.label:40s} {c.dirname:55s} {unit_column(args, unit_of[c.key])}{st:22s} ~{sec / 60:6.1f} min "
                  f"{p0}")
        print(f"{plural(len(cells), 'cell')}, predicted {total / 60:.1f} min (2-core CPU throughput figures; a GPU "
              f"is faster){executor_line(args, unit_sec, unit_of)}")
        return 0
    from benchmark.store import check_writable

    check_writable(out)
    check_writable(cache, "--cache-dir")
    print(f"{plural(len(cells), 'cell')} -> {out}  (profile {profile}, device {device}{workers_text(args, threads)})")
    from benchmark.reports import summary_table

    return execute(args, jobs, threads, out, report_outcome, summary_table)


def run_dfkd(args) -> int:
    load_all_methods()
    from benchmark.precision import emulation_note, resolve_precision
    from tqdm.auto import tqdm

    from benchmark.dfkd_runner import (DFKDCellRun, make_dfkd_cells, predicted_dfkd_seconds,
                                       predicted_teacher_seconds, rounds_per_epoch, throughput_line)
    from benchmark.errors import BenchError
    from benchmark.executor import CellJob
    from benchmark.run_logging import check_loggers
    from benchmark.runner import command_line, resolve_device
    from benchmark.store import default_cache_dir
    from benchmark.dfkd_methods import DFKD_METHODS

    scenarios = args.scenario or ["mnist"]
    profile = args.profile or "cpu"
    methods = args.methods or DEFAULT_DFKD_METHODS
    settings = list(args.settings)
    for m in methods:
        DFKD_METHODS.entry(m)  # an unknown name: its own error before any flag refers to the list
    if args.rgal_variant:
        if "rgal" not in methods:
            raise BenchError(f"--rgal-variant applies to rgal, which is not among --methods ({' '.join(methods)}); "
                             "add rgal or drop the flag")
        settings.append(f"rgal.variant={args.rgal_variant}")
    device = resolve_device(args.device)
    threads = plan_threads(args, device.type)  # before the cells: a CPU cell's key holds its thread count
    cells = make_dfkd_cells(scenarios=scenarios, methods=methods, seeds=args.seeds, profile=profile,
                            teacher=args.teacher, student=args.student, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, data_root=args.data_root,
                            device_type=device.type, method_params=parse_settings(settings, methods, DFKD_METHODS),
                            teacher_checkpoint=args.teacher_checkpoint, precision=args.precision,
                            deterministic=args.deterministic)
    note = emulation_note(args.precision and resolve_precision(args.precision, device.type), device.type)
    if note:
        print(note)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/dfkd-{'+'.join(scenarios)}-{stamp}")
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    loggers = check_loggers(args.log)
    runs = {c.key: DFKDCellRun(c, out, cache, device, args.data_root, not args.no_progress, command_line(),
                               args.teacher_checkpoint, loggers) for c in cells}
    jobs = [CellJob(c.config, str(out), str(cache), args.data_root, str(device), command_line(),
                    not args.no_progress, loggers, args.teacher_checkpoint) for c in cells]
    if args.dry_run:
        total, teachers, unit_of, unit_sec = 0.0, set(), unit_index(jobs), {}
        print(f"{'method':14s} {'scenario':9s} {'teacher->student':24s} {'seed':4s}  {'folder':50s} "
              f"{unit_column(args, 'unit')}"
              f"{'status':18s} {'time left':>10s}  teacher")
        for c in cells:
            cfg, r = c.config, runs[c.key]
            st = r.status()
            sec = 0.0 if st == "finished" else predicted_dfkd_seconds(cfg, r.test_images())
            if st == "partial":  # the epochs (and rounds of the current one) not yet done
                ck, epochs = r.checkpoint_state() or {}, cfg["distill"]["epochs"]
                done = ck.get("epoch", 0) + ck.get("round", 0) / rounds_per_epoch(cfg)
                sec *= max(0.0, 1 - done / epochs)
                st = f"partial {ck.get('epoch', 0)}/{epochs} epochs"
            if args.teacher_checkpoint:
                teacher = "teacher: --teacher-checkpoint"
            elif r.teacher_cache_path().is_file():
                teacher = "teacher cache: hit"
            elif (src := r.carried_teacher()) is not None:
                teacher = f"teacher cache: miss (restored from {src.parent.name}/{src.name}, no training)"
            elif st == "finished" or r.teacher_cache_path() in teachers:
                teacher = "teacher cache: miss (trained by the first cell needing it)"
            else:  # this cell trains the teacher: its time counts here, once
                teachers.add(r.teacher_cache_path())
                t_sec = predicted_teacher_seconds(cfg, r.train_images())
                sec += t_sec
                teacher = f"teacher cache: miss (this cell trains it, ~{t_sec / 60:.1f} min of the estimate)"
            total += sec
            unit_sec[unit_of[c.key]] = unit_sec.get(unit_of[c.key], 0.0) + sec
            pair = f"{cfg['teacher']}->{cfg['student']}"
            print(f"{cfg['method']:14s} {cfg['scenario']:9s} {pair:24s} {cfg['seed']:<4d}  {r.dir.name:50s} "
                  f"{unit_column(args, unit_of[c.key])}{st:18s} ~{sec / 60:6.1f} min  {teacher}")
        print(f"{plural(len(cells), 'cell')}, predicted {total / 60:.1f} min, teacher training on a cache miss "
              f"included (rough 2-core CPU estimate){executor_line(args, unit_sec, unit_of)}")
        return 0
    from benchmark.store import check_writable

    check_writable(out)
    check_writable(cache, "--cache-dir")
    print(f"{plural(len(cells), 'distillation cell')} -> {out}  (profile {profile}, device {device}"
          f"{workers_text(args, threads)})")

    def on_outcome(o):  # each cell's throughput is printed as it finishes: a later failure does not hide it
        if o.status == "finished":
            tqdm.write(throughput_line(o.result))
        report_outcome(o)

    from benchmark.dfkd_reports import dfkd_summary_table

    return execute(args, jobs, threads, out, on_outcome, dfkd_summary_table)


if __name__ == "__main__":
    sys.exit(main())
