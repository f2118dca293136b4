"""The suite's training loop glue for Avalanche strategies, as one plugin (``SuiteTrainingPlugin``).

What it replaces in Avalanche and why:
* **Data loading.** Avalanche's train loader runs torchvision transforms image by image in Python (about the cost of
  the forward pass of a small CIFAR net on 2 CPU cores).  Before each experience the plugin gathers
  ``strategy.adapted_dataset`` (the experience plus whatever replay plugins appended, e.g. iCaRL's exemplars) once
  into uint8 tensors on the training device and yields shuffled, batch-augmented minibatches from them
  (``benchmark.augment``).  Shuffling and augmentation draw from one seeded ``torch.Generator`` whose state is
  checkpointed.
* **Optimiser and schedule per phase.** Avalanche keeps the optimiser state across experiences by default; the
  official PASS / iCaRL code builds a new optimiser every phase.  The plugin builds a fresh optimiser (Adam or SGD)
  and a StepLR schedule at the start of every phase, and steps the schedule after every epoch.
* **Seen classes.** ``model.head.active`` is set to the number of classes seen so far (PASS / iCaRL's expanding
  classifier).
* **Mixed precision.**  A step's forward passes and losses -- the strategy's forward and criterion and every
  plugin's ``before_backward`` term -- run under the recipe's autocast (``benchmark.precision``): entered in this
  plugin's ``before_training_iteration`` and left in its ``before_backward``, the last of both callbacks, so backward
  and the optimiser step run outside it; fp16 also scales the loss.  End-of-phase statistics and evaluation run
  outside training iterations, in float32.
* **Checkpoints.** After every epoch the callback ``on_epoch_end(epoch)`` lets the runner save the state atomically;
  ``resume`` restores model, optimiser, schedule and generator states after the strategy's own
  ``before_training_exp`` work, so a resumed phase continues exactly where the saved one stopped.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader

from benchmark.augment import AugmentSpec, augment_batch
from benchmark.precision import StepPrecision
from benchmark.models.base import load_state


@dataclass
class PhaseRecipe:
    epochs: int
    lr: float
    optimizer: str = "adam"  # adam | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    lr_step: int = 0  # StepLR step size in epochs (0: constant lr)
    lr_gamma: float = 0.1
    channels_last: bool = False
    lr_milestones: tuple = ()  # MultiStepLR epochs (UCIR's [80, 120], MUC's [120, 160, 180]); replaces lr_step
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (benchmark.precision); a cell records the resolved one

    def as_dict(self) -> dict:
        """The recipe as it enters a cell's configuration (and key).  ``lr_milestones`` only when set and
        ``precision`` only when not float32, so the keys of every recipe without them -- all results made before
        the fields existed -- stay what they were."""
        d = asdict(self)
        if not self.lr_milestones:
            d.pop("lr_milestones")
        else:
            d["lr_milestones"] = list(self.lr_milestones)
        if self.precision == "fp32":
            d.pop("precision")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PhaseRecipe":
        return cls(**{**d, "lr_milestones": tuple(d.get("lr_milestones", ()))})

    def scheduler(self, optimizer):
        """The phase's per-epoch schedule: MultiStepLR at ``lr_milestones``, else StepLR(``lr_step``), else none."""
        if self.lr_milestones:
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.lr_milestones), self.lr_gamma)
        return torch.optim.lr_scheduler.StepLR(optimizer, self.lr_step, self.lr_gamma) if self.lr_step else None


def materialize(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All (x, y) of an (Avalanche) dataset as two tensors, without transforms beyond the dataset's own."""
    dl = DataLoader(dataset, batch_size=1024, shuffle=False, collate_fn=getattr(dataset, "collate_fn", None))
    xs, ys = [], []
    for b in dl:
        xs.append(b[0])
        ys.append(torch.as_tensor(b[1]))
    return torch.cat(xs), torch.cat(ys).long()


class TensorBatches:
    """Iterable over shuffled, augmented minibatches ``[x, y, t]`` of in-memory tensors, on ``device``."""

    def __init__(self, x, y, batch_size, augment: AugmentSpec, generator: torch.Generator, drop_last=False,
                 channels_last=False, on_batch=None, batch_indices=None):
        self.x, self.y, self.bs, self.aug, self.gen = x, y, batch_size, augment, generator
        # ``batch_indices(labels, batch_size, generator) -> [index tensor, ...]`` with ``num_batches(n, batch_size)``
        # replaces the shuffled partition (e.g. RGAL's paired sampling); None: a random permutation in chunks
        self.batch_indices = batch_indices
        self.on_batch = on_batch  # called with each batch's size (counts original images, before e.g. rotation)
        self.drop_last, self.channels_last = drop_last, channels_last
        self.t = torch.zeros(2 * batch_size, dtype=torch.long, device=x.device)

    def __len__(self):
        n = len(self.y)
        if self.batch_indices is not None:
            return self.batch_indices.num_batches(n, self.bs)
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def _index_batches(self):
        if self.batch_indices is not None:
            return [i.to(self.x.device) for i in self.batch_indices(self.y, self.bs, self.gen)]
        perm = torch.randperm(len(self.y), generator=self.gen, device=self.gen.device).to(self.x.device)
        return [perm[i * self.bs:(i + 1) * self.bs] for i in range(len(self))]

    def __iter__(self):
        for idx in self._index_batches():
            xb = augment_batch(self.x[idx], self.aug, self.gen)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if self.on_batch:
                self.on_batch(len(idx))
            yield [xb, self.y[idx], self.t[: len(idx)]]


def rng_state() -> dict:
    """All global RNG states, as tensors and plain containers (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": random.getstate(),
          "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                    "gauss": float(gauss)}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def restore_optimisation(ck: dict, opt, sched, gen: torch.Generator) -> None:
    """A checkpoint's optimiser, schedule (if any), generator and global RNG states, loaded into a resumed run's own
    objects (a distillation cell, a teacher's training)."""
    opt.load_state_dict(ck["optimizer"])
    if sched:
        sched.load_state_dict(ck["scheduler"])
    gen.set_state(ck["generator"])
    set_rng_state(ck["rng"])


def deterministic_kernels(device_type: str, strict: bool = False) -> None:
    """On CPU, the kernels that PyTorch may run non-deterministically use their deterministic variant.  Without it,
    RGAL distillation differs between two identical runs at 2 threads from epoch 1 (bit-identical at 1 thread):
    the backward of advanced indexing (``emb[anchors]`` in the triplet losses, ``index_put_``
    with accumulation): with more than one thread and more than 32768 elements it adds with CPU atomics, in an
    order that varies run to run.  ``torch.use_deterministic_algorithms`` makes that accumulation serial (on a CPU
    the switch concerns such accumulations: ``index_put_`` / ``put_`` with ``accumulate``); it is not slower: the
    backward of a triplet loss over 4,000 triplets of 256 x 64 embeddings at 2 threads took 4.6 ms serial against
    8.7 ms with atomics (medians, interleaved, this project's 2-core machine).  ``warn_only``: an op
    without a deterministic variant warns instead of failing.  On CUDA the default kernels stay (cuDNN and atomics:
    CUDA runs are not bit-reproducible, as everywhere in the field) unless ``strict`` (``--deterministic``): then every
    op must use a deterministic kernel (an op without one is an error, not a warning), cuDNN picks deterministic
    algorithms without benchmarking, and cuBLAS gets the workspace setting its deterministic mode needs
    (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, PyTorch's reproducibility notes).  Called at the start of every cell, it
    sets the whole state, so a strict cell does not leak into the next one."""
    import os

    if strict:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(strict or device_type == "cpu", warn_only=not strict)
    torch.backends.cudnn.deterministic = strict
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(params, r: PhaseRecipe) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay)
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
    raise ValueError(f"unknown optimizer {r.optimizer!r}")


class SuiteTrainingPlugin(SupervisedPlugin):
    """Fast tensor data, per-phase optimiser / schedule, seen-class slicing, epoch callbacks and resume.

    ``recipe_for(phase) -> PhaseRecipe``; ``params_for(strategy)`` gives the parameters to optimise (default: all).
    Must be the *last* plugin of the strategy so that ``resume`` runs after every other ``before_training_exp``.
    """

    def __init__(self, net, recipe_for: Callable[[int], PhaseRecipe], augment: AugmentSpec,
                 seen_classes: Callable[[int], int], device, params_for=None):
        super().__init__()
        self.net = net
        self.recipe_for, self.augment, self.seen_classes = recipe_for, augment, seen_classes
        self.device = torch.device(device)
        self.params_for = params_for or (lambda s: s.model.parameters())
        self.generator = torch.Generator(device=self.device)
        self.phase = 0
        self.epoch = 0  # epochs finished in the current phase
        self.scheduler = None
        self.on_epoch_end: Callable[[int], None] | None = None
        self.pending_resume: dict | None = None
        self.images_seen = 0
        # generators a method owns (prototype sampling, triplet sampling, ...): their states are checkpointed with
        # every epoch so that a phase resumed mid-way draws what the uninterrupted phase would have drawn
        self.generators: dict[str, torch.Generator] = {}
        # other per-phase state of a method's plugins (``training_state()`` / ``load_training_state(st)``), e.g. the
        # prototype movements RGAL's L'_g has measured so far in the phase
        self.stateful: dict[str, object] = {}
        self.precision = StepPrecision("fp32", self.device.type)
        self._autocast = None  # the autocast context of the step in progress

    # -- state -------------------------------------------------------------------------------------------------
    def training_state(self, strategy) -> dict:
        return {"model": strategy.model.state_dict(), "optimizer": strategy.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else {}, "epoch": self.epoch,
                "generator": self.generator.get_state(), "rng": rng_state(),
                "generators": {name: g.get_state() for name, g in self.generators.items()},
                "stateful": {name: obj.training_state() for name, obj in self.stateful.items()},
                "scaler": self.precision.state_dict()}

    # -- callbacks ---------------------------------------------------------------------------------------------
    def before_training_exp(self, strategy, **kwargs):
        r = self.recipe_for(self.phase)
        self.net.set_active_classes(self.seen_classes(self.phase))
        if r.channels_last:
            self.net.to(memory_format=torch.channels_last)
        x, y = materialize(strategy.adapted_dataset)
        # a plugin with a ``batch_indices_for`` provider (RGAL's PairedSamplingPlugin) decides how batches are formed
        provider = next((p.batch_indices_for(strategy) for p in strategy.plugins if hasattr(p, "batch_indices_for")),
                        None)
        strategy.dataloader = TensorBatches(x.to(self.device), y.to(self.device), r.batch_size, self.augment,
                                            self.generator, channels_last=r.channels_last, on_batch=self._count,
                                            batch_indices=provider)
        strategy.optimizer = make_optimizer(self.params_for(strategy), r)
        self.scheduler = r.scheduler(strategy.optimizer)
        self._set_precision(strategy, r.precision)
        self.epoch = 0
        if self.pending_resume is not None:
            st, self.pending_resume = self.pending_resume, None
            load_state(strategy.model, st["model"])
            strategy.optimizer.load_state_dict(st["optimizer"])
            if self.scheduler and st["scheduler"]:
                self.scheduler.load_state_dict(st["scheduler"])
            self.epoch = int(st["epoch"])
            self.generator.set_state(st["generator"])
            for name, g_state in st.get("generators", {}).items():
                self.generators[name].set_state(g_state)
            for name, obj_state in st.get("stateful", {}).items():
                self.stateful[name].load_training_state(obj_state)
            self.precision.load_state_dict(st.get("scaler", {}))
            set_rng_state(st["rng"])

    def _count(self, n: int) -> None:
        self.images_seen += n

    # -- mixed precision ---------------------------------------------------------------------------------------
    def _set_precision(self, strategy, precision: str) -> None:
        self.precision = StepPrecision(precision, self.device.type)
        if self.precision.scaler is not None:  # fp16: scaled backward and a skipped step on inf / NaN gradients
            sp = self.precision
            strategy.backward = lambda: sp.backward(strategy.loss, retain_graph=strategy.retain_graph)
            strategy.optimizer_step = lambda: sp.step(strategy.optimizer)

    def leave_autocast(self) -> None:
        if self._autocast is not None:
            ctx, self._autocast = self._autocast, None
            ctx.__exit__(None, None, None)

    def before_training_iteration(self, strategy, **kwargs):
        self.leave_autocast()
        self._autocast = self.precision.autocast()
        self._autocast.__enter__()

    def before_backward(self, strategy, **kwargs):
        self.leave_autocast()
        recorder = getattr(strategy, "loss_terms", None)  # --log: benchmark.loss_terms; this plugin runs last
        if recorder is not None:
            recorder.end_step(strategy)

    def after_training_iteration(self, strategy, **kwargs):
        self.leave_autocast()  # a step with no backward (none in the suite) must not leak autocast

    def after_training_exp(self, strategy, **kwargs):
        self.leave_autocast()

    def after_training_epoch(self, strategy, **kwargs):
        if self.scheduler:
            self.scheduler.step()
        self.epoch += 1
        if self.on_epoch_end:
            self.on_epoch_end(self.epoch)
