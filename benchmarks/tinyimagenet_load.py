"""Load cost of Tiny-ImageNet on the full-size layout: first load (decode 110,000 JPEGs, write the decoded cache),
second load (from the cache), peak memory of each, and optionally the same for the loader of another commit, side by
side in one run (the machine is noisy: compare ratios, not absolute figures across runs).

    python benchmarks/tinyimagenet_load.py [--data-root DIR] [--compare-commit REV] [--keep]

Without ``--data-root`` a full-size synthetic layout is generated in a temporary folder (200 classes, 500 training
and 50 validation 64x64 JPEGs each, smooth random images at JPEG quality 75, about the file size of the real ones;
the real archive is not available here).  Each load runs in a fresh process (``load_arrays`` as a run calls it);
peak memory is that process's maximum resident set size.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, resource, sys, time
sys.path.insert(0, {code!r})
t0 = time.time()
from benchmark.data import load_arrays
d = load_arrays("tinyimagenet", {root!r})
t = time.time() - t0
print(json.dumps({{"seconds": t, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "array_gib": (d.x_train.numel() + d.x_test.numel()) / 2**30, "sha256": d.sha256}}))
"""


def generate(root: Path, classes: int = 200, train: int = 500, val: int = 50) -> float:
    """The layout under ``root/tiny-imagenet-200``; returns the mean JPEG size in KB."""
    from PIL import Image

    rng = np.random.default_rng(0)
    top = root / "tiny-imagenet-200"
    (top / "val" / "images").mkdir(parents=True)
    wnids = [f"n{(i * 7919) % 100003:08d}" for i in range(classes)]
    (top / "wnids.txt").write_text("\n".join(wnids) + "\n")
    ann, sizes = [], []

    def image():
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        return Image.fromarray(low).resize((64, 64), Image.BICUBIC)

    for w in wnids:
        d = top / "train" / w / "images"
        d.mkdir(parents=True)
        for k in range(train):
            p = d / f"{w}_{k}.JPEG"
            image().save(p, quality=75)
            sizes.append(p.stat().st_size)
        for k in range(val):
            name = f"val_{len(ann)}.JPEG"
            image().save(top / "val" / "images" / name, quality=75)
            ann.append(f"{name}\t{w}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return float(np.mean(sizes)) / 1024


def probe(code: Path, root: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE.format(code=str(code), root=str(root))], capture_output=True,
                       text=True, cwd=code)
    if r.returncode:
        raise SystemExit(f"load failed with the code in {code}: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, help="a data root holding tiny-imagenet-200/ (default: generate one)")
    ap.add_argument("--compare-commit", help="also measure the loader of this commit (e.g. the one before the cache)")
    ap.add_argument("--keep", action="store_true", help="keep the generated layout and the decoded cache")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tiny-load-"))
    try:
        root = a.data_root
        if root is None:
            root = work / "data"
            kb = generate(root)
            print(f"generated a full-size layout in {root} (mean JPEG {kb:.1f} KB)")
        codes = {"this checkout": ROOT}
        if a.compare_commit:
            old = work / "old"
            old.mkdir()
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", a.compare_commit, "benchmark"],
                                 capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=tar, check=True)
            codes[f"commit {a.compare_commit}"] = old
        print(f"{'loader':28s} {'load':14s} {'seconds':>8s} {'peak GiB':>9s} {'arrays GiB':>10s}")
        digests = set()
        for name, code in codes.items():
            shutil.rmtree(root / "tinyimagenet-decoded", ignore_errors=True)
            for which in ("first", "second"):
                m = probe(code, root)
                digests.add(m["sha256"])
                print(f"{name:28s} {which:14s} {m['seconds']:8.1f} {m['peak_gib']:9.2f} {m['array_gib']:10.2f}")
        print("same arrays (sha256) from every load:", len(digests) == 1)
        if not a.keep and a.data_root is not None:
            shutil.rmtree(root / "tinyimagenet-decoded", ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
