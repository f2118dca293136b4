"""Name -> factory registries (scenarios, models, methods, profiles) that the CLI and ``--list`` read."""
from __future__ import annotations

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
