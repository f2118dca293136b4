"""The loop of a distillation cell (CMI's ``datafree_kd.py``, as every data-free method of the suite runs): epochs
of rounds, each round ``synthesize()`` then ``kd_steps`` student steps (DFAD's official order, student steps first,
for a method with ``student_first``), under the recipe's autocast, with timings, checkpoints, evaluation and the
experiment logs (with ``--log``, the student's loss terms and gradient norm as epoch means).
``benchmark.dfkd_runner.DFKDCellRun`` builds what it needs and drives it.
"""
from __future__ import annotations

import math
import time

import torch

from benchmark.errors import BenchError
from benchmark.loss_terms import LossTermRecorder
from benchmark.precision import autocast
from benchmark.teachers import test_accuracy


class DistillLoop:
    """The loop of one distillation cell (CMI's ``datafree_kd.py``): epochs of rounds, a round being ``synthesize()``
    and ``kd_steps`` student steps (or the reverse for a method with ``student_first``), with the cell's timings
    (``st``), a checkpoint every ``checkpoint_seconds`` inside an epoch and after each, evaluation every
    ``eval_every`` epochs and the experiment logs."""

    def __init__(self, cfg, device, method, student, opt, sched, recipe, st, save, logger, checkpoint_seconds):
        self.cfg, self.dev, self.method, self.student = cfg, device, method, student
        self.opt, self.sched, self.recipe, self.st, self.save, self.logger = opt, sched, recipe, st, save, logger
        self.checkpoint_seconds, self.last_save = checkpoint_seconds, time.time()
        self.figures = LossTermRecorder()  # per-epoch means for the experiment loggers (--log)

    def synthesis(self) -> dict:
        m, st, recipe = self.method, self.st, self.recipe
        t0 = time.time()
        with autocast(recipe.precision, self.dev.type):  # the synthesisers' own steps included
            info = m.synthesize()
        st["synth_seconds"] += time.time() - t0
        st["synth_images"] += m.g_steps * recipe.synthesis_batch if m.synthesizes else 0
        st["synth_kept"] += recipe.synthesis_batch if m.uses_pool else 0
        return info

    def student_steps(self) -> torch.Tensor:
        t0 = time.time()
        for _ in range(self.method.kd_steps):
            with autocast(self.recipe.precision, self.dev.type):
                loss, n = self.method.student_loss()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.logger:  # the gradient's size shows a diverging student before its loss does
                _book(self.figures, {"loss": loss, **self.method.student_terms,
                                     "grad_norm": _grad_norm(self.opt)}, "student")
            self.opt.step()
            self.st["student_images"] += n
        self.st["student_seconds"] += time.time() - t0
        return loss

    def play_round(self, rounds: int) -> None:
        """A round: synthesis, then the student steps (CMI's datafree_kd.py); a method whose official loop trains
        the student first (DFAD's train() with step_order=student_first) swaps the two."""
        st = self.st
        if self.method.student_first:
            loss = self.student_steps()
            info = self.synthesis()
        else:
            info = self.synthesis()
            loss = self.student_steps()
        last = float(loss.detach())
        st["last_loss"] = {"student": last, **info}
        if self.logger:
            _book(self.figures, info, "synthesis")
        if not math.isfinite(last):
            raise BenchError(f"{self.cfg['method']}: the student loss became {last} in epoch "
                             f"{st['epoch'] + 1}; lower --lr or the method's weights (--set)")
        self.round_done(rounds)

    def round_done(self, rounds: int) -> None:
        """Counts the round; a checkpoint when the last one is ``checkpoint_seconds`` old (the epoch's end saves)."""
        self.st["round"] += 1
        if time.time() - self.last_save > self.checkpoint_seconds and self.st["round"] < rounds:
            self.save()
            self.last_save = time.time()

    def end_epoch(self, data) -> float | None:
        """Schedules, evaluation (every ``eval_every`` epochs and the last), logs and a checkpoint; returns the
        top-1 accuracy when evaluated."""
        st, recipe, opt = self.st, self.recipe, self.opt
        epoch_lr = opt.param_groups[0]["lr"]
        if self.sched:
            self.sched.step()
        self.method.end_epoch(opt.param_groups[0]["lr"] / recipe.lr)
        st["epoch"] += 1
        st["round"] = 0
        acc = None
        if st["epoch"] % recipe.eval_every == 0 or st["epoch"] == recipe.epochs:
            t0 = time.time()
            acc = test_accuracy(self.student, data, self.dev)
            st["eval_seconds"] += time.time() - t0
            st["curve"].append({"epoch": st["epoch"], "top1": acc,
                                "train_seconds": st["synth_seconds"] + st["student_seconds"]})
            self.figures.add("eval/top1", 100 * acc)
        if self.logger:
            self.logger.log({**self.figures.epoch_means(), "student/lr": epoch_lr, **_rates(st)}, st["epoch"])
        self.save()
        self.last_save = time.time()
        return acc


def _book(rec: LossTermRecorder, figures: dict, prefix: str) -> None:
    """Numbers of ``figures`` (a method's synthesis figures, the student's loss terms) into ``rec``."""
    for k, v in figures.items():
        if (torch.is_tensor(v) and v.numel() == 1) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            rec.add(f"{prefix}/{k}", v)


def _grad_norm(opt: torch.optim.Optimizer) -> torch.Tensor:
    """The L2 norm of every gradient the optimiser is about to apply (before weight decay and momentum)."""
    norms = [torch.linalg.vector_norm(p.grad.detach().float()) for g in opt.param_groups for p in g["params"]
             if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def _rates(st: dict) -> dict:
    """Synthesis and student images/s so far in the cell (what ``timings`` reports at the end)."""
    out = {}
    if st["synth_seconds"] and st["synth_images"]:
        out["throughput/synthesis_images_per_s"] = st["synth_images"] / st["synth_seconds"]
    if st["student_seconds"]:
        out["throughput/student_images_per_s"] = st["student_images"] / st["student_seconds"]
    return out
