"""Data-free distillation cells (``--task dfkd``): resolve the request into cells and run one cell with
checkpoints and resume (CONVENTIONS.md "Cells, keys, resume").

Flow of ``DFKDCellRun.run``: load the dataset -> teacher from the cache (trained on first use) or
``--teacher-checkpoint`` (on a cache miss, a finished teacher cell's ``teacher.pt`` in the same ``--out`` folder
stands in for training; the teacher cell writes it) -> build the student and the method -> restore the checkpoint
if any -> for every epoch: ``ep_steps // kd_steps`` rounds of ``synthesize()`` + ``kd_steps`` student SGD steps
(CMI's ``datafree_kd.py`` loop), the learning-rate schedule stepped per epoch (then ``method.end_epoch``), the
student evaluated on the real test set -> ``result.json``.  The state (student, optimiser, schedule, method state
with its synthetic-pool size, seeded generator and global RNG states, accuracy curve, timings) is saved atomically
after every epoch and after any round that ends more than ``checkpoint_seconds`` after the previous save, so a
killed run resumes and ends with the same numbers.

The reported accuracy is the student's after the last epoch (``top1``); ``best_top1`` (the best over the evaluated
epochs) is also stored because DFAD's official scripts report it, but it is selected on the test set and the tables
mark it so.

Seeds vary the distillation only: every seed of a scenario distils the same teacher (``teacher_seed`` 0), as the
papers distil one pre-trained teacher and as a user's ``--teacher-checkpoint`` does; a table's ``teacher`` row is
therefore one network, repeated per seed.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark import store
from benchmark.augment import AugmentSpec
from benchmark.cells import Cell, CellFolder, thread_entry
from benchmark.distill_loop import DistillLoop
from benchmark.dfkd_profiles import DFKDProfile, DistillRecipe, TeacherRecipe, dfkd_profile
from benchmark.dfkd_methods import DFKD_METHODS, DFKDContext
from benchmark.errors import BenchError
from benchmark.methods import cell_params, full_params
from benchmark.models import MODELS, build_model
from benchmark.precision import resolve_precision
from benchmark.run_logging import CellLogger
from benchmark.provenance import versions
from benchmark.scenarios import SCENARIOS, _cached_arrays
from benchmark.teachers import get_teacher, teacher_source, teacher_cache_path, teacher_key
from benchmark.training import deterministic_kernels, restore_optimisation, rng_state, seed_everything

# augmentation of real and pool images in the distillation task: CMI's CIFAR transform (crop 4 + flip, no colour
# jitter); MNIST none (DFAD's MNIST script)
DFKD_AUGMENT = {"cifar10": AugmentSpec(crop_padding=4, flip=True), "cifar100": AugmentSpec(crop_padding=4, flip=True),
                "mnist": AugmentSpec()}
TEACHER_FILE = "teacher.pt"  # a finished teacher cell's copy of its cache entry (see benchmark.teachers)


def checkpoint_sha256(path) -> str:
    """The identity of a user's teacher (``--teacher-checkpoint``) in its students' keys: the file's sha256."""
    import hashlib

    p = Path(path)
    if not p.is_file():
        raise BenchError(f"--teacher-checkpoint {p} does not exist; pass the path of a saved state_dict")
    return hashlib.sha256(p.read_bytes()).hexdigest()


def make_dfkd_cells(*, scenarios, methods, seeds, profile, teacher=None, student=None, epochs=None, batch_size=None,
                    lr=None, data_root=None, device_type="cpu", method_params=None,
                    teacher_checkpoint=None, precision=None, deterministic: bool = False) -> list[Cell]:
    """``precision``: ``--precision`` (None: the profile's); a cell records the resolved one in its recipes.  fp16
    is refused here: the synthesisers' own optimisation loops have no loss scaling.  ``deterministic``: as
    ``benchmark.runner.make_cells`` (and the teacher's key names it too)."""
    if precision == "fp16":
        raise BenchError("--precision fp16 is for class-incremental training; data-free distillation runs in bf16 "
                         "(--precision bf16 or auto) or fp32")
    resolved = resolve_precision(precision, device_type) if precision else None
    for m in methods:
        DFKD_METHODS.entry(m)
    for name in (teacher, student):
        if name is not None:
            MODELS.entry(name)
    t_sha = checkpoint_sha256(teacher_checkpoint) if teacher_checkpoint else None
    cells, threads = [], thread_entry(device_type)
    for scen in scenarios:
        spec = SCENARIOS.get(scen)
        if scen not in DFKD_AUGMENT:
            raise BenchError(f"scenario {scen!r} has no data-free distillation setting; choose one of: "
                             f"{', '.join(DFKD_AUGMENT)}")
        prof: DFKDProfile = dfkd_profile(profile, scen).with_overrides(epochs, batch_size, lr, resolved)
        data = _cached_arrays(spec.dataset, str(data_root) if data_root else None)
        for seed in seeds:
            for m in methods:
                entry = DFKD_METHODS.entry(m)
                params = prof.params_for(m, entry.extra["defaults"])
                params.update((method_params or {}).get(m, {}))
                cells.append(Cell({
                    "task": "dfkd", "scenario": scen, "phases": 0, "seed": seed, "profile": profile,
                    "teacher": teacher or prof.teacher, "student": student or prof.student,
                    "teacher_recipe": prof.teacher_recipe.as_dict(), "distill": prof.distill_for(m).as_dict(),
                    "teacher_seed": 0, "teacher_checkpoint_sha256": t_sha, "method": m,
                    "method_params": cell_params(m, params, DFKD_METHODS),
                    "augment": DFKD_AUGMENT[scen].as_dict(), "data_sha256": data.sha256, "device_type": device_type,
                    **threads, **({"deterministic": True} if deterministic else {}),
                    # the teacher's identity, named in the key: its checkpoint's sha256 above, or the key
                    # of the suite's cached teacher
                    "teacher_key": None if t_sha else teacher_key(
                        data.sha256, teacher or prof.teacher, prof.teacher_recipe, DFKD_AUGMENT[scen], 0, device_type,
                        threads.get("torch_threads"), deterministic),
                }))
    return cells


class DFKDCellRun(CellFolder):
    checkpoint_seconds = 120.0

    def __init__(self, cell: Cell, out: Path, cache_dir: Path, device: torch.device, data_root=None,
                 progress: bool = True, command: str = "", teacher_checkpoint: str | None = None,
                 log: tuple[str, ...] = ()):
        c = cell.config
        super().__init__(cell, out / f"{c['scenario']}-{c['method']}-s{c['seed']}-{cell.key[:10]}")
        self.cache_dir, self.device, self.data_root = cache_dir, device, data_root
        self.progress, self.command, self.teacher_checkpoint = progress, command, teacher_checkpoint
        self.log = tuple(log)  # --log: experiment loggers (benchmark.run_logging); never part of the key
        versions()  # taken when the cell starts (see benchmark.provenance.versions)

    def teacher_cache_path(self) -> Path:
        """Where the suite's teacher of this cell is cached (``--dry-run`` reports whether it exists)."""
        c = self.cfg
        return teacher_cache_path(self.cache_dir, c["data_sha256"], c["teacher"], TeacherRecipe(**c["teacher_recipe"]),
                                  AugmentSpec(**c["augment"]), c["teacher_seed"], c["device_type"],
                                  c.get("torch_threads"), c.get("deterministic", False))

    def carried_teachers(self) -> list[Path]:
        """``teacher.pt`` of the teacher cells beside this one (the same ``--out``), by folder name, then of those
        in the shared results folders (``store.shared_model_roots``: the committed ``results/``)."""
        pattern = f"{self.cfg['scenario']}-teacher-s*/{TEACHER_FILE}"
        here = sorted(self.dir.parent.glob(pattern))
        return here + store.shared_copies(pattern, exclude=here)

    def teacher_source(self) -> tuple[str, Path | None]:
        """Where this cell's teacher comes from now (``benchmark.teachers.teacher_source``)."""
        if self.teacher_checkpoint:  # first, and without a cache path (an ImageNet teacher has no recipe)
            return "checkpoint", Path(self.teacher_checkpoint)
        return teacher_source(None, self.teacher_cache_path(), self.carried_teachers)

    def shared_model_key(self) -> str | None:
        """The teacher this cell would train for the others (``benchmark.executor.units_of_work``), if any."""
        if self.finished() or self.teacher_source()[0] != "train":
            return None
        return "teacher:" + self.teacher_cache_path().stem

    def train_images(self) -> int:
        """Training images of the cell's dataset (already loaded and cached when the cells were made)."""
        return len(self._data()[1].y_train)

    def test_images(self) -> int:
        """Test images of the cell's dataset (the student is evaluated on them every ``eval_every`` epochs)."""
        return self._data()[1].n_test

    # -- the run -------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        done = self.finished()
        if done:
            return done
        spec, data, aug, teacher, t_info = self._teacher()
        method_cls = DFKD_METHODS.get(self.cfg["method"])
        if not method_cls.needs_student:
            return self._teacher_row(t_info)
        recipe = DistillRecipe(**self.cfg["distill"])
        student, method, gen = self._build(method_cls, teacher, data, spec, recipe, aug)
        opt = torch.optim.SGD(method.trainable(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs) if recipe.schedule == "cosine" else None
        rounds = max(1, recipe.ep_steps // method.kd_steps)
        st = self._restore(student, method, opt, sched, gen) or {
            "epoch": 0, "round": 0, "curve": [], "synth_seconds": 0.0, "synth_images": 0, "synth_kept": 0,
            "student_seconds": 0.0, "student_images": 0, "eval_seconds": 0.0, "last_loss": None}

        def save():
            store.save_torch(self.ckpt_path, {
                "key": self.cell.key, "student": student.state_dict(), "method": method.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else {},
                "generator": gen.get_state(), "rng": rng_state(), "state": st})

        logger = CellLogger.open(self.log, self.dir, self.dir.parent.name, self.dir.name, self.cfg)
        try:
            return self._distil(method, student, teacher, data, recipe, opt, sched, rounds, st, save, t_info,
                                logger)
        finally:
            logger.close()

    def _teacher(self):
        """The cell's data (checked against its plan) and teacher; writes ``cell.json``.  Shared by every data-free
        task's cell (``benchmark.dfq_runner`` too)."""
        cfg, dev = self.cfg, self.device
        # before the teacher: its training is part of what the cell reproduces
        deterministic_kernels(dev.type, cfg.get("deterministic", False))
        spec, data = self._data()
        if data.sha256 != cfg["data_sha256"]:
            raise BenchError(f"data under {data.source} changed since the cell was planned; re-run the command")
        aug = AugmentSpec(**cfg["augment"]) if cfg["augment"] else None
        recipe = TeacherRecipe(**cfg["teacher_recipe"]) if cfg["teacher_recipe"] else None
        teacher, t_info = get_teacher(cfg["teacher"], data, spec.mean, spec.std, recipe,
                                      aug, dev, self.cache_dir, cfg["teacher_seed"], self.teacher_checkpoint,
                                      self.progress, carried=() if self.teacher_checkpoint else self.carried_teachers(),
                                      deterministic=cfg.get("deterministic", False))
        self.dir.mkdir(parents=True, exist_ok=True)
        store.save_json(self.dir / "cell.json", {"key": self.cell.key, "cell": cfg, "command": self.command})
        return spec, data, aug, teacher, t_info

    def _data(self):
        """(scenario spec: ``mean`` / ``std``, the cell's dataset)."""
        spec = SCENARIOS.get(self.cfg["scenario"])
        return spec, _cached_arrays(spec.dataset, str(self.data_root) if self.data_root else None)

    def _teacher_row(self, t_info: dict) -> dict:
        """The teacher's reference cell: its accuracy, and the folder carries its weights (a user's checkpoint is
        theirs)."""
        if not self.teacher_checkpoint:
            store.copy_file(self.teacher_cache_path(), self.dir / TEACHER_FILE)
        return self._finish({"teacher": {"top1": t_info["test_accuracy"], "best_top1": t_info["test_accuracy"],
                                         "curve": []}}, t_info, {}, {}, method=None)

    def _build(self, method_cls, teacher, data, spec, recipe, aug):
        """The student, the method around it and the cell's generator, seeded as every run of the cell."""
        cfg, dev = self.cfg, self.device
        seed_everything(cfg["seed"])
        student = build_model(cfg["student"], data.n_classes, data.channels, spec.mean, spec.std).to(dev)
        if recipe.channels_last:
            student.to(memory_format=torch.channels_last)
            teacher.to(memory_format=torch.channels_last)
        gen = torch.Generator(device=dev)
        gen.manual_seed(cfg["seed"])
        params = full_params(cfg["method"], cfg["method_params"], DFKD_METHODS)
        ctx = DFKDContext(teacher, student, params, recipe, data.n_classes, data.image_shape,
                          spec.mean, spec.std, aug, dev, gen, self.dir / "pool",
                          self.cell.key, real_data=(data.x_train, data.y_train) if method_cls.reference else None)
        return student, method_cls(ctx), gen

    def _restore(self, student, method, opt, sched, gen) -> dict | None:
        """A partial cell's checkpoint loaded into the run's objects; its progress state (None without one)."""
        if not self.ckpt_path.is_file():
            return None
        ck = store.load_torch(self.ckpt_path, self.cell.key)
        student.load_state_dict(ck["student"])
        method.load_state_dict(ck["method"])
        restore_optimisation(ck, opt, sched, gen)
        return ck["state"]

    def _distil(self, method, student, teacher, data, recipe, opt, sched, rounds, st, save, t_info, logger) -> dict:
        loop = DistillLoop(self.cfg, self.device, method, student, opt, sched, recipe, st, save, logger,
                           self.checkpoint_seconds)
        bar = tqdm(total=recipe.epochs, initial=st["epoch"], desc=f"  epochs ({self.cfg['method']})",
                   disable=not self.progress, position=1, leave=False)
        student.train()
        while st["epoch"] < recipe.epochs:
            while st["round"] < rounds:
                loop.play_round(rounds)
            acc = loop.end_epoch(data)
            if acc is not None:
                bar.set_postfix_str(f"top1 {acc:.4f}")
            bar.update(1)
        bar.close()
        curve = st["curve"]
        rows = {method.row_name: {
            "top1": curve[-1]["top1"], "best_top1": max(c["top1"] for c in curve), "curve": curve}}
        extra = method.extra_results()
        analysis = analyse_synthetic(method.analysis_images(recipe.analysis_samples), teacher, data, self.device,
                                     recipe.analysis_samples, self.cfg["seed"])
        if analysis:
            extra["analysis"] = analysis
        return self._finish(rows, t_info, st, extra, method)

    def gap_to_paper(self) -> str:
        return dfkd_profile(self.cfg["profile"], self.cfg["scenario"]).gap_to_paper

    def _finish(self, rows, t_info, st, extra, method) -> dict:
        cfg = self.cfg
        timings = {}
        if st:
            timings = {
                "synthesis_seconds": st["synth_seconds"], "student_seconds": st["student_seconds"],
                "eval_seconds": st["eval_seconds"], "wall_seconds": st["synth_seconds"] + st["student_seconds"]
                + st["eval_seconds"] + st.get("calib_seconds", 0.0),
                "synthesis_images_per_s": st["synth_images"] / st["synth_seconds"] if st["synth_seconds"] else None,
                "pool_images_per_s": st["synth_kept"] / st["synth_seconds"] if st["synth_kept"] else None,
                "student_images_per_s": st["student_images"] / max(st["student_seconds"], 1e-9)}
        result = {
            "key": self.cell.key, "cell": cfg, "rows": rows, "teacher": t_info, "extra": extra,
            "last_losses": st.get("last_loss") if st else None, "timings": timings,
            "profile_gap_to_paper": self.gap_to_paper(),
            "versions": versions(), "device": str(self.device), "command": self.command,
            "finished": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        store.save_json(self.result_path, result)
        if self.ckpt_path.is_file():
            self.ckpt_path.unlink()
        return result



@torch.no_grad()
def analyse_synthetic(x, teacher, data, device, n: int, seed: int) -> dict | None:
    """Diversity figures (Eq. 13-15) of synthetic images ``x`` and of as many real test images, on images and on
    the teacher's embeddings (labels: the teacher's argmax), and a joint t-SNE map of both (Figure 9)."""
    from benchmark.diversity import diversity_metrics, tsne_points

    if x is None or len(x) < 2:
        return None
    idx = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(seed))[:n]
    real = data.x_test[idx].float().div(255.0).to(device)
    out = {}
    embs = {}
    for name, imgs in (("synthetic", x.to(device)), ("real", real)):
        emb = teacher.backbone(imgs)
        labels = teacher.head(emb).argmax(1)
        embs[name] = (emb.cpu(), labels.cpu())
        out[name] = {"images": diversity_metrics(imgs.cpu(), labels.cpu()),
                     "embeddings": diversity_metrics(emb.cpu(), labels.cpu())}
    pts = tsne_points(embs["real"][0], embs["synthetic"][0], seed)
    k = len(embs["real"][0])
    out["tsne"] = {"real": pts[:k].round(3).tolist(), "real_labels": embs["real"][1].tolist(),
                   "synthetic": pts[k:].round(3).tolist(), "synthetic_labels": embs["synthetic"][1].tolist()}
    return out
