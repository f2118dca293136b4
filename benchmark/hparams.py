"""Typed hyper-parameters: what a method declares about each of its knobs, and the one check ``--set`` applies.

A method declares its hyper-parameters as a frozen dataclass whose fields are made with ``hp()`` (FACIL's
``extra_parser`` in ``src/approach/*.py`` gives every argument a type, a default and the paper's words; this is the
same idea as data, so that ``--list``, ``--set``, the cell key and the reports all read one declaration)::

    @dataclass(frozen=True)
    class LwFParams:
        temperature: float = hp(2.0, "softmax temperature of the distillation term", "Li & Hoiem Eq. 3, T = 2")
        kd_weight: float = hp(1.0, "weight of the distillation term", "FACIL lwf.py lamb", key_name="alpha")

Each field has a type (from its annotation), a default, a one-line help, its source (paper equation or official
code line), allowed values (``choices``) or a range (``low`` / ``high``, every number of the suite is >= 0 unless a
field says otherwise), and two compatibility markers:

* ``key_name``: the name under which a cell records the parameter (and so hashes it into its key): the name it had
  when its first results were committed.  The suite's names are common across methods (``temperature``,
  ``kd_weight``, RGAL's ``rgal_*`` for the synthesis side and ``triplet_*`` for the student side); ``--set`` and
  ``--config`` files take the old name too.  ``alias_table`` lists every renamed parameter (README, "Run it").
* ``key_neutral``: a parameter added after results were committed whose default reproduces the earlier
  behaviour: a cell leaves it out of its configuration while it holds that default (``record`` / ``complete``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import BenchError

_NO_HIGH = None


def hp(default: Any, help: str, source: str = "", *, choices: tuple = (), low: float | None = 0.0,
       high: float | None = _NO_HIGH, key_name: str | None = None, key_neutral: bool = False):
    """One hyper-parameter field (see the module docstring).  A list default (Adam's betas) becomes a tuple so
    that the dataclass stays hashable; cells record it as the JSON list it always was."""
    meta = {"help": help, "source": source, "choices": tuple(choices), "low": low, "high": high,
            "key_name": key_name, "key_neutral": key_neutral}
    return field(default=tuple(default) if isinstance(default, list) else default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # "bool", "int", "float", "str", "count" (null or a whole number >= 1), "numbers" (a list)
    default: Any
    help: str
    source: str = ""
    choices: tuple = ()
    low: float | None = 0.0
    high: float | None = None
    key_name: str = ""
    key_neutral: bool = False

    def check(self, value: Any, item: str) -> Any:
        """``value`` (parsed from JSON) as this parameter takes it, or a one-line error naming ``item``."""
        if self.choices and value not in self.choices:
            raise BenchError(f"--set {item!r}: {self.name} must be one of {', '.join(map(str, self.choices))}")
        like = json.dumps(list(self.default) if isinstance(self.default, tuple) else self.default)
        kind = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
                "numbers": "a list of numbers"}.get(self.type)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.type == "count":
            if value is not None and (type(value) is not int or value < 1):
                raise BenchError(f"--set {item!r}: {self.name} takes null (the method's own choice) or a whole "
                                 f"number >= 1, like 64")
            return value
        ok = {"bool": isinstance(value, bool), "int": number, "float": number, "str": isinstance(value, str),
              "numbers": isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                         for v in value)}[self.type]
        if not ok:
            raise BenchError(f"--set {item!r}: {self.name} takes {kind} like {like}")
        for v in (value if self.type == "numbers" else [value] if number else []):
            self._check_range(v, item, like)
        if self.type == "int" and type(value) is float:
            if not value.is_integer():
                raise BenchError(f"--set {item!r}: {self.name} takes an integer like {like}")
            return int(value)
        return float(value) if self.type == "float" else value  # --set w=1 is the same cell as the default 1.0

    def _check_range(self, v: float, item: str, like: str) -> None:
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if not (math.isfinite(v) and low <= v <= high):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            span = f">= {lo}" if self.high is None else f"within [{lo}, {self.high:g}]"
            raise BenchError(f"--set {item!r}: {self.name} must be a finite number {span}, like {like}")

    def recorded(self, value: Any) -> Any:
        """The value as a cell's configuration holds it (JSON: lists, not tuples)."""
        return list(value) if isinstance(value, tuple) else value


_TYPES = {bool: "bool", int: "int", float: "float", str: "str"}


def _type_name(tp) -> str:
    if tp in _TYPES:
        return _TYPES[tp]
    args = set(typing.get_args(tp))
    if args == {int, type(None)}:
        return "count"
    if typing.get_origin(tp) in (tuple, list):
        return "numbers"
    raise TypeError(f"hyper-parameter type {tp!r} is not one of bool, int, float, str, int | None, tuple[float, ...]")


def param_specs(*classes: type, defaults: dict | None = None, exclude: tuple[str, ...] = ()) -> dict[str, ParamSpec]:
    """Name -> spec of every field of the given hyper-parameter dataclasses (in order; a later class may not repeat
    a name), with ``defaults`` replacing declared defaults (a variant such as ``pass+rgal-random``) and the
    ``exclude``d fields left out (a method that has a shared piece but for some of its terms)."""
    specs: dict[str, ParamSpec] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in specs:
                raise TypeError(f"hyper-parameter {f.name!r} declared twice ({cls.__name__})")
            m = f.metadata
            if "help" not in m:
                raise TypeError(f"{cls.__name__}.{f.name} must be declared with hp() (default, help, source)")
            specs[f.name] = ParamSpec(f.name, _type_name(hints[f.name]), f.default, m["help"], m["source"],
                                      m["choices"], m["low"], m["high"], m["key_name"] or f.name, m["key_neutral"])
    for name in exclude:
        if specs.pop(name, None) is None:
            raise TypeError(f"cannot exclude {name!r}, which is not a declared hyper-parameter")
    for name, value in (defaults or {}).items():
        if name not in specs:
            raise TypeError(f"default for {name!r}, which is not a declared hyper-parameter")
        specs[name] = dataclasses.replace(specs[name], default=value)
    return specs


def default_values(specs: dict[str, ParamSpec]) -> dict:
    """Name -> default (JSON values), the resolved parameters of a method before profile and ``--set``."""
    return {n: s.recorded(s.default) for n, s in specs.items()}


def resolve_name(specs: dict[str, ParamSpec], name: str) -> str | None:
    """The declared name that ``name`` (the name itself or the key name a cell records) stands for."""
    if name in specs:
        return name
    return next((n for n, s in specs.items() if s.key_name == name), None)


def record(specs: dict[str, ParamSpec], params: dict) -> dict:
    """A method's resolved parameters as its cell records them: under their key names, key-neutral ones at their
    default left out."""
    return {specs[n].key_name: v for n, v in params.items()
            if not (specs[n].key_neutral and v == specs[n].recorded(specs[n].default))}


def complete(specs: dict[str, ParamSpec], recorded: dict) -> dict:
    """The inverse of ``record``: a cell's recorded parameters under the declared names, key-neutral defaults back.
    Names this version does not declare (a result of another version) are kept as they are."""
    out = {n: s.recorded(s.default) for n, s in specs.items() if s.key_neutral}
    for k, v in recorded.items():
        out[resolve_name(specs, k) or k] = v
    return out


def param_entries(params: type | tuple[type, ...], defaults: dict | None, exclude: tuple[str, ...] = ()) -> dict:
    """A registry entry's view of declared hyper-parameters: ``params`` (name -> ``ParamSpec``), ``defaults``,
    ``choices`` and ``key_neutral`` (what ``--set``, ``--list``, the cells and the reports read)."""
    specs = param_specs(*(params if isinstance(params, tuple) else (params,)), defaults=defaults, exclude=exclude)
    return {"params": specs, "defaults": default_values(specs),
            "choices": {n: s.choices for n, s in specs.items() if s.choices},
            "key_neutral": tuple(n for n, s in specs.items() if s.key_neutral)}


def alias_table(registries) -> list[tuple[str, str, str]]:
    """(method, old name, name) of every parameter recorded under another name than it is declared with."""
    return [(e.name, s.key_name, s.name) for reg in registries for e in reg.entries()
            for s in e.extra["params"].values() if s.key_name != s.name]


def parse_settings(settings: list[str], methods: list[str], registry=None) -> dict[str, dict]:
    """``[METHOD.]KEY=VALUE`` strings -> {method: {key: value}}, each value checked by the method's declared
    hyper-parameter (``benchmark.hparams.ParamSpec.check``); KEY may be a parameter's old name (its key name)."""
    import json

    from benchmark.errors import BenchError
    from benchmark.hparams import resolve_name
    from benchmark.methods import METHODS

    registry = registry or METHODS
    out: dict[str, dict] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--set {item!r}: expected [METHOD.]KEY=VALUE, e.g. --set pass+rgal.triplet_weight=0.2")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        method, dot, name = key.rpartition(".")
        if dot and not (method and name):
            raise BenchError(f"--set {item!r}: {'the method before' if not method else 'the parameter after'} '.' "
                             f"is missing; write METHOD.KEY=VALUE or KEY=VALUE")
        if method and method not in methods:
            raise BenchError(f"--set {item!r}: method {method!r} is not among --methods ({' '.join(methods)})")
        specs = {m: registry.entry(m).extra["params"] for m in ([method] if method else methods)}
        hit = {m: resolve_name(sp, name) for m, sp in specs.items() if resolve_name(sp, name)}
        if not hit:
            known = sorted({k for sp in specs.values() for k in sp})
            which = f"{method} has no" if method else "no selected method has a"
            raise BenchError(f"--set {item!r}: {which} parameter {name!r}; known: {', '.join(known) or '(none)'}")
        for m, declared in hit.items():
            out.setdefault(m, {})[declared] = specs[m][declared].check(value, item)
    return out
