"""The executor seam: runs a list of cells through a function.  ``SequentialExecutor`` runs them in this process,
one after another; a distributed executor only has to implement ``run`` with the same contract (each cell writes
its own folder, so results from many machines merge by copying folders)."""
from __future__ import annotations

from typing import Callable, Iterable

from tqdm.auto import tqdm


class SequentialExecutor:
    def run(self, cells: Iterable, fn: Callable, progress: bool = True) -> list:
        cells = list(cells)
        out = []
        bar = tqdm(cells, desc="cells", unit="cell", disable=not progress, position=0)
        for cell in bar:
            bar.set_postfix_str(cell.label)
            out.append(fn(cell))
        return out


EXECUTORS = {"sequential": SequentialExecutor}
