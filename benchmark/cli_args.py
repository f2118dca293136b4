"""The command line's arguments: the parser of a run (``parse_args``: every flag, ``--config`` files expanded before
the typed flags) and of ``report`` (``parse_report_args``), with the suite's one-line errors (CONVENTIONS.md)
instead of argparse's usage block.  The CLI (``run_benchmark.py``) passes its default method lists in, so that the
framework names no method.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path


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


def parse_args(argv, default_methods: list[str], default_dfkd_methods: list[str], doc: str):
    """``doc``: the CLI's docstring (its first line describes the command, the rest are the examples)."""
    p = _Parser(prog="run_benchmark.py", description=doc.split("\n")[0],
                epilog="examples:\n" + doc.split("\n\n", 1)[1].rstrip().rstrip('"') +
                       "\n\nREADME.md (Usage) lists every flag; `run_benchmark.py report --help` the report command.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    _cells_args(p, default_methods, default_dfkd_methods)
    _recipe_args(p)
    _run_args(p)
    _dfkd_args(p)
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


def _cells_args(p, default_methods: list[str], default_dfkd_methods: list[str]) -> None:
    """Which cells: task, scenarios, phases, methods, seeds, profile."""
    p.add_argument("--task", choices=["cil", "dfkd", "dfq"], default="cil",
                   help="cil: class-incremental learning (default); dfkd: data-free knowledge distillation; dfq: "
                        "data-free quantization")
    p.add_argument("--scenario", nargs="+", default=None,
                   help="scenario name(s) (see --list); default cifar100-mini, with --task dfkd mnist, with --task "
                        "dfq cifar100")
    p.add_argument("--phases", nargs="+", type=_count(0), default=None,
                   help="incremental phases after phase 0 (5 10 20; default 10; 0: phase 0 alone)")
    p.add_argument("--methods", "--strategies", nargs="+", default=None, dest="methods",
                   help=f"methods (see --list); default {' '.join(default_methods)}, with --task dfkd "
                        f"{' '.join(default_dfkd_methods)}, with --task dfq Table 12's (teacher gdfq gdfq+rgal "
                        f"intraq intraq+rgal; on imagenet Table 13's: teacher intraq intraq+rgal-g intraq+rgal)")
    p.add_argument("--seeds", nargs="+", type=_count(0), default=[0], help="training seeds (default 0)")
    p.add_argument("--profile", default=None, help="paper | cpu | mini | smoke (default: mini for cifar100-mini, "
                                                   "else cpu)")


def _recipe_args(p) -> None:
    """Overrides of the profile's recipe and of the protocol."""
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


def _run_args(p) -> None:
    """Where data, caches and results live, and how the sweep runs and reports."""
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
                   help="how cells run: one after another in this process (default); local: --workers processes on "
                        "this machine, each with cores/N threads; ray: one Ray task per unit of work (pip install -e "
                        ".[ray]); slurm: one SLURM array job per unit (pip install -e .[slurm]). Cells sharing a "
                        "phase 0 or teacher form one unit and run in order")
    p.add_argument("--workers", type=_count(1), default=None,
                   help="--executor local: worker processes (default 2); ray / slurm: the most units running at once "
                        "(default: as many as the cluster runs)")
    p.add_argument("--cpus-per-cell", type=_count(1), default=None,
                   help="ray / slurm: CPUs of each task or job, and the torch threads its cells run at (default 2, "
                        "the thread count of the committed CPU cells, which a CPU cell's key names)")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="ray: a running cluster (auto: the one `ray start` made on this node); default: start a "
                        "local Ray instance for the sweep")
    p.add_argument("--slurm-partition", default=None, help="slurm: the partition to submit to")
    p.add_argument("--slurm-time", type=_count(1), default=None, metavar="MINUTES",
                   help="slurm: each job's time limit (default: the --dry-run estimate of the longest unit x 1.5, "
                        "at least 10)")
    p.add_argument("--slurm-gpus", type=_count(0), default=None,
                   help="slurm: GPUs per job (default 1 with --device cuda, else 0)")
    p.add_argument("--slurm-cluster", choices=["slurm", "local"], default=None,
                   help="slurm: submit to SLURM (default when sbatch is found) or run the same jobs as local "
                        "subprocesses through submitit's local executor, to try a set-up on one machine")
    p.add_argument("--log", nargs="+", action="extend", default=[], metavar="LOGGER",
                   help="experiment loggers per cell, any of tensorboard wandb csv (files in the cell folder: tb/, "
                        "wandb/ (offline unless WANDB_MODE or an API key says otherwise), log.csv): every loss "
                        "term, the learning rate, accuracy after each phase / epoch; never part of a cell's key")


def _dfkd_args(p) -> None:
    g = p.add_argument_group("data-free distillation (--task dfkd) and quantization (--task dfq)")
    g.add_argument("--teacher", help="teacher model (default: the scenario's in the profile; see --list)")
    g.add_argument("--student", help="student model (--task dfkd; default: the scenario's pair in the profile)")
    g.add_argument("--teacher-checkpoint", help="a state_dict of --teacher to distil or quantize instead of the "
                                                "suite's cached one")
    g.add_argument("--bits", nargs="+", default=None, metavar="W[xA]",
                   help="--task dfq: bit-widths of weights and activations, 2 to 8, e.g. 4 3 (W4A4 and W3A3, the "
                        "default) or 4x8")
    g.add_argument("--rgal-variant", choices=["paper", "released"], default=None,
                   help="RGAL generator loss: the paper's reversed triplet L_ntri (default) or the released code's "
                        "unswapped triplet (row rgal[released])")


def parse_report_args(argv):
    p = _Parser(prog="run_benchmark.py report",
                                description="Tables and plots from the result.json files below one or more folders.")
    p.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="result folders (made by --out)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default DIR/report; required with several DIRs: a merged report, a cell "
                        "present in two folders counted once)")
    return p.parse_args(argv)
