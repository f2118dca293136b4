"""Tiny-ImageNet from the standard ``tiny-imagenet-200/`` layout: checked, decoded once, cached as uint8 arrays.

Layout (the CS231n archive): ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` (500 per class),
``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box``) and ``val/images/*.JPEG`` (50 per class); the labelled val
split is the test set, as in the official PASS Tiny-ImageNet loader.

* Class indices follow the official PASS loader (``data_manager_tiny.py``, ``find_classes``): the **sorted** folder
  names of ``train/`` are classes 0..199, and the scenario's seed-1993 permutation then applies to those indices.
  (``wnids.txt`` lists the classes in another order; numbering by it would put a different half of the classes into
  phase 0.)  ``wnids.txt`` must name the same set of folders.
* Before any decoding, every file the layout needs is checked and every class must have training and validation
  images: a missing file or class is one line naming it, before any output folder exists.
* Decoding 110,000 JPEGs takes ~30 s per process, so the decoded arrays are cached in ``<data-root>/
  tinyimagenet-decoded/<key>/`` (the key hashes the layout's file list, file sizes and labels; a changed layout gets
  a new entry and the old one is removed).  An entry is written to a temporary folder and renamed into place, and
  is checked on load against the sha256 its ``meta.json`` records (the same digest that enters every cell key), so a
  truncated or altered entry is decoded again, never used.  A data root that cannot be written to only costs the
  decoding (one note on stderr).  Images are decoded straight into one preallocated (N, 3, 64, 64) array: no
  per-image list, stack or transposed copy (peak memory 1.84 GiB for 1.26 GiB of arrays, against 4.03 GiB for a
  list-and-stack load; ``python benchmarks/tinyimagenet_load.py --compare-commit REV`` measures both).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchError
from benchmark.store import umask

FIX = "re-extract tiny-imagenet-200"
CACHE_FOLDER = "tinyimagenet-decoded"
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class TinyLayout:
    folder: Path
    wnids: list  # sorted folder names of train/: class i is wnids[i]
    train: list  # [(path, label, size in bytes)]
    test: list


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise BenchError(f"{path} is missing ({what}); {FIX}")
    return path


def _jpegs(folder: Path) -> dict:
    """{file name: size} of the ``*.JPEG`` files in ``folder`` (``os.scandir``: one call per folder, ~10x faster
    than ``Path.glob`` and a ``stat`` per file on 110,000 files)."""
    try:
        with os.scandir(folder) as it:
            return {e.name: e.stat().st_size for e in it if e.name.endswith(".JPEG") and e.is_file()}
    except FileNotFoundError:
        return {}


def scan_layout(folder: Path) -> TinyLayout:
    """The layout's files, labels and sizes, or a one-line ``BenchError`` naming the missing file or the class
    without images."""
    listed = {w.strip() for w in _need(folder / "wnids.txt", "the class list").read_text().split() if w.strip()}
    train = _need(folder / "train", "the training images, train/<wnid>/images/*.JPEG")
    wnids = sorted(p.name for p in train.iterdir() if p.is_dir())
    if set(wnids) != listed:
        odd = sorted(set(wnids) ^ listed)[:3]
        raise BenchError(f"{folder}: wnids.txt and the folders of train/ name different classes (e.g. {odd}); {FIX}")
    index = {w: i for i, w in enumerate(wnids)}
    tr = []
    for w in wnids:
        images = train / w / "images"
        tr += [(images / n, index[w], size) for n, size in sorted(_jpegs(images).items())]
    images = _need(folder / "val" / "images", "the validation images")
    sizes, te = _jpegs(images), []
    for line in _need(folder / "val" / "val_annotations.txt", "the validation labels").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] in index:
            if parts[0] not in sizes:
                raise BenchError(f"image {images / parts[0]} is listed in val/val_annotations.txt but missing; {FIX}")
            te.append((images / parts[0], index[parts[1]], sizes[parts[0]]))
    for split, files in (("training", tr), ("validation", te)):
        have = np.bincount(np.array([f[1] for f in files], dtype=np.int64), minlength=len(wnids))
        if len(wnids) and not have.all():
            w = wnids[int(np.flatnonzero(have == 0)[0])]
            raise BenchError(f"{folder}: class {w} has no {split} images ({int((have == 0).sum())} of {len(wnids)} "
                             f"classes have none); {FIX}")
    if not tr or not te:
        raise BenchError(f"{folder} has no images in the Tiny-ImageNet layout (train/<wnid>/images/*.JPEG, "
                         f"val/val_annotations.txt)")
    return TinyLayout(folder, wnids, tr, te)


def layout_key(layout: TinyLayout) -> str:
    """Hash of every image's path (relative to the layout), size and label, and of the class list."""
    h = hashlib.sha256("\n".join(layout.wnids).encode())
    cut = len(str(layout.folder)) + 1
    for split, files in (("train", layout.train), ("test", layout.test)):
        h.update(split.encode())
        h.update("".join(f"{str(p)[cut:]}\t{size}\t{y}\n" for p, y, size in files).encode())
    return h.hexdigest()[:20]


def _decode_into(files: list, out: np.ndarray) -> None:
    """Decodes each image straight into its slot of ``out``.  Serial: a 64x64 JPEG decodes in ~0.25 ms, most of it
    Python and Pillow overhead under the GIL, and a thread pool measured no faster (4.0-4.3 s vs 4.4 s for 10,000
    images with 1, 2, 4 threads)."""
    from PIL import Image

    for i, (p, _, _) in enumerate(files):
        try:
            with Image.open(p) as im:
                a = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
        except OSError as e:
            raise BenchError(f"image {p} cannot be read ({e}); replace it ({FIX})") from None
        if a.shape != (out.shape[2], out.shape[3], 3):
            raise BenchError(f"image {p} is {a.shape[1]}x{a.shape[0]}, Tiny-ImageNet images are 64x64; {FIX}")
        out[i] = a.transpose(2, 0, 1)


def decode(layout: TinyLayout) -> dict:
    arrays = {}
    for split, files in (("train", layout.train), ("test", layout.test)):
        x = np.empty((len(files), 3, 64, 64), dtype=np.uint8)
        _decode_into(files, x)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, np.array([f[1] for f in files], dtype=np.int64)
    return arrays


def digest(arrays: dict) -> str:
    """sha256 of the arrays in ``ARRAYS`` order, byte-identical to ``benchmark.data.fingerprint`` of the tensors."""
    from benchmark.data import fingerprint

    return fingerprint(*(torch.from_numpy(arrays[k]) for k in ARRAYS))


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def load_cached(entry: Path, layout: TinyLayout) -> tuple[dict, str] | None:
    """The arrays of a cache entry and their sha256, or None (with a note) unless it is complete and intact."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {k: np.load(entry / f"{k}.npy", allow_pickle=False) for k in ARRAYS}
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        _note(f"decoded Tiny-ImageNet cache {entry} cannot be read ({type(e).__name__}); decoding the JPEGs again")
        return None
    sha = digest(arrays)
    if sha != meta.get("sha256") or len(arrays["x_train"]) != len(layout.train):
        _note(f"decoded Tiny-ImageNet cache {entry} does not match its record; decoding the JPEGs again")
        return None
    return arrays, sha


def save_cached(root: Path, key: str, arrays: dict, sha: str) -> None:
    """Writes the entry through a temporary folder renamed into place, then removes the entries of other layouts.
    Failure to write is a note, not an error: the run goes on with the decoded arrays."""
    entry = root / key
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
        for k in ARRAYS:
            np.save(tmp / f"{k}.npy", arrays[k], allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps({"key": key, "sha256": sha, "images": {
            "train": len(arrays["x_train"]), "test": len(arrays["x_test"])}}, indent=1))
        os.chmod(tmp, 0o777 & ~umask())
        try:
            tmp.rename(entry)
        except OSError:  # another process wrote it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        _note(f"cannot cache the decoded Tiny-ImageNet in {root} ({e.strerror or e}); every run decodes the JPEGs "
              f"again (~30 s); make the data root writable to cache them")
        return
    for old in root.iterdir():
        if old.is_dir() and old.name != key and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)


def read_tinyimagenet(folder: Path):
    """``ArrayData`` of the layout under ``folder`` (``tiny-imagenet-200/``), its ``sha256`` set; decoded arrays come
    from ``folder``'s parent / ``tinyimagenet-decoded`` when an intact entry is there."""
    from benchmark.data import ArrayData

    layout = scan_layout(folder)
    root = folder.parent / CACHE_FOLDER
    key = layout_key(layout)
    hit = load_cached(root / key, layout)
    if hit is None:
        arrays = decode(layout)
        sha = digest(arrays)
        save_cached(root, key, arrays, sha)
    else:
        arrays, sha = hit
    t = {k: torch.from_numpy(arrays[k]) for k in ARRAYS}
    return ArrayData("tinyimagenet", t["x_train"], t["y_train"], t["x_test"], t["y_test"], list(layout.wnids),
                     str(folder), sha)
