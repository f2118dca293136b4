"""The plan of a sweep: one ``CellPlan`` per cell -- its status, the shared model it loads or trains (phase 0 of its
family, a distillation teacher) and its predicted seconds -- which ``--dry-run`` prints, and the one rule for where a
shared phase 0 comes from (``phase0_source``), which both the plan and the runner (``CellRun._train_phase``) follow.

Where a cell's phase 0 comes from, in order: the shared cache (``<cache>/phase0/<key>.pt``); a ``phase0.pt`` carried
by a cell of the same ``--out`` folder or of a shared results folder (``store.shared_model_roots``: the committed
``results/``, ``$BENCH_SHARED_MODELS``), restored into the cache without training; otherwise it is trained and stored.
A sweep's plan also counts the cells before it: the first cell of a family that trains phase 0 fills the cache for
the others ("filled by an earlier cell"), and its time is counted once.  Distillation teachers follow the same
order (``--teacher-checkpoint``, cache, carried ``teacher.pt``, trained by the first cell that needs it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark import store
from benchmark.cells import phase0_key


@dataclass
class CellPlan:
    key: str
    status: str  # "new", "finished", "partial 3/10 phases", "partial 2/40 epochs"
    seconds: float  # predicted seconds still to run (0 when finished)
    shared: str  # what the cell does for its shared model (phase 0, teacher), as --dry-run says it


def phase0_source(run, family: str) -> tuple[str, Path | None]:
    """Where ``run``'s phase 0 of ``family`` comes from now: ``("cache", path)``, ``("carried", path)`` or
    ``("train", None)``; a corrupt copy beside the cell is a one-line error (``CellRun.carried_phase0``)."""
    cache = run.phase0_cache_path(family)
    if cache.is_file():
        return "cache", cache
    carried = run.carried_phase0(family)
    return ("carried", carried) if carried is not None else ("train", None)


def plan_cil(cells, runs: dict, predicted_seconds, family_of) -> list[CellPlan]:
    """Class-incremental cells in sweep order.  ``runs``: cell key -> ``CellRun``; ``predicted_seconds(config)`` ->
    (phase-0 seconds, later phases' seconds); ``family_of(config)`` -> the phase-0 family or None."""
    plans, planned = [], set()
    for c in cells:
        r = runs[c.key]
        st = r.status()
        p0_sec, rest_sec = predicted_seconds(c.config)
        done = (r.checkpoint_state() or {}).get("phases_done", 0) if st == "partial" else 0
        shared, p0_sec = _phase0_line(r, c.config, family_of(c.config), st, done, planned, p0_sec)
        n_phases = len(c.config["phase_sizes"])
        if st == "partial":  # what is left: phase 0 unless done, and the later phases not yet done
            p0_sec = 0.0 if done else p0_sec
            rest_sec *= (n_phases - max(done, 1)) / max(n_phases - 1, 1)
            st = f"partial {done}/{n_phases} phases"
        plans.append(CellPlan(c.key, st, 0.0 if st == "finished" else p0_sec + rest_sec, shared))
    return plans


def _phase0_line(r, config: dict, fam: str | None, status: str, done: int, planned: set, p0_sec: float):
    """The dry-run's phase-0 column and the phase-0 seconds this cell still spends (0 when it loads it)."""
    if not fam:
        return "", p0_sec
    key = phase0_key(config, fam)
    cached = r.phase0_cache_path(fam).is_file()
    if cached or key in planned:
        line, p0_sec = "phase-0 cache: hit" + ("" if cached else " (filled by an earlier cell)"), 0.0
    elif status != "finished" and not done and (src := phase0_source(r, fam))[0] == "carried":
        line, p0_sec = f"phase-0 cache: miss (restored from {store.describe(src[1])}, no training)", 0.0
    else:
        line = f"phase-0 cache: miss ({fam})"
    if status != "finished":  # a finished cell trains nothing, so it fills no cache
        planned.add(key)
    return line, p0_sec


def plan_dfkd(cells, runs: dict, predicted_seconds, predicted_teacher_seconds,
              rounds_per_epoch, recipe: str = "distill", shared_set: bool = False) -> list[CellPlan]:
    """Distillation (and quantization) cells in sweep order (``runs``: cell key -> ``DFKDCellRun`` /
    ``DFQCellRun``; the predictors of the task's estimates module; ``recipe``: the configuration entry holding the
    epochs); a teacher's training time counts in the first cell that needs it.  ``shared_set`` (quantization): a
    cell whose shareable image set (``artefact_path``) is in the cache, or made by an earlier cell of the sweep, is
    predicted with ``set_ready=True``."""
    plans, teachers, sets = [], set(), set()
    for c in cells:
        cfg, r = c.config, runs[c.key]
        st = r.status()
        kw = {}
        if shared_set:
            art = r.artefact_path()
            kw["set_ready"] = art is not None and (art.is_file() or art in sets)
            if art is not None and st != "finished":
                sets.add(art)
        sec = 0.0 if st == "finished" else predicted_seconds(cfg, r.test_images(), **kw)
        if st == "partial":  # the epochs (and rounds of the current one) not yet done
            ck, epochs = r.checkpoint_state() or {}, cfg[recipe]["epochs"]
            done = ck.get("epoch", 0) + ck.get("round", 0) / rounds_per_epoch(cfg)
            sec *= max(0.0, 1 - done / epochs)
            st = f"partial {ck.get('epoch', 0)}/{epochs} epochs"
        source, src = r.teacher_source()
        if source == "checkpoint":
            teacher = "teacher: --teacher-checkpoint"
        elif source == "cache":
            teacher = "teacher cache: hit"
        elif source == "carried":
            teacher = f"teacher cache: miss (restored from {store.describe(src)}, no training)"
        elif st == "finished" or r.teacher_cache_path() in teachers:
            teacher = "teacher cache: miss (trained by the first cell needing it)"
        else:  # this cell trains the teacher: its time counts here, once
            teachers.add(r.teacher_cache_path())
            t_sec = predicted_teacher_seconds(cfg, r.train_images())
            sec += t_sec
            teacher = f"teacher cache: miss (this cell trains it, ~{t_sec / 60:.1f} min of the estimate)"
        plans.append(CellPlan(c.key, st, sec, teacher))
    return plans
