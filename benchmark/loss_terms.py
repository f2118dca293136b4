"""Every loss term of a class-incremental method, separately, for the experiment loggers (``--log``).

In Avalanche a method's loss is the strategy's criterion plus whatever each plugin adds to ``strategy.loss`` in its
``before_backward`` (PASS: CE on the rotated batch, then the prototype loss, then the feature distillation; RGAL
adds its triplet term L_tri). ``LossTermRecorder.attach(strategy)`` measures each plugin's contribution without
touching any method: it wraps the ``before_backward`` of every plugin on the instance, reads ``strategy.loss``
before and after, and books the difference under the plugin's ``loss_name`` (a plugin attribute; default: its class
name without ``Plugin``, in snake case). ``criterion`` is the loss before any plugin, ``total`` the loss that is
back-propagated (after the last plugin), ``lr`` the step's learning rate. A plugin that changes nothing is not
booked (a contribution of exactly 0 at every step of an epoch). A plugin whose inner work has several terms, or
whose losses never enter ``strategy.loss`` (RGAL's prototype optimisation, Eq. 17: ``-L_adv + L_ntri + L_oh`` on the
samples), books them itself with ``record_term(strategy, name, value)``, which costs nothing when no recorder is
attached.

Values are kept as detached tensors and summed per epoch (no conversion to a Python number per step);
``epoch_means()`` returns the means of the epoch and starts the next. Reading the loss does not change it: a cell
logs the same numbers it computes without logging (tested).
"""
from __future__ import annotations

import re

import torch

ATTRIBUTE = "loss_terms"  # the strategy attribute that holds the recorder while one is attached


def default_loss_name(plugin) -> str:
    """``TripletLossPlugin`` -> ``triplet_loss``; a plugin's ``loss_name`` attribute wins."""
    name = getattr(plugin, "loss_name", None)
    if name:
        return str(name)
    base = type(plugin).__name__.lstrip("_").removesuffix("Plugin") or type(plugin).__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()


def overrides_before_backward(plugin) -> bool:
    """Whether ``plugin`` has a ``before_backward`` of its own (Avalanche's base plugins define every callback as a
    no-op, so ``hasattr`` says nothing)."""
    from avalanche.core import BasePlugin, BaseSGDPlugin, SupervisedPlugin

    fn = getattr(type(plugin), "before_backward", None)
    return fn is not None and all(fn is not getattr(base, "before_backward", None)
                                  for base in (BasePlugin, BaseSGDPlugin, SupervisedPlugin))


def record_term(strategy, name: str, value) -> None:
    """Books ``value`` (a scalar tensor or number) under ``name`` for the current step, if a recorder is attached."""
    rec = getattr(strategy, ATTRIBUTE, None)
    if rec is not None:
        rec.add(name, value)


class LossTermRecorder:
    """Per-epoch means of every loss term of a strategy (module docstring)."""

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = {}
        self._abs: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._optional: dict[str, bool] = {}
        self._criterion_only = False  # no plugin to wrap: end_step books the criterion (the loss then is just it)

    @classmethod
    def attach(cls, strategy, skip=()) -> "LossTermRecorder":
        """Wraps the ``before_backward`` of every plugin of ``strategy`` except ``skip`` (e.g. the suite's
        training plugin, which adds nothing) and returns the recorder; ``strategy.loss_terms`` holds it."""
        rec = cls()
        setattr(strategy, ATTRIBUTE, rec)
        hooked = [p for p in strategy.plugins if overrides_before_backward(p) and p not in skip]
        names = [default_loss_name(p) for p in hooked]
        for i, p in enumerate(hooked):  # two plugins of one class get distinct names
            name = names[i] if names.count(names[i]) == 1 else f"{names[i]}_{names[:i].count(names[i]) + 1}"
            p.before_backward = rec._wrap(p.before_backward, name, first=i == 0)
        rec._criterion_only = not hooked
        return rec

    def _wrap(self, fn, name: str, first: bool):
        def before_backward(strategy, **kwargs):
            before = strategy.loss.detach().clone() if torch.is_tensor(strategy.loss) else None
            if first and before is not None:
                self.add("criterion", before)
            fn(strategy, **kwargs)
            after = strategy.loss
            if before is not None and torch.is_tensor(after):
                self.add(name, after.detach() - before, optional=True)

        return before_backward

    def add(self, name: str, value, optional: bool = False) -> None:
        """``optional``: a plugin's measured contribution, left out of ``epoch_means`` when it was 0 at every step
        of the epoch (the plugin added nothing, e.g. a distillation term in phase 0)."""
        if torch.is_tensor(value):
            v = value.detach().double().sum()
        else:
            v = torch.tensor(float(value), dtype=torch.float64)
        if name in self._sums:
            self._sums[name] = self._sums[name] + v.to(self._sums[name].device)
            self._abs[name] = self._abs[name] + v.abs().to(self._abs[name].device)
        else:
            self._sums[name], self._abs[name] = v.clone(), v.abs()
            self._optional[name] = optional
        self._counts[name] = self._counts.get(name, 0) + 1

    def end_step(self, strategy) -> None:
        """Books the loss that is back-propagated and the step's learning rate (``lr``; its epoch mean is the
        epoch's rate whatever the schedule does between epochs); call it after every plugin's ``before_backward``."""
        if torch.is_tensor(getattr(strategy, "loss", None)):
            if self._criterion_only:
                self.add("criterion", strategy.loss)
            self.add("total", strategy.loss)
        opt = getattr(strategy, "optimizer", None)
        if opt is not None and opt.param_groups:
            self.add("lr", float(opt.param_groups[0]["lr"]))

    def epoch_means(self) -> dict[str, float]:
        """{term: mean over the steps that booked it} since the last call; resets."""
        out = {k: float(s) / self._counts[k] for k, s in self._sums.items()
               if not (self._optional[k] and float(self._abs[k]) == 0.0)}
        self._sums, self._abs, self._counts, self._optional = {}, {}, {}, {}
        return out
