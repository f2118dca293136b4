"""Data-free quantization cells (``--task dfq``, RGAL paper Sec. 5.2): resolve the request into cells (method x
bit-width x seed) and run one with checkpoints and resume, as the official GDFQ / IntraQ loops do.

Flow of ``DFQCellRun.run``: the teacher as the distillation task gets it (``benchmark.teachers``: cache, a teacher
cell's ``teacher.pt``, ``--teacher-checkpoint``, else trained) -> the student, a fake-quantized copy of the teacher
(``benchmark.quantization.quantize_model``), always in eval mode -> epochs of ``ep_steps`` iterations
(``benchmark.distill_loop``): in the first ``warmup_epochs`` an iteration passes the method's
``calibration_images()`` through the student with its activation ranges tracking (and through an 8-bit copy of
the teacher, the cell's "8-bit bound"), with no student update; the ranges are frozen after every epoch (official
``freeze_model``) and track again at the start of the next warm-up epoch (``unfreeze_model``) up to
``range_epochs`` (GDFQ's ImageNet recipe: 4 of its 50; then the warm-up trains only the generator).  When the
warm-up ends, the calibrated student and the 8-bit copy are evaluated once (``calibrated_top1``: the quantized
teacher before any fine-tuning; ``w8a8_top1``) and the method's ``prepare`` runs (IntraQ's image set).  Then every
iteration is
``synthesize()`` + one student step, SGD with Nesterov momentum, the learning rate multiplied by ``gamma`` at the
``milestones`` epochs (the warm-up counted, as the official ``LRPolicy``).  The student is evaluated on the real
test set every ``eval_every`` epochs; ``top1`` is the last epoch's, ``best_top1`` the best over the epochs (what the
official logs report: a test-set selection, which the tables mark).

Seeds vary the quantization only: every seed quantizes the same teacher (``teacher_seed`` 0).

Scenarios: CIFAR-10 / CIFAR-100 (arrays, the suite's teacher or ``--teacher-checkpoint``) and ImageNet (Table 13:
the streamed validation set of ``benchmark.imagenet``, ``--teacher-checkpoint`` required, the profile's
``image_size``).  GDFQ's ImageNet recipe warms up for 50 epochs but tracks ranges in the first 4 only
(``QuantRecipe.range_epochs``).
"""
from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark import store
from benchmark.cells import Cell, thread_entry
from benchmark.dfkd_runner import DFKD_AUGMENT, DFKDCellRun, checkpoint_sha256
from benchmark.dfq_methods import DFQ_METHODS, DFQContext
from benchmark.dfq_profiles import QuantRecipe, dfq_profile, dfq_scenarios
from benchmark.distill_loop import DistillLoop
from benchmark.data import default_data_root
from benchmark.errors import BenchError
from benchmark.imagenet import IMAGENET_SPEC, read_imagenet_val
from benchmark.methods import cell_params, full_params
from benchmark.models import MODELS, build_model
from benchmark.precision import autocast, resolve_precision
from benchmark.quantization import quantize_model, set_range_tracking
from benchmark.run_logging import CellLogger
from benchmark.scenarios import SCENARIOS, _cached_arrays
from benchmark.teachers import teacher_key, test_accuracy
from benchmark.training import rng_state, seed_everything

BOUND_BITS = 8  # the reference quantization every cell measures beside its own


def check_has_batchnorm(model_name: str, n_classes: int, channels: int) -> None:
    """The quantization methods match the teacher's BatchNorm statistics: a teacher without BN is refused."""
    net = build_model(model_name, n_classes, channels, (0.5,) * channels, (0.5,) * channels)
    if not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()):
        raise BenchError(f"--teacher {model_name} has no BatchNorm layer, and GDFQ / IntraQ match the teacher's BN "
                         f"statistics; choose a teacher with BatchNorm (e.g. resnet20)")


def make_dfq_cells(*, scenarios, methods, seeds, profile, bits, teacher=None, epochs=None, batch_size=None, lr=None,
                   data_root=None, device_type="cpu", method_params=None, teacher_checkpoint=None, precision=None,
                   deterministic: bool = False) -> list[Cell]:
    """One cell per scenario x seed x method x ``bits`` (``(weights, activations)`` pairs); the teacher's reference
    cell once per scenario x seed.  ``precision``: as ``make_dfkd_cells`` (fp16 refused)."""
    if precision == "fp16":
        raise BenchError("--precision fp16 is for class-incremental training; data-free quantization runs in bf16 "
                         "(--precision bf16 or auto) or fp32")
    resolved = resolve_precision(precision, device_type) if precision else None
    for m in methods:
        DFQ_METHODS.entry(m)
    if teacher is not None:
        MODELS.entry(teacher)
    t_sha = checkpoint_sha256(teacher_checkpoint) if teacher_checkpoint else None
    cells, threads = [], thread_entry(device_type)
    for scen in scenarios:
        if scen not in dfq_scenarios():
            raise BenchError(f"scenario {scen!r} has no data-free quantization setting; choose one of: "
                             f"{', '.join(dfq_scenarios())}")
        prof = dfq_profile(profile, scen).with_overrides(epochs, batch_size, lr, resolved)
        if prof.teacher_recipe is None and not teacher_checkpoint:
            raise BenchError(f"the suite does not train {scen} teachers; pass --teacher-checkpoint FILE (a state_dict "
                             f"of --teacher {teacher or prof.teacher}, e.g. torchvision's resnet18-f37072fd.pth)")
        _, data = dfq_data(scen, data_root, prof.image_size)
        t_name = teacher or prof.teacher
        check_has_batchnorm(t_name, data.n_classes, data.channels)
        aug = DFKD_AUGMENT.get(scen)  # the teacher's training augmentation (part of its key), if the suite trains it
        base = {"task": "dfq", "scenario": scen, "phases": 0, "profile": profile, "teacher": t_name,
                "teacher_recipe": prof.teacher_recipe.as_dict() if prof.teacher_recipe else None, "teacher_seed": 0,
                "teacher_checkpoint_sha256": t_sha, "augment": aug.as_dict() if aug else None,
                "data_sha256": data.sha256, "device_type": device_type, **threads,
                **({"deterministic": True} if deterministic else {}),
                **({"image_size": prof.image_size} if prof.image_size else {}),
                "teacher_key": None if t_sha else teacher_key(
                    data.sha256, t_name, prof.teacher_recipe, aug, 0, device_type,
                    threads.get("torch_threads"), deterministic)}
        for seed in seeds:
            for m in methods:
                entry = DFQ_METHODS.entry(m)
                family = entry.extra["family"]
                params = prof.params_for(m, family, entry.extra["defaults"])
                params.update((method_params or {}).get(m, {}))
                student = entry.factory.needs_student  # the teacher's cell has no bits and no schedule
                for w, a in (bits if student else [(None, None)]):
                    cells.append(Cell({**base, "seed": seed, "method": m,
                                       "method_params": cell_params(m, params, DFQ_METHODS),
                                       "bits": {"weights": w, "activations": a} if student else None,
                                       "quant": prof.recipe_for(family).as_dict() if student else None}))
    return cells


def dfq_data(scenario: str, data_root=None, image_size: int | None = None):
    """(spec with ``mean`` / ``std``, test data) of a quantization scenario: CIFAR's arrays, or ImageNet's streamed
    validation set (``benchmark.imagenet``)."""
    if scenario == "imagenet":
        return IMAGENET_SPEC, read_imagenet_val(str(data_root or default_data_root()), image_size or 224)
    spec = SCENARIOS.get(scenario)
    return spec, _cached_arrays(spec.dataset, str(data_root) if data_root else None)


def bits_label(cfg: dict) -> str:
    b = cfg.get("bits")
    return f"W{b['weights']}A{b['activations']}" if b else "float"


class DFQCellRun(DFKDCellRun):
    """A quantization cell: the distillation cell's teacher, folder and finishing, with the quantized student."""

    def __init__(self, cell: Cell, out: Path, cache_dir: Path, device: torch.device, data_root=None,
                 progress: bool = True, command: str = "", teacher_checkpoint: str | None = None,
                 log: tuple[str, ...] = ()):
        super().__init__(cell, out, cache_dir, device, data_root, progress, command, teacher_checkpoint, log)
        c = cell.config
        tag = f"-{bits_label(c).lower()}" if c.get("bits") else ""
        self.dir = out / f"{c['scenario']}-{c['method']}{tag}-s{c['seed']}-{cell.key[:10]}"
        self.ckpt_path, self.result_path = self.dir / "checkpoint.pt", self.dir / "result.json"

    def _data(self):
        return dfq_data(self.cfg["scenario"], self.data_root, self.cfg.get("image_size"))

    def artefact_path(self) -> Path | None:
        """Where the cell's method caches what cells of other bit-widths share (IntraQ's images), if anything."""
        key = DFQ_METHODS.get(self.cfg["method"]).artefact_key(self.cfg)
        return self.cache_dir / "dfq-images" / f"{key}.pt" if key else None

    def own_set_path(self) -> Path:
        """Where a method whose set no other cell shares (IntraQ+RGAL's) keeps it once made (in the cache, by the cell's
        key: a results folder does not carry it)."""
        return self.cache_dir / "dfq-images" / f"cell-{self.cell.key}.pt"

    def shared_model_key(self) -> str | None:
        """What this cell makes that others load: its teacher (to train), else its shareable image set (to
        synthesise); None when both exist or the cell is finished (``benchmark.executor.units_of_work``)."""
        if self.finished():
            return None
        if self.teacher_source()[0] == "train":
            return "teacher:" + self.teacher_cache_path().stem
        art = self.artefact_path()
        return f"images:{art.stem}" if art is not None and not art.is_file() else None

    # -- the run -------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        done = self.finished()
        if done:
            return done
        cfg, dev = self.cfg, self.device
        spec, data, aug, teacher, t_info = self._teacher()
        method_cls = DFQ_METHODS.get(cfg["method"])
        if not method_cls.needs_student:
            return self._teacher_row(t_info)
        recipe = QuantRecipe.from_dict(cfg["quant"])
        student, bound, method, gen = self._build_quantized(method_cls, teacher, data, spec, recipe, aug)
        opt = torch.optim.SGD(method.trainable(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(recipe.milestones), recipe.gamma)
        st = self._restore(student, method, opt, sched, gen) or {
            "epoch": 0, "round": 0, "curve": [], "synth_seconds": 0.0, "synth_images": 0, "synth_kept": 0,
            "student_seconds": 0.0, "student_images": 0, "eval_seconds": 0.0, "last_loss": None,
            "calib_seconds": 0.0, "calib_images": 0, "calibrated_top1": None, "w8a8_top1": None, "prepare": None}
        if st["w8a8_top1"] is None and self.ckpt_path.is_file():
            bound.load_state_dict(store.load_torch(self.ckpt_path, self.cell.key)["bound"])

        def save():
            store.save_torch(self.ckpt_path, {
                "key": self.cell.key, "student": student.state_dict(), "method": method.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "rng": rng_state(), "state": st, "bound": bound.state_dict() if st["w8a8_top1"] is None else {}})

        logger = CellLogger.open(self.log, self.dir, self.dir.parent.name, self.dir.name, cfg)
        try:
            loop = QuantLoop(cfg, dev, method, student, opt, sched, recipe, st, save, logger,
                             self.checkpoint_seconds, bound)
            return self._quantize(loop, data, recipe, t_info)
        finally:
            logger.close()

    def _build_quantized(self, method_cls, teacher, data, spec, recipe, aug):
        """The quantized student, its 8-bit reference copy, the method and the cell's generator."""
        cfg, dev = self.cfg, self.device
        seed_everything(cfg["seed"])
        probe = torch.rand((2, *data.image_shape), device=dev)
        b = cfg["bits"]
        student = quantize_model(teacher, b["weights"], b["activations"], probe).to(dev)
        bound = quantize_model(teacher, BOUND_BITS, BOUND_BITS, probe).to(dev)
        student.requires_grad_(True)
        for net in (student, bound, teacher):
            net.eval()
            if recipe.channels_last:
                net.to(memory_format=torch.channels_last)
        gen = torch.Generator(device=dev)
        gen.manual_seed(cfg["seed"])
        params = full_params(cfg["method"], cfg["method_params"], DFQ_METHODS)
        ctx = DFQContext(teacher, student, params, recipe, data.n_classes, data.image_shape, spec.mean,
                         spec.std, aug, dev, gen, None, self.cell.key, weight_bits=b["weights"],
                         act_bits=b["activations"], artefact_path=self.artefact_path() or self.own_set_path())
        return student, bound, method_cls(ctx), gen

    def _quantize(self, loop: "QuantLoop", data, recipe: QuantRecipe, t_info: dict) -> dict:
        st, method = loop.st, loop.method
        bar = tqdm(total=recipe.epochs, initial=st["epoch"], desc=f"  epochs ({self.cfg['method']} "
                   f"{bits_label(self.cfg)})", disable=not self.progress, position=1, leave=False)
        rounds = recipe.ep_steps
        while st["epoch"] < recipe.epochs:
            if st["epoch"] >= recipe.warmup_epochs:
                loop.after_warmup(data)
            loop.start_epoch()
            while st["round"] < rounds:
                loop.play_round(rounds)
            acc = loop.end_epoch(data)
            if acc is not None:
                bar.set_postfix_str(f"top1 {acc:.4f}")
            bar.update(1)
        bar.close()
        loop.after_warmup(data)  # a schedule of warm-up epochs only still reports the calibrated student
        curve = st["curve"]
        rows = {method.row_name: {"top1": curve[-1]["top1"], "best_top1": max(c["top1"] for c in curve),
                                  "curve": curve}}
        extra = {**method.extra_results(), "calibrated_top1": st["calibrated_top1"], "w8a8_top1": st["w8a8_top1"],
                 "calibration": {"images": st["calib_images"], "seconds": st["calib_seconds"]}}
        return self._finish(rows, t_info, st, extra, method)

    def gap_to_paper(self) -> str:
        return dfq_profile(self.cfg["profile"], self.cfg["scenario"]).gap_to_paper


class QuantLoop(DistillLoop):
    """The distillation loop with the quantization warm-up: calibration iterations, ranges frozen after every
    epoch, and the one-off evaluation and ``prepare`` when the warm-up ends."""

    def __init__(self, cfg, device, method, student, opt, sched, recipe, st, save, logger, checkpoint_seconds, bound):
        super().__init__(cfg, device, method, student, opt, sched, recipe, st, save, logger, checkpoint_seconds)
        self.bound = bound

    @property
    def warming_up(self) -> bool:
        return self.st["epoch"] < self.recipe.warmup_epochs

    def start_epoch(self) -> None:
        for net in (self.student, self.bound):
            set_range_tracking(net, self.st["epoch"] < self.recipe.tracking_epochs)

    def play_round(self, rounds: int) -> None:
        if not self.warming_up:
            return super().play_round(rounds)
        t0 = time.time()
        tracking = self.st["epoch"] < self.recipe.tracking_epochs
        with autocast(self.recipe.precision, self.dev.type):
            x = self.method.calibration_images()  # GDFQ's generator trains through the whole warm-up
            if tracking:  # after the range epochs the forwards would change nothing
                with torch.no_grad():
                    self.student(x)
                    self.bound(x)
        self.st["calib_seconds"] += time.time() - t0
        self.st["calib_images"] += len(x) if tracking else 0
        self.round_done(rounds)

    def end_epoch(self, data) -> float | None:
        for net in (self.student, self.bound):
            set_range_tracking(net, False)  # official freeze_model after every epoch, before the test
        if not self.warming_up:
            return super().end_epoch(data)
        with warnings.catch_warnings():  # the schedule counts the warm-up epochs, in which the student takes no step
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"))
            return super().end_epoch(data)

    def after_warmup(self, data) -> None:
        """At the start of every epoch after the warm-up: once, the calibrated student and the 8-bit copy on the
        test set; then the method's ``prepare`` (which makes IntraQ's set once, and reloads it in a resumed cell)."""
        st = self.st
        if st["w8a8_top1"] is None:
            t0 = time.time()
            ends = [c["top1"] for c in st["curve"] if c["epoch"] == self.recipe.warmup_epochs]
            # the last warm-up epoch's evaluation is the calibrated student's (nothing trained since)
            st["calibrated_top1"] = ends[0] if ends else test_accuracy(self.student, data, self.dev)
            st["w8a8_top1"] = test_accuracy(self.bound, data, self.dev)
            st["eval_seconds"] += time.time() - t0
            self.save()
        t0 = time.time()
        with autocast(self.recipe.precision, self.dev.type):
            info = self.method.prepare(self.save)
        st["synth_seconds"] += time.time() - t0
        if st["prepare"] is None:
            st["prepare"] = dict(info)
            self.save()
