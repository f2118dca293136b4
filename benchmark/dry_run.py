"""``--dry-run``: the plan of every cell (``benchmark.plan``) as a table -- status, predicted time left, the shared
phase 0 or teacher it loads or trains, its unit of work under an executor other than ``sequential`` -- and the sweep's total.
"""
from __future__ import annotations

from benchmark.cli_args import plural
from benchmark.sweep import executor_line, unit_column, unit_index


def cil_plans(cells, runs) -> list:
    """The plan of each class-incremental cell (``benchmark.plan.plan_cil``) with the suite's cost model."""
    from benchmark.cil_estimates import predicted_seconds
    from benchmark.methods import METHODS, full_params
    from benchmark.plan import plan_cil

    def family_of(cfg):
        return METHODS.get(cfg["method"]).phase0_family_for(full_params(cfg["method"], cfg["method_params"]))

    return plan_cil(cells, runs, predicted_seconds, family_of)


def dfkd_plans(cells, runs) -> list:
    """The plan of each distillation cell (``benchmark.plan.plan_dfkd``) with the suite's cost model."""
    from benchmark.dfkd_estimates import predicted_dfkd_seconds, predicted_teacher_seconds, rounds_per_epoch
    from benchmark.plan import plan_dfkd

    return plan_dfkd(cells, runs, predicted_dfkd_seconds, predicted_teacher_seconds, rounds_per_epoch)


def dfq_plans(cells, runs) -> list:
    """The plan of each quantization cell (``benchmark.plan.plan_dfkd``) with the quantization cost model."""
    from benchmark.dfkd_estimates import predicted_teacher_seconds
    from benchmark.dfq_estimates import predicted_dfq_seconds
    from benchmark.plan import plan_dfkd

    return plan_dfkd(cells, runs, predicted_dfq_seconds, predicted_teacher_seconds,
                     lambda cfg: cfg["quant"]["ep_steps"], recipe="quant", shared_set=True)


def print_cil_plan(args, cells, runs, jobs) -> int:
    """``--dry-run`` of a class-incremental sweep: one line per cell."""
    plans = cil_plans(cells, runs)
    unit_of = unit_index(jobs)
    print(f"{'cell':40s} {'folder':55s} {unit_column(args, 'unit')}{'status':22s} {'time left':>10s}  "
          f"phase-0 model (shared by a family)")
    for c, p in zip(cells, plans):
        print(f"{c.label:40s} {c.dirname:55s} {unit_column(args, unit_of[c.key])}{p.status:22s} "
              f"~{p.seconds / 60:6.1f} min {p.shared}")
    print(f"{plural(len(cells), 'cell')}, predicted {sum(p.seconds for p in plans) / 60:.1f} min (2-core CPU "
          f"throughput figures; a GPU is faster){executor_line(args, _unit_seconds(plans, unit_of), unit_of)}")
    return 0


def print_dfkd_plan(args, cells, runs, jobs) -> int:
    """``--dry-run`` of a distillation sweep: one line per cell."""
    plans = dfkd_plans(cells, runs)
    unit_of = unit_index(jobs)
    print(f"{'method':14s} {'scenario':9s} {'teacher->student':24s} {'seed':4s}  {'folder':50s} "
          f"{unit_column(args, 'unit')}{'status':18s} {'time left':>10s}  teacher")
    for c, p in zip(cells, plans):
        cfg = c.config
        pair = f"{cfg['teacher']}->{cfg['student']}"
        print(f"{cfg['method']:14s} {cfg['scenario']:9s} {pair:24s} {cfg['seed']:<4d}  {runs[c.key].dir.name:50s} "
              f"{unit_column(args, unit_of[c.key])}{p.status:18s} ~{p.seconds / 60:6.1f} min  {p.shared}")
    executor = executor_line(args, _unit_seconds(plans, unit_of), unit_of)
    print(f"{plural(len(cells), 'cell')}, predicted {sum(p.seconds for p in plans) / 60:.1f} min, teacher training "
          f"on a cache miss included (rough 2-core CPU estimate){executor}")
    return 0


def _unit_seconds(plans, unit_of: dict) -> dict:
    out: dict = {}
    for p in plans:
        out[unit_of[p.key]] = out.get(unit_of[p.key], 0.0) + p.seconds
    return out


def print_dfq_plan(args, cells, runs, jobs) -> int:
    """``--dry-run`` of a quantization sweep: one line per cell."""
    from benchmark.dfq_runner import bits_label

    plans = dfq_plans(cells, runs)
    unit_of = unit_index(jobs)
    wm = max([12] + [len(c.config["method"]) for c in cells])
    wt = max([9] + [len(c.config["teacher"]) for c in cells])
    print(f"{'method':{wm}s} {'scenario':9s} {'bits':6s} {'teacher':{wt}s} {'seed':4s}  {'folder':50s} "
          f"{unit_column(args, 'unit')}{'status':18s} {'time left':>10s}  teacher")
    for c, p in zip(cells, plans):
        cfg = c.config
        print(f"{cfg['method']:{wm}s} {cfg['scenario']:9s} {bits_label(cfg):6s} {cfg['teacher']:{wt}s} "
              f"{cfg['seed']:<4d}  {runs[c.key].dir.name:50s} {unit_column(args, unit_of[c.key])}{p.status:18s} "
              f"~{p.seconds / 60:6.1f} min  {p.shared}")
    executor = executor_line(args, _unit_seconds(plans, unit_of), unit_of)
    print(f"{plural(len(cells), 'cell')}, predicted {sum(p.seconds for p in plans) / 60:.1f} min, teacher training "
          f"on a cache miss included (rough 2-core CPU estimate){executor}")
    return 0
