"""Name -> factory registries (scenarios, models, methods, profiles) that the CLI and ``--list`` read, and the
discovery of the packages that fill the method registries.

Methods live outside the framework (``baselines/``, ``strategies/``, a user's own package) and register themselves
when their package is imported; ``benchmark`` never imports them by name.  ``load_methods`` imports every package
named in the ``rgal_bench.methods`` entry-point group (``setup.cfg``), so a package of your own that declares the
same group adds its methods to ``--list``, ``--methods`` and the reports without touching this repository.
"""
from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from dataclasses import dataclass, field
from typing import Any, Callable

from benchmark.errors import BenchError


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str = ""
    extra: dict = field(default_factory=dict)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None, *, description: str = "", **extra):
        def deco(fn):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, fn, description, extra)
            return fn

        return deco(factory) if factory is not None else deco

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise BenchError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())} (see --list)")
        return self._entries[name]

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).factory

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entries(self) -> list[Entry]:
        return list(self._entries.values())


METHOD_ENTRY_POINTS = "rgal_bench.methods"


@functools.cache
def load_methods() -> tuple[str, ...]:
    """Imports every method package of the ``rgal_bench.methods`` entry points (once); returns their module names.
    Without an installed distribution (a bare checkout on ``sys.path``) there are none: the command line imports its
    own packages directly."""
    names = tuple(ep.value for ep in entry_points(group=METHOD_ENTRY_POINTS))
    for name in names:
        importlib.import_module(name)
    return names


def import_submodules(package: str, path, first: tuple[str, ...] = ()) -> None:
    """Imports ``first`` (in that order: the ``--list`` order), then every other module of ``package`` (``path``:
    its ``__path__``) in name order, so that a method is added by adding its file."""
    import pkgutil

    rest = sorted(m.name for m in pkgutil.iter_modules(path) if not m.ispkg and m.name not in first)
    for name in (*first, *rest):
        importlib.import_module(f"{package}.{name}")
