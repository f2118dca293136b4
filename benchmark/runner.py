"""Class-incremental cells: resolve the CLI request into cells, and run one cell with checkpoints and resume.

Flow of ``run_cil_cell``: load scenario -> build model and method -> restore checkpoint if any -> for each phase:
(phase 0 of a shared family: load the cached phase-0 model if present, else the ``phase0.pt`` a cell of the same
``--out`` folder carries, see ``PHASE0_FILE``) train, evaluate every classifier, save the state atomically -> write
``result.json``.  Every phase starts from a seed derived from (seed, phase), so a cached
phase 0 and a trained one lead to the same later phases, and a resumed run ends with the same numbers as an
uninterrupted one.
"""
from __future__ import annotations

import copy
import datetime as _dt
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark import metrics, store
from benchmark.cells import Cell, CellFolder, phase0_key, thread_entry
from benchmark.plan import phase0_source
from benchmark.errors import BenchError
from benchmark.evaluation import evaluate_phase
from benchmark.loss_terms import LossTermRecorder
from benchmark.methods import METHODS, MethodContext, cell_params, full_params
from benchmark.models import MODELS, build_model
from benchmark.models.base import load_state
from benchmark.precision import resolve_precision
from benchmark.profiles import PROFILES, Profile
from benchmark.provenance import versions
from benchmark.run_logging import CellLogger
from benchmark.scenarios import SCENARIOS, build_scenario
from benchmark.seeds import derive_seed
from benchmark.training import PhaseRecipe, deterministic_kernels, seed_everything

# A cell that trains (or first loads) a phase 0 keeps a copy of the cache entry in its folder, unless a cell beside it
# already does, so that a results folder carries the phase-0 models its cells share: on a machine whose cache lacks
# one, the cells of the same --out folder restore it from there instead of retraining it (11-19 minutes a seed for
# the cpu CIFAR-100 PASS family; 1.2 MB).  Only phase 0 is carried: the later phases are what a cell measures.
PHASE0_FILE = "phase0.pt"


def resolve_device(name: str, remote: bool = False) -> torch.device:
    """``--device``; ``remote``: the cells run on Ray / SLURM workers, so ``cuda`` names their device and need not
    exist here (``auto`` still looks here: pass ``--device cuda`` for GPU workers from a node without one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available() and not remote:
        raise BenchError("--device cuda requested but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise BenchError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def make_cells(*, scenarios, phases, methods, seeds, profile, epochs=None, batch_size=None, lr=None,
               inc_epochs=None, class_order_seed=1993, data_root=None, spread_remaining=False, base_classes=None,
               model=None, memory_total=None, device_type="cpu", method_params=None, precision=None,
               per_class=None, deterministic: bool = False) -> list[Cell]:
    """``precision``: ``--precision`` (None: each recipe's own, ``auto`` resolved for ``device_type``); a cell
    records the resolved value in its recipes.  ``per_class``: (training, test) images kept per class, ``"all"``, or
    None for the profile's own (``Profile.per_class``); a cell records it as ``subset`` only when it trims the data,
    so the keys of cells on every image do not change.  ``deterministic`` (``--deterministic``): strictly
    deterministic kernels (``training.deterministic_kernels``), recorded, and so keyed, only when set."""
    prof: Profile = PROFILES.get(profile)
    if precision is None:
        precision = prof.base.precision if prof.base.precision == "auto" else None
    prof = prof.with_overrides(epochs, batch_size, lr, inc_epochs,
                               resolve_precision(precision, device_type) if precision else None)
    if model is not None:
        MODELS.entry(model)
    for m in methods:
        METHODS.entry(m)
    cap = prof.per_class if per_class is None else (None if per_class == "all" else tuple(per_class))
    cells = []
    for scen in scenarios:
        SCENARIOS.entry(scen)
        for ph in phases:
            sc = build_scenario(scen, ph, class_order_seed, data_root, spread_remaining, base_classes, cap)
            subset = {"subset": [sc.subset["train_per_class"], sc.subset["test_per_class"]]} if sc.subset else {}
            # seed-major order: an interrupted sweep has every method of the first seeds rather than every seed of
            # the first methods
            for seed in seeds:
                for m in methods:
                    entry = METHODS.entry(m)
                    params = dict(entry.extra["defaults"])
                    # "*": every method that has the hyper-parameter (as the distillation profiles do)
                    params.update({k: v for k, v in prof.method_params.get("*", {}).items() if k in params})
                    params.update(prof.method_params.get(m, {}))
                    if memory_total is not None and "memory_total" in params:
                        params["memory_total"] = memory_total
                    params.update((method_params or {}).get(m, {}))
                    base, inc = prof.recipes(entry.extra.get("recipe_group"))
                    extra_data = METHODS.get(m).key_data(params, sc, data_root)
                    cells.append(Cell({
                        "task": "cil", "scenario": scen, "phases": ph, "phase_sizes": sc.sizes,
                        "spread_remaining": spread_remaining, "base_classes": base_classes,
                        "dropped_classes": sc.dropped_classes,
                        "class_order_seed": class_order_seed, "seed": seed, "profile": profile,
                        "model": model or prof.model, "recipe": {"base": base.as_dict(), "inc": inc.as_dict()},
                        "method": m, "method_params": cell_params(m, params), "data_sha256": sc.data.sha256,
                        "device_type": device_type, **thread_entry(device_type), **extra_data, **subset,
                        **({"deterministic": True} if deterministic else {}),
                    }))
    return cells


def _recipe(d: dict) -> PhaseRecipe:
    return PhaseRecipe.from_dict(d)


class CellRun(CellFolder):
    """One class-incremental cell, resumable from its folder."""

    def __init__(self, cell: Cell, out: Path, cache_dir: Path, device: torch.device, data_root=None,
                 progress: bool = True, command: str = "", log: tuple[str, ...] = ()):
        super().__init__(cell, out / cell.dirname)
        self.cache_dir, self.device, self.data_root = cache_dir, device, data_root
        self.progress, self.command = progress, command
        self.log = tuple(log)  # --log: experiment loggers (benchmark.run_logging); never part of the key
        self.logger, self.recorder = CellLogger(), None
        versions()  # the code that runs is the one checked out now

    # -- helpers -------------------------------------------------------------------------------------------------
    def recipe_for(self, k: int) -> PhaseRecipe:
        return _recipe(self.cfg["recipe"]["base" if k == 0 else "inc"])

    def phase0_cache_path(self, family: str) -> Path:
        return self.cache_dir / "phase0" / f"{phase0_key(self.cfg, family)}.pt"

    def carried_phase0(self, family: str, strict: bool = True, anywhere: bool = True) -> Path | None:
        """The ``phase0.pt`` holding this cell's phase 0 carried by a cell beside this one (the same ``--out``) or,
        with ``anywhere``, by a cell of a shared results folder (``store.shared_model_roots``: the committed
        ``results/``); ``strict=False`` passes over corrupt copies (only asked whether one is carried)."""
        key, fix = phase0_key(self.cfg, family), "phase 0 is then taken from the cache or retrained"
        here = sorted(self.dir.parent.glob(f"*/{PHASE0_FILE}"))
        found = store.find_carried(here, key, "phase-0 weights", fix, strict)
        if found is None and anywhere:  # a damaged file in a shared folder is passed over, never an error
            found = store.find_carried(store.shared_copies(f"*/{PHASE0_FILE}", exclude=here), key, "phase-0 weights",
                                       fix, strict=False)
        return found

    def shared_model_key(self) -> str | None:
        """The phase 0 this cell would train for the cells of its family (``benchmark.executor.units_of_work``):
        None when it is cached or carried, or the cell is finished."""
        if self.finished():
            return None
        family = METHODS.get(self.cfg["method"]).phase0_family_for(full_params(self.cfg["method"],
                                                                               self.cfg["method_params"]))
        if not family or self.phase0_cache_path(family).is_file() or self.carried_phase0(family, strict=False):
            return None
        return f"phase0:{phase0_key(self.cfg, family)}"

    def _carry_phase0(self, family: str, cache: Path) -> None:
        """Copies the cache entry into this cell's folder unless a cell beside it carries it already."""
        if self.carried_phase0(family, strict=False, anywhere=False) is None:
            store.copy_file(cache, self.dir / PHASE0_FILE)

    # -- the run -------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        done = self.finished()
        if done:
            return done
        cfg = self.cfg
        sc = build_scenario(cfg["scenario"], cfg["phases"], cfg["class_order_seed"], self.data_root,
                            cfg["spread_remaining"], cfg["base_classes"], tuple(cfg.get("subset") or ()) or None)
        if sc.data.sha256 != cfg["data_sha256"]:
            raise BenchError(f"data under {sc.data.source} changed since the cell was planned; re-run the command")
        seed_everything(cfg["seed"])
        deterministic_kernels(self.device.type, cfg.get("deterministic", False))
        method_cls = METHODS.get(cfg["method"])
        # the classifier is sized for every class of the dataset, not for the classes this protocol shows (90 with
        # 20 phases of CIFAR-100, official split): phase 0 must not depend on the number of later phases, so that
        # 5-, 10- and 20-phase cells share one cached phase 0 (``head.active`` slices the seen classes)
        model = build_model(cfg["model"], sc.spec.n_classes * method_cls.outputs_per_class, sc.data.channels,
                            sc.spec.mean, sc.spec.std)
        model.to(self.device)
        ctx = MethodContext(model, sc, self.recipe_for, full_params(cfg["method"], cfg["method_params"]), self.device,
                            cfg["seed"], self.data_root)
        method = method_cls(ctx)
        bench = sc.benchmark

        state = {"phases_done": 0, "rows": {}, "phase_times": [], "train_images": 0, "train_seconds": 0.0,
                 "phase0_cache": None}
        resume_training = None
        if self.ckpt_path.is_file():
            ck = store.load_torch(self.ckpt_path, self.cell.key)
            state = ck["state"]
            method.load_state_dict(ck["method"])  # first: a method may change the network's structure (SSRE)
            load_state(model, ck["model"])
            resume_training = ck.get("training")
        self.dir.mkdir(parents=True, exist_ok=True)
        store.save_json(self.dir / "cell.json", {"key": self.cell.key, "cell": cfg, "command": self.command})
        self.logger = CellLogger.open(self.log, self.dir, self.dir.parent.name, self.dir.name, cfg)
        if self.logger:
            self.recorder = LossTermRecorder.attach(method.strategy, skip=(method.suite_plugin,))
        try:
            return self._run_phases(method, model, sc, bench, state, resume_training, ck if resume_training else None)
        finally:
            self.logger.close()

    def _run_phases(self, method, model, sc, bench, state, resume_training, ck) -> dict:
        cfg = self.cfg
        n_phases = len(cfg["phase_sizes"])
        bar = tqdm(range(n_phases), desc=f"  phases ({cfg['method']})", initial=state["phases_done"],
                   disable=not self.progress, position=1, leave=False)
        for k in range(state["phases_done"], n_phases):
            t0 = time.time()
            phase_start_method_state = copy.deepcopy(method.state_dict()) if resume_training is None else ck["method"]
            self._train_phase(method, sc, bench, k, state, phase_start_method_state, resume_training)
            resume_training = None
            if state.get("phase0_cache") and k == 0:
                tqdm.write(f"  {self.dir.name}: phase-0 cache {state['phase0_cache']}")
            rows = evaluate_phase(method, sc, k, self.device)
            for name, row in rows.items():
                state["rows"].setdefault(name, []).append(row)
            self._log_phase(sc, k, state["rows"])
            state["phase_times"].append(time.time() - t0)
            state["phases_done"] = k + 1
            self._save_checkpoint(model, method, state, training=None)
            bar.update(1)
        bar.close()
        result = self._result(sc, method, state)
        store.save_json(self.result_path, result)
        self.ckpt_path.unlink(missing_ok=True)  # result.json holds everything; the checkpoint is dead weight now
        return result

    def _train_phase(self, method, sc, bench, k, state, method_state0, resume_training):
        cfg, plugin = self.cfg, method.suite_plugin
        recipe = self.recipe_for(k)
        epochs = recipe.epochs
        family = type(method).phase0_family_for(method.ctx.params) if k == 0 else None
        cache = self.phase0_cache_path(family) if family else None
        if resume_training is None:
            seed_everything(derive_seed(cfg["seed"], "phase", k))
            plugin.generator.manual_seed(derive_seed(cfg["seed"], "phase", k))
        # a corrupt phase0.pt beside the cell matters only when phase 0 is to be restored from it
        kind, src = phase0_source(self, family) if family else ("train", None)
        if kind != "train":
            self._load_phase0(method, bench.train_stream[k], state, family, kind, src)
            return
        if cache is not None:
            state["phase0_cache"] = f"miss, trained and stored {cache.name}"
        start_epoch = 0
        if resume_training is not None:
            plugin.pending_resume = resume_training
            start_epoch = int(resume_training["epoch"])
        ebar = tqdm(total=epochs, initial=start_epoch, desc=f"    phase {k} epochs", disable=not self.progress,
                    position=2, leave=False)
        images0, t0 = plugin.images_seen, time.time()

        def on_epoch_end(epoch):
            ebar.update(1)
            self._log_epoch(method, k, epoch)
            training = plugin.training_state(method.strategy)
            if cache is not None and epoch == epochs:
                store.save_torch(cache, {"key": phase0_key(cfg, family), "model": method.phase0_state()})
                self._carry_phase0(family, cache)
            if epoch < epochs:
                st = dict(state)
                st["train_images"] = state["train_images"] + plugin.images_seen - images0
                st["train_seconds"] = state["train_seconds"] + time.time() - t0
                self._save_checkpoint(method.model, method, st, training=training, method_state=method_state0)

        plugin.on_epoch_end = on_epoch_end
        method.train_phase(k, bench.train_stream[k], epochs - start_epoch)
        plugin.on_epoch_end = None
        ebar.close()
        state["train_images"] += plugin.images_seen - images0
        state["train_seconds"] += time.time() - t0

    def _load_phase0(self, method, experience, state: dict, family: str, kind: str, src: Path) -> None:
        """Phase 0 from the shared cache or a carried copy (``benchmark.plan.phase0_source``), then the method's
        end-of-phase work on it (old model, Fisher, herding) without training."""
        cfg, plugin, cache = self.cfg, method.suite_plugin, self.phase0_cache_path(family)
        what = "phase-0 cache" if kind == "cache" else "phase-0 weights"
        cached = store.load_torch(src, phase0_key(cfg, family), what)
        store.check_state_fits(method.phase0_state(), cached.get("model"), src, what,
                               "delete it and re-run (phase 0 is retrained and stored again)")
        method.load_phase0_state(cached["model"])
        if kind == "cache":
            state["phase0_cache"] = f"hit {cache.name}"
            self._carry_phase0(family, cache)
        else:
            store.copy_file(src, cache)
            state["phase0_cache"] = f"miss, restored from {store.describe(src)}"
            self._carry_phase0(family, cache)  # restored from a shared folder: this --out carries its own copy
        plugin.on_epoch_end = None
        plugin.pending_resume = None
        method.train_phase(0, experience, 0)  # end-of-phase work only

    # -- experiment loggers (--log) ----------------------------------------------------------------------------
    def _log_epoch(self, method, k: int, epoch: int) -> None:
        """The epoch's mean loss terms and learning rate; step: the epoch counted over the whole cell."""
        if self.logger:
            scalars = {f"train/{name}": v for name, v in self.recorder.epoch_means().items()}
            self.logger.log(scalars, sum(self.recipe_for(j).epochs for j in range(k)) + epoch)

    def _log_phase(self, sc, k: int, rows: dict) -> None:
        if not self.logger:
            return
        counts = [int(((sc.data.y_test >= lo) & (sc.data.y_test < hi)).sum()) for lo, hi in sc.group_bounds()]
        scalars = {}
        for name, acc in rows.items():
            summary = metrics.summarize(acc, counts[: k + 1])
            scalars[f"eval/{name}/seen_acc"] = 100 * summary["seen_acc"][-1]
            if summary["forgetting_max"] is not None:
                scalars[f"eval/{name}/forgetting_max"] = 100 * summary["forgetting_max"]
            scalars.update({f"eval/{name}/acc_g{j}": 100 * v for j, v in enumerate(acc[-1]) if v is not None})
        self.logger.log(scalars, k)

    def _save_checkpoint(self, model, method, state, training, method_state=None):
        store.save_torch(self.ckpt_path, {
            "key": self.cell.key, "state": state, "model": model.state_dict(),
            "method": method_state if method_state is not None else method.state_dict(), "training": training})

    def _result(self, sc, method, state) -> dict:
        counts = [int(((sc.data.y_test >= lo) & (sc.data.y_test < hi)).sum()) for lo, hi in sc.group_bounds()]
        pub = METHODS.entry(self.cfg["method"]).extra["published"]
        rows = {name: {"acc": acc, **metrics.summarize(acc, counts),
                       "published_name": (pub.get(name, "") if isinstance(pub, dict) else pub)}
                for name, acc in state["rows"].items()}
        notes = []
        if sc.subset:
            notes.append(f"{self.cfg['scenario']} trimmed to the first {sc.subset['train_per_class']} training images "
                         f"of each class (of {sc.subset['train_of']}) and the first {sc.subset['test_per_class']} test "
                         f"images (of {sc.subset['test_of']}): profile {self.cfg['profile']}'s subset or --per-class")
        if self.cfg["dropped_classes"]:
            notes.append(f"{self.cfg['dropped_classes']} classes never shown: int((n - base) / phases) classes per "
                         f"phase, as the official PASS code")
        if method.offline:
            notes.append(f"{method.name}: one offline training on all classes, the same model evaluated after every "
                         "phase among the classes seen so far; its forgetting is only the cost of more candidate "
                         "classes")
        return {
            "key": self.cell.key, "cell": self.cfg, "rows": rows, "group_counts": counts,
            "offline": bool(method.offline),
            "extra": method.extra_results(), "class_order": sc.order, "memory": method.memory_note, "notes": notes,
            "profile_gap_to_paper": PROFILES.get(self.cfg["profile"]).gap_to_paper,
            "timings": {"phase_seconds": state["phase_times"], "wall_seconds": sum(state["phase_times"]),
                        "train_images_per_s": state["train_images"] / max(state["train_seconds"], 1e-9),
                        "phase0_cache": state["phase0_cache"]},
            "data_source": sc.data.source, "versions": versions(), "device": str(self.device),
            "command": self.command, "finished": _dt.datetime.now().isoformat(timespec="seconds"),
        }
