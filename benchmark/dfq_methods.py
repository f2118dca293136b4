"""The data-free quantization method contract and its registry (``--task dfq``): the framework side.  The methods
live in ``strategies.dfq`` and register here when their package is imported; the framework never imports them.

A quantization method is a distillation method (``benchmark.dfkd_methods.DFKDMethod``: ``synthesize()`` /
``student_loss()``, driven by the same loop) whose student is a fake-quantized copy of the teacher
(``benchmark.quantization``), plus the two stages the official GDFQ / IntraQ loops add:

* ``calibration_images()`` -- one iteration of a warm-up epoch (the first ``warmup_epochs`` of the schedule): the
  images the runner passes through the student while its activation ranges track, no student update (GDFQ ``trainer.py``: ``if epoch <
  warmup_epochs`` the student is only forwarded; IntraQ ``trainer_direct.py``: the same on a batch-16 GDFQ generator);
* ``prepare(save)`` -- once, when the warm-up is over and the ranges frozen, before the first training epoch (IntraQ
  synthesises its fixed image set here; ``save()`` checkpoints the cell, so a long synthesis resumes).

The student always runs in eval mode (both official trainers call ``model.eval()`` every epoch: BatchNorm keeps the
teacher's running statistics while its affine parameters train).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.dfkd_methods import DFKDContext, DFKDMethod
from benchmark.hparams import param_entries
from benchmark.registry import Registry

DFQ_METHODS = Registry("dfq method")


@dataclass
class DFQContext(DFKDContext):
    weight_bits: int = 8
    act_bits: int = 8
    artefact_path: Path | None = None  # where a method caches what cells of other bit-widths can share (IntraQ)


class DFQMethod(DFKDMethod):
    name = "dfq"
    family = "gdfq"  # the schedule (``benchmark.dfq_profiles``) the method runs under

    @property
    def kd_steps(self) -> int:
        return 1  # both official loops: one student step per iteration

    def calibration_images(self) -> torch.Tensor:
        """The images of one warm-up iteration (the runner forwards them through the student, ranges tracking)."""
        raise NotImplementedError

    def prepare(self, save) -> dict:
        """Once after the warm-up; returns figures for the results (e.g. synthesis time)."""
        return {}

    @staticmethod
    def artefact_key(cfg: dict) -> str | None:
        """The key of what this cell's method would share with cells of other bit-widths (None: nothing)."""
        return None


def register_dfq_method(name: str, *, family: str, params: type | tuple[type, ...] = (), defaults: dict | None = None,
                        exclude: tuple[str, ...] = (), published: str = "", description: str = "",
                        rgal_baseline: str | None = None, synthesis_cost: float = 1.0):
    """Class decorator: registers a ``DFQMethod`` (hyper-parameters declared as for the other tasks).
    ``rgal_baseline``: the method an ``+rgal`` variant adds to (the reports' paired gains); ``published``: its name
    in ``published.csv`` (Table 12)."""
    def deco(cls):
        cls.name, cls.family = name, family
        DFQ_METHODS.register(name, cls, description=description, published=published or name, family=family,
                             rgal_baseline=rgal_baseline, synthesis_cost=synthesis_cost,
                             **param_entries(params, defaults, exclude))
        return cls

    return deco
