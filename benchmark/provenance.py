"""What a result records of where it was made: the machine (CPU, cores, memory, GPU), library versions, the code's
commit and whether it had uncommitted changes, the thread count, and the command line.
"""
from __future__ import annotations

import functools
import platform
import subprocess
import sys
from pathlib import Path

import torch


def machine() -> str:
    """CPU model, core count and memory of this machine (what a wall time was measured on)."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores{mem}{gpu}"


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    """Library versions, machine and the code's commit, taken once per process, when its first cell starts (the
    commit checked out later, while a long sweep runs, is not the code that ran)."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform(), "machine": machine(),
           # intra-op threads (OMP_NUM_THREADS / torch default) of the process that ran the cell (of a resumed cell:
           # the last process): float reductions, hence numbers, and times are comparable only at equal thread counts
           "torch_threads": torch.get_num_threads()}
    for pkg in ("torch", "torchvision", "avalanche-lib", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    try:
        here = Path(__file__).resolve().parent
        # --no-optional-locks: `git status` would otherwise refresh .git/index, and a benchmark never writes into
        # the repository it runs from (a read-only or shared checkout, a concurrent `git commit`)
        git = ["git", "--no-optional-locks"]
        out["git_commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=here, timeout=10).stdout.strip() or None
        # uncommitted changes to the code (not to results/ or runs/) make the commit an incomplete description
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "benchmark", "baselines", "strategies",
                                "run_benchmark.py"], capture_output=True, text=True, cwd=here.parent, timeout=10).stdout
        out["git_dirty"] = bool(dirty.strip()) if out["git_commit"] else None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
