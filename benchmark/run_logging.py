"""Experiment loggers of a cell (``--log tensorboard|wandb|csv``): TensorBoard, Weights & Biases, a CSV file.

What a cell logs: class-incremental cells, per epoch, the mean of every loss term (``train/<term>``, from
``benchmark.loss_terms``) and the learning rate; after every phase the accuracy-matrix row (``eval/<row>/acc_g<j>``),
the accuracy on the classes seen so far and the forgetting so far (``eval/<row>/seen_acc``, ``forgetting_max``).
Distillation cells, per epoch, the student loss and every synthesis term the method reports, the learning rate,
the synthesis and student images/s, and the student's test top-1 where it was evaluated.  Accuracies are in % (as
in the tables); the step is the epoch counted over the whole cell (``train/``) or the phase (``eval/``).

Files go into the cell folder: ``tb/`` (event files), ``wandb/`` (W&B's run folder), ``log.csv`` (long format:
``step,name,value,wall_time``).  W&B groups the cells of one sweep (``group`` = the ``--out`` folder name,
``name`` = the cell folder) and runs offline (``WANDB_MODE=offline``, ``wandb sync`` uploads later) unless
``WANDB_MODE`` says otherwise or an API key is set and ``api.wandb.ai`` answers within 3 s.

Why the libraries directly and not Avalanche's ``TensorboardLogger`` / ``WandBLogger`` / ``CSVLogger``: those
consume the metric stream of Avalanche's ``EvaluationPlugin``, which the suite does not use for training (its own
loop, ``benchmark.training``, and its own evaluation of every classifier, ``benchmark.evaluation``), and they
know nothing of per-term losses.  The same three back-ends, fed by the suite's own figures.

A logger is an observer: a failure of one (a full disk, a library error) prints one warning line, stops that
logger, and never stops the cell or changes a number (``CellLogger`` catches it; tested with a logger that raises).
A resumed cell appends: the epochs it repeats are logged again with the same step.
"""
from __future__ import annotations

import csv
import os
import socket
import sys
import time
from pathlib import Path

from benchmark.errors import BenchError

LOGGERS = ("tensorboard", "wandb", "csv")
# logger -> (module to import, optional extra of setup.cfg that installs it)
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


def check_loggers(names) -> tuple[str, ...]:
    """The requested loggers, deduplicated and checked: an unknown name or a missing library is a one-line
    ``BenchError`` naming the fix (before any cell starts)."""
    out = tuple(dict.fromkeys(names or ()))
    for name in out:
        if name not in LOGGERS:
            raise BenchError(f"unknown logger {name!r} for --log; choose from {', '.join(LOGGERS)}")
        if name in _NEEDS:
            module, extra = _NEEDS[name]
            try:
                __import__(module)
            except ImportError:
                raise BenchError(f"--log {name} needs the {module} package: pip install -e .[{extra}]") from None
    return out


class CSVSink:
    def __init__(self, path: Path):
        self.path = path
        new = not path.is_file()
        self._f = open(path, "a", newline="")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(["step", "name", "value", "wall_time"])

    def log(self, scalars: dict, step: int) -> None:
        t = round(time.time(), 3)
        for k, v in scalars.items():
            self._w.writerow([step, k, repr(float(v)), t])
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class TensorBoardSink:
    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._w = SummaryWriter(log_dir=str(folder))

    def log(self, scalars: dict, step: int) -> None:
        for k, v in scalars.items():
            self._w.add_scalar(k, float(v), step)
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; ``online`` with an API key and a reachable server; else ``offline``."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if not os.environ.get("WANDB_API_KEY"):
        return "offline"
    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=3).close()
        return "online"
    except OSError:
        return "offline"


class WandBSink:
    def __init__(self, folder: Path, group: str, name: str, config: dict):
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "rgal-bench"), group=group, name=name,
                               config=config, dir=str(folder), mode=wandb_mode(), reinit="create_new",
                               settings=wandb.Settings(silent=True, console="off"))

    def log(self, scalars: dict, step: int) -> None:
        # one W&B step axis per cell would refuse the phase-indexed eval/ figures after the epoch-indexed train/
        # ones (W&B steps only increase); each figure carries its own step instead
        self._run.log({**{k: float(v) for k, v in scalars.items()}, "step": step})

    def close(self) -> None:
        self._run.finish()


def _open(name: str, folder: Path, group: str, run_name: str, config: dict):
    if name == "csv":
        return CSVSink(folder / "log.csv")
    if name == "tensorboard":
        return TensorBoardSink(folder / "tb")
    return WandBSink(folder, group, run_name, config)


class CellLogger:
    """Fans a cell's figures out to its sinks; a failing sink is reported once and dropped (module docstring)."""

    def __init__(self, sinks: dict | None = None):
        self.sinks = dict(sinks or {})

    @classmethod
    def open(cls, names, folder: Path, group: str, run_name: str, config: dict) -> "CellLogger":
        out = cls()
        for name in names or ():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                out.sinks[name] = _open(name, folder, group, run_name, config)
            except Exception as e:  # noqa: BLE001 -- an observer never stops the cell
                _warn(name, folder, e)
        return out

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def log(self, scalars: dict, step: int) -> None:
        if not scalars:
            return
        for name, sink in list(self.sinks.items()):
            try:
                sink.log(scalars, int(step))
            except Exception as e:  # noqa: BLE001
                _warn(name, None, e)
                self.sinks.pop(name)

    def close(self) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001
                _warn(name, None, e)
        self.sinks = {}


def _warn(name: str, folder, e: Exception) -> None:
    where = f" in {folder}" if folder else ""
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    print(f"warning: the {name} logger failed{where} ({type(e).__name__}: {msg}); it stops, the cell goes on",
          file=sys.stderr)
