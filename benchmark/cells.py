"""Cells: one training run = task + scenario + fully resolved configuration + data fingerprint.  The key is a
stable hash of all of it (so a ``cpu`` result never answers a ``paper`` request) and names the cell's folder."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark import store
from benchmark.errors import BenchError


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Cell:
    config: dict

    @property
    def key(self) -> str:
        return stable_hash(self.config)

    @property
    def label(self) -> str:
        c = self.config
        if c.get("task") == "dfkd":
            return f"{c['method']} {c['scenario']} {c['teacher']}->{c['student']} seed {c['seed']}"
        if c.get("task") == "dfq":
            b = c.get("bits")
            bits = f" W{b['weights']}A{b['activations']}" if b else ""
            return f"{c['method']} {c['scenario']} {c['teacher']}{bits} seed {c['seed']}"
        return f"{c['method']} {c['scenario']} {c['phases']} phases seed {c['seed']}"

    @property
    def dirname(self) -> str:
        c = self.config
        return f"{c['scenario']}-p{c['phases']}-{c['method']}-s{c['seed']}-{self.key[:10]}"


def thread_entry(device_type: str) -> dict:
    """``{"torch_threads": n}`` for a CPU cell (nothing on CUDA), an entry of every cell's configuration and so of
    its key and of the keys of the models it shares (phase 0, teacher).  Float reductions on a CPU depend on the
    number of intra-op threads: a MNIST teacher trained with one thread scored 98.68 %, with two 98.83 %, and one
    phase-0 cache entry gave 59.82 % to one cell and 60.22 % to another, filled at another thread count.
    A key must name what was computed."""
    return {"torch_threads": torch.get_num_threads()} if device_type == "cpu" else {}


def phase0_key(config: dict, family: str) -> str:
    """What determines the phase-0 model of a method family: data, class order, phase-0 classes, model, phase-0
    recipe, seed and the phase-0 loss family; not the number of later phases nor the method."""
    keep = {k: config[k] for k in ("task", "scenario", "data_sha256", "class_order_seed", "seed", "model",
                                   "device_type", "torch_threads", "subset", "deterministic") if k in config}
    keep["base_classes"] = config["phase_sizes"][0]
    keep["recipe"] = config["recipe"]["base"]
    keep["family"] = family
    return stable_hash(keep)


class CellFolder:
    """A cell's folder: ``checkpoint.pt`` while it runs, ``result.json`` (carrying the cell key) when finished, and
    possibly a copy of a model other cells share (``phase0.pt``, ``teacher.pt``: see ``store.find_carried``)."""

    def __init__(self, cell: Cell, folder: Path):
        self.cell, self.cfg, self.dir = cell, cell.config, folder
        self.ckpt_path = folder / "checkpoint.pt"
        self.result_path = folder / "result.json"

    def finished(self) -> dict | None:
        if self.result_path.is_file():
            res = store.load_json(self.result_path)
            if res.get("key") == self.cell.key:
                return res
        return None

    def status(self) -> str:
        return "finished" if self.finished() else "partial" if self.ckpt_path.is_file() else "new"

    def checkpoint_state(self) -> dict | None:
        """The progress a partial cell saved (its checkpoint's ``state``: phases or epochs done), for ``--dry-run``;
        None without a readable checkpoint of this cell (the run itself reports what is wrong with it)."""
        if not self.ckpt_path.is_file():
            return None
        try:
            return store.load_torch(self.ckpt_path, self.cell.key).get("state")
        except BenchError:
            return None
