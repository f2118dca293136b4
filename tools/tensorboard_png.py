"""The scalars of a cell's TensorBoard event files (``--log tensorboard`` writes them to ``<cell>/tb/``) as one PNG:
a panel per scalar, grouped as TensorBoard groups them (``train/``, ``eval/``, ...), for a README, a paper's
appendix or a machine without a browser.

    python tools/tensorboard_png.py runs/x/cifar100-mini-p10-pass+rgal-s0-.../tb docs/img/tensorboard-pass-rgal.png
    python tools/tensorboard_png.py CELL/tb OUT.png --tags 'train/*' 'eval/*/seen_acc'
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import sys
from pathlib import Path


def read_scalars(folder: Path) -> dict[str, tuple[list[int], list[float]]]:
    """tag -> (steps, values) of every scalar in the event files under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    ea.Reload()
    return {tag: ([e.step for e in ea.Scalars(tag)], [e.value for e in ea.Scalars(tag)])
            for tag in ea.Tags()["scalars"]}


def plot(scalars: dict, out: Path, title: str = "", columns: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = sorted(scalars, key=lambda t: (t.split("/")[0] != "train", t))
    rows = math.ceil(len(tags) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.5 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        steps, values = scalars[tag]
        ax.plot(steps, values, marker="o" if len(steps) <= 12 else None, markersize=3, linewidth=1.2)
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("phase" if tag.startswith("eval/") else "epoch (over the cell)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tags):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", type=Path, help="a folder of event files (a cell's tb/)")
    ap.add_argument("out", type=Path, help="the PNG to write")
    ap.add_argument("--tags", nargs="+", default=["*"], help="glob patterns of the tags to draw (default: all)")
    ap.add_argument("--title", default="", help="a title above the panels")
    a = ap.parse_args(argv)
    if not a.events.is_dir():
        print(f"error: no folder {a.events}; give a cell's tb/ folder (run with --log tensorboard)", file=sys.stderr)
        return 2
    scalars = {t: v for t, v in read_scalars(a.events).items() if any(fnmatch.fnmatch(t, p) for p in a.tags)}
    if not scalars:
        print(f"error: no scalar under {a.events} matches {' '.join(a.tags)}", file=sys.stderr)
        return 2
    print(plot(scalars, a.out, a.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
