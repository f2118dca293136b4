"""The data-free distillation method contract (CMI's ``synthesize()`` / ``train()`` split), its context and its
registry: the framework side.  The methods live in ``strategies.dfkd`` and register here when their package is
imported (the command line does that); the framework never imports them.

The runner (``benchmark/dfkd_runner.py``) drives every method the same way, as CMI's ``datafree_kd.py`` does: an
epoch is ``ep_steps // kd_steps`` rounds; a round is ``synthesize()`` (``g_steps`` generator or pixel steps) followed
by ``kd_steps`` student steps, each minimising ``student_loss()`` with the student's SGD optimiser over
``trainable()``.  Pool-based methods (CMI, DeepInversion, RGAL) synthesise one batch into the pool per round and take
``kd_steps = ep_steps`` student steps on pool batches; generator-based ones (DAFL, ZSKT, DFQ, DFAD) take 1 generator
step and 5 (10 for DFQ) student steps on fresh generator samples per round.

The teacher is always in eval mode with frozen parameters.  The student is in train mode during student steps and in
eval mode while a synthesiser queries it (CMI).  Every random draw of a method comes from ``ctx.generator`` (a seeded
``torch.Generator`` whose state the checkpoints keep) or from the global RNG (also checkpointed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.augment import AugmentSpec, augment_batch, random_crop, random_flip
from benchmark.hparams import param_entries
from benchmark.registry import Registry

DFKD_METHODS = Registry("dfkd method")


@dataclass
class DFKDContext:
    teacher: torch.nn.Module  # benchmark.models.base.Net, eval mode, frozen
    student: torch.nn.Module
    params: dict  # the method's hyper-parameters (resolved)
    recipe: object  # benchmark.dfkd_profiles.DistillRecipe
    n_classes: int
    image_shape: tuple  # (C, H, W)
    mean: tuple
    std: tuple
    augment: AugmentSpec  # augmentation of pool images for student steps (CIFAR: crop 4 + flip; MNIST: none)
    device: torch.device
    generator: torch.Generator
    pool_dir: Path | None = None
    pool_key: str = ""
    real_data: tuple | None = None  # (x_train uint8, y_train): only the with-data reference row uses it


class DFKDMethod:
    name = "dfkd"
    uses_pool = False
    reference = False  # a reference row (teacher, KD with real data), not a data-free method
    needs_student = True  # False: the row is the teacher itself
    synthesizes = True  # False: no synthetic data (the with-data reference)

    def __init__(self, ctx: DFKDContext):
        self.ctx, self.p = ctx, ctx.params
        self.teacher, self.student, self.device = ctx.teacher, ctx.student, ctx.device
        self.gen = ctx.generator
        # the weighted terms of the latest ``student_loss`` (detached), for the experiment logs (--log); a method
        # whose student loss has several terms fills it
        self.student_terms: dict[str, torch.Tensor] = {}

    # -- schedule ----------------------------------------------------------------------------------------------
    @property
    def g_steps(self) -> int:
        return int(self.p.get("g_steps", 1))

    @property
    def kd_steps(self) -> int:
        return int(self.p.get("kd_steps") or self.ctx.recipe.ep_steps)

    @property
    def student_first(self) -> bool:
        """Whether a round takes its student steps before its synthesis (default: synthesis first, CMI's order)."""
        return False

    @property
    def student_batch(self) -> int:
        return int(self.p["student_batch"])

    @property
    def row_name(self) -> str:
        """The row in the tables (a variant may rename it, e.g. ``rgal[released]``)."""
        return self.name

    # -- the split ---------------------------------------------------------------------------------------------
    def trainable(self) -> list[torch.nn.Parameter]:
        """Parameters of the student's optimiser (the student, plus e.g. RGAL's embedding projection)."""
        return list(self.student.parameters())

    def synthesize(self) -> dict:
        """One synthesis round; returns figures for the log (loss, images made)."""
        return {}

    def student_loss(self) -> tuple[torch.Tensor, int]:
        """The loss of one student step and the number of images it used."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def end_epoch(self, lr_factor: float) -> None:
        """Called after the student's schedule stepped; ``lr_factor`` is its learning rate over the initial one
        (1 without a schedule).  A method with optimisers of its own may follow the student's decay."""

    def extra_results(self) -> dict:
        return {}

    @torch.no_grad()
    def analysis_images(self, n: int) -> torch.Tensor | None:
        """Up to ``n`` synthetic [0, 1] images for the diversity analysis (None: the method makes none)."""
        return None

    # -- helpers shared by the methods -------------------------------------------------------------------------
    def randn(self, *shape) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, device=self.gen.device).to(self.device)

    def random_targets(self, n: int) -> torch.Tensor:
        """A synthesis round's one-hot targets as CMI's and RGAL's released synthesisers draw them: uniform random
        classes, sorted (class-balanced in expectation, whatever the teacher currently predicts)."""
        targets = torch.randint(self.ctx.n_classes, (n,), generator=self.gen, device=self.gen.device)
        return targets.sort().values.to(self.device)

    def synthesis_augment(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable augmentation of synthetic [0, 1] images during synthesis (CMI / RGAL: random crop with
        padding 4 and horizontal flip for CIFAR; whatever ``ctx.augment`` holds, brightness excluded)."""
        a = self.ctx.augment
        if a.crop_padding:
            x = random_crop(x, a.crop_padding, self.gen)
        if a.flip:
            x = random_flip(x, self.gen)
        return x

    def augment_pool_batch(self, xb: torch.Tensor) -> torch.Tensor:
        x = augment_batch(xb, self.ctx.augment, self.gen)
        if self.ctx.recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def register_dfkd_method(name: str, *, params: type | tuple[type, ...] = (), defaults: dict | None = None,
                         exclude: tuple[str, ...] = (), published: str = "", description: str = "",
                         reference: bool = False,
                         synthesis_cost: float = 0.65, generator: bool = True):
    """Class decorator: registers a ``DFKDMethod`` with its hyper-parameters, declared as for the CIL methods
    (``benchmark.methods.register_method``: ``params`` dataclasses, ``defaults`` replacing declared defaults,
    ``exclude``: declared fields the method does not have).
    ``synthesis_cost`` and ``generator`` feed ``--dry-run``'s estimate
    (``benchmark.dfkd_estimates.predicted_dfkd_seconds``): one synthesis step per image costs ``synthesis_cost``
    teacher-plus-student training passes, plus a generator's forward and backward when ``generator``."""
    def deco(cls):
        cls.name = name
        cls.reference = reference
        DFKD_METHODS.register(name, cls, description=description, published=published, rows=[name],
                              memory="none", reference=reference, synthesis_cost=synthesis_cost, generator=generator,
                              **param_entries(params, defaults, exclude))
        return cls

    return deco
