"""The class-incremental method interface the runner drives, and the method registry.

A method wraps an Avalanche strategy (``self.strategy``) built around the suite's model and
``SuiteTrainingPlugin``.  The runner calls, for every phase k: ``train_phase(k, experience)``, then evaluates every
classifier that ``scores(x)`` returns (one row each in the tables: e.g. iCaRL's CNN and nearest-mean-of-exemplars,
computed from one forward pass).
``state_dict()`` / ``load_state_dict()`` carry the method's own state between phases (previous model, Fisher
information, exemplars, ...) so that checkpoints load with ``torch.load(weights_only=True)``.

Phase 0 of methods that train it identically (same loss family and recipe) is shared through a cache:
``phase0_family`` names the loss of phase 0 ("ce": softmax cross-entropy, "bce": iCaRL's sigmoid binary
cross-entropy); the cached weights are loaded and the method's end-of-phase work (copying the old model, Fisher,
herding) runs on them.  ``phase0_params`` lists the method's hyper-parameters that change phase 0 (PASS's
temperature, UCIR's last ReLU) with the value at which the plain family applies; any other value gets a family of its
own (``pass-temperature=0.5``), so that it neither loads nor fills the shared entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from benchmark.hparams import complete, hp, param_entries, record
from benchmark.registry import Registry

METHODS = Registry("method")


@dataclass
class MethodContext:
    """Everything a method factory needs."""

    model: torch.nn.Module  # benchmark.models.base.Net
    scenario: object  # benchmark.scenarios.Scenario
    recipe_for: Callable  # phase -> PhaseRecipe
    params: dict  # the method's own hyper-parameters (resolved)
    device: torch.device
    seed: int = 0  # the cell's training seed (for generators a method owns, e.g. prototype computation)
    data_root: str | None = None  # where a method finds extra data of its own (MUC's auxiliary images)


class CILMethod:
    name = "method"
    # no default: a method whose phase 0 trains another loss than the one it names would load (and fill) the wrong
    # cached phase 0, so every registered method states it (``register_method`` refuses a class that does not)
    phase0_family: str | None
    phase0_params: dict = {}  # hyper-parameter -> its value in the plain family (module docstring)
    outputs_per_class = 1  # PASS's rotation head has 4
    offline = False  # True: one training on all classes (joint training), an upper bound, not an incremental method
    memory_note = "none"

    @classmethod
    def phase0_family_for(cls, params: dict) -> str | None:
        """The phase-0 family under these parameters: ``phase0_family``, refined by every ``phase0_params`` entry set
        away from its plain value (``repr``: 0.5 and 0.5000001 are different families)."""
        if cls.phase0_family is None:
            return None
        odd = [f"{k}={params[k]!r}" for k, plain in cls.phase0_params.items() if k in params and params[k] != plain]
        return "-".join([cls.phase0_family, *odd])

    @classmethod
    def later_cost_scale(cls, params: dict) -> float:
        """Factor on the registered later-phase ``cost`` under these parameters (wall-time estimate only)."""
        return 1.0

    @classmethod
    def key_data(cls, params: dict, scenario, data_root) -> dict:
        """Fingerprints of data the method reads besides the scenario's (MUC's auxiliary images), added to the cell's
        configuration so that a change of that data makes a new cell."""
        return {}

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx
        self.model = ctx.model
        self.strategy = None  # set by subclasses
        self.suite_plugin = None

    # -- training ----------------------------------------------------------------------------------------------
    def train_phase(self, k: int, experience, epochs: int) -> None:
        # the suite plugin restores checkpoints in before_training_exp, after every other plugin's callback: a method
        # that appended a plugin after building its strategy need not remember to move it (``put_last``)
        put_last(self.strategy, self.suite_plugin)
        self.suite_plugin.phase = k
        self.strategy.train_epochs = epochs
        self.strategy.clock.train_exp_counter = k
        try:
            self.strategy.train(experience, eval_streams=[])
        finally:  # an exception inside a step leaves no autocast behind (benchmark.precision)
            self.suite_plugin.leave_autocast()

    # -- evaluation --------------------------------------------------------------------------------------------
    def scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Row name -> class scores of the batch ``x`` (argmax = prediction)."""
        return {self.name: self.model(x)}

    def extra_results(self) -> dict:
        """Method-specific figures stored in ``result.json`` under ``extra`` (e.g. RGAL's prototype movement)."""
        return {}

    # -- state -------------------------------------------------------------------------------------------------
    def phase0_state(self) -> dict:
        """The weights stored in the shared phase-0 cache: those of the plain network (a method that adds modules
        to it, like MUC's side classifiers, leaves them out so that every method of the family can load them)."""
        return self.model.state_dict()

    def load_phase0_state(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def register_method(name: str, *, params: type | tuple[type, ...] = (), defaults: dict | None = None,
                    published: str = "", memory: str = "none", rows: list[str] | None = None,
                    description: str = "", recipe_group: str | None = None, cost: tuple[float, float] = (1.0, 1.0),
                    rgal_baseline: str | None = None):
    """Class decorator: registers a ``CILMethod`` subclass with its hyper-parameters.  ``params``: the dataclass(es)
    declaring them (``benchmark.hparams``: type, default, help, source, choices or range, key name, key-neutral),
    merged in order; ``defaults`` replaces declared defaults for this registration (a variant such as
    ``pass+rgal-random``).  ``recipe_group`` names the profile recipes the method trains with
    (``Profile.group_recipes``; default: the shared recipe).  ``cost``: training compute per image of phase 0 and
    of later phases, in plain forward+backward passes (PASS's rotation: 4; a frozen previous model's forward adds
    about 1/3; RGAL's paired sampling doubles an epoch; the PASS family's are fitted to measured cells instead, see
    ``strategies.pass_method.PASS_PHASE0_COST``); used only to predict wall time (``later_cost_scale`` scales the
    later phases' by the method's parameters).  ``rgal_baseline``: the method without RGAL this one is compared
    with (the reports' paired RGAL gains and the ablation table)."""

    def deco(cls):
        if not hasattr(cls, "phase0_family"):
            raise TypeError(f"method {name!r} ({cls.__name__}) must set phase0_family: the loss its phase 0 trains "
                            f"(\"ce\", \"bce\", a family of its own, or None when its phase 0 is never shared)")
        cls.name = name
        cls.memory_note = memory
        METHODS.register(name, cls, description=description, published=published, memory=memory,
                         rows=rows or [name], recipe_group=recipe_group, cost=tuple(cost),
                         rgal_baseline=rgal_baseline,
                         **param_entries(params, defaults))
        return cls

    return deco


def quiet_evaluator():
    """An Avalanche evaluator that computes and prints nothing: evaluation is the suite's (``evaluation.py``)."""
    import warnings

    from avalanche.training.plugins import EvaluationPlugin

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(loggers=[])


@dataclass(frozen=True)
class ExemplarParams:
    """The exemplar memory of the methods that keep exemplars (CONVENTIONS.md: 20 per class, growing; ``--memory-total
    M``: M in total, fixed)."""

    memory_per_class: int = hp(20, "exemplars kept per seen class (the memory grows)",
                               "CONVENTIONS.md; iCaRL / UCIR: 20")
    memory_total: int | None = hp(None, "a fixed total memory instead (null: memory_per_class)",
                                  "iCaRL Sec. 4: K = 2000 in total")


EXEMPLAR_DEFAULTS = {"memory_per_class": ExemplarParams.memory_per_class, "memory_total": None}


def exemplar_memory_note(params: dict) -> str:
    """The table note of an exemplar method's memory: ``--memory-total`` or the per-class size (profiles and
    ``--set memory_per_class`` change it)."""
    if params.get("memory_total"):
        return f"{params['memory_total']} exemplars in total"
    return f"{params['memory_per_class']} exemplars per class (growing)"


def make_suite_plugin(ctx: MethodContext, seen_classes=None, params_for=None):
    from benchmark.training import SuiteTrainingPlugin

    sc = ctx.scenario
    return SuiteTrainingPlugin(ctx.model, ctx.recipe_for, sc.spec.augment, seen_classes or sc.seen_after, ctx.device,
                               params_for=params_for)


def placeholder_optimizer(model):
    """Avalanche strategies need an optimiser at construction; the suite plugin builds the real one per phase."""
    return torch.optim.SGD(model.parameters(), lr=0.0)


def put_last(strategy, plugin) -> None:
    """The suite plugin restores checkpoints in ``before_training_exp`` and must run after every other plugin."""
    strategy.plugins = [p for p in strategy.plugins if p is not plugin] + [plugin]


def cell_params(method: str, params: dict, registry=None) -> dict:
    """A method's resolved parameters as its cell records them (``benchmark.hparams.record``: under their key
    names, key-neutral ones at their default left out).  ``registry``: ``METHODS`` (default) or the data-free
    methods' ``DFKD_METHODS``."""
    return record((registry or METHODS).entry(method).extra["params"], params)


def full_params(method: str, cell_params_: dict, registry=None) -> dict:
    """The inverse of ``cell_params``: a cell's recorded parameters under their declared names, completed with the
    key-neutral defaults."""
    return complete((registry or METHODS).entry(method).extra["params"], cell_params_)
