"""Data sources: every dataset is loaded once into memory as uint8 tensors (N, C, H, W) with int64 labels.

Where the arrays come from, in order:
1. ``<data-root>/<name>.npz`` with ``x_train, y_train, x_test, y_test, classes`` (what ``../shared/data/expand.py``
   writes; HWC or NCHW, grey images may be (N, H, W));
2. the torchvision layout under ``<data-root>`` (``cifar-100-python/``, ``cifar-10-batches-py/``, ``MNIST/raw``,
   ``tiny-imagenet-200/``, ``SVHN/``);
3. a torchvision (or, for Tiny-ImageNet, the CS231n archive) download into ``<data-root>`` when online (set
   ``BENCH_OFFLINE=1`` to skip the attempt, e.g. on a cluster node without network);
4. otherwise a one-line ``BenchError`` naming both ways to provide the data.
``cifar100-mini`` (and ``cifar10-mini``, MUC's offline auxiliary data) are embedded in the package
(``benchmark/data_files``) and need none of that.

MNIST is resized to 32x32 (bilinear), as in DFAD's official MNIST script (``transforms.Resize((32, 32))``), which
produced the published LeNet-5 numbers of DFAD and of the activation-regularisation paper; the issue's wording
"padded to 32x32" (LeCun's zero padding) would present different digits (20x20 strokes in a 32x32 frame instead of
scaled ones) to a teacher trained on the same data either way, so the published script's choice is kept.
Every load records the sha256 of the arrays, which enters the cell key.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchError

PACKAGE_DATA = Path(__file__).resolve().parent / "data_files"
# small real subsets shipped in the package (tools/make_mini_subset.py): the offline default scenario and the offline
# auxiliary data of MUC for it
EMBEDDED = {"cifar100-mini": "cifar100_mini.npz", "cifar10-mini": "cifar10_mini.npz"}
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


@dataclass
class ArrayData:
    name: str
    x_train: torch.Tensor  # uint8 (N, C, H, W)
    y_train: torch.Tensor  # int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str
    sha256: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])


def default_data_root() -> Path:
    return Path(os.environ.get("BENCH_DATA") or Path.home() / ".cache" / "rgal-bench" / "data").expanduser()


def fingerprint(*arrays: torch.Tensor) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a.numpy()).tobytes())
    return h.hexdigest()


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    x = np.asarray(x, dtype=np.uint8)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def _from_npz(path: Path, name: str) -> ArrayData:
    try:
        d = np.load(path, allow_pickle=False)
        return ArrayData(name, _to_nchw(d["x_train"]), torch.as_tensor(d["y_train"].astype(np.int64)),
                         _to_nchw(d["x_test"]), torch.as_tensor(d["y_test"].astype(np.int64)),
                         [str(c) for c in d["classes"]], str(path))
    except (OSError, KeyError, ValueError) as e:
        raise BenchError(f"cannot read {path}: {e}; it must be an .npz with x_train, y_train, x_test, y_test, "
                         f"classes (re-create it with ../shared/data/expand.py)") from None


def _torchvision_cifar(cls, root: Path, name: str, download: bool) -> ArrayData:
    tr = cls(str(root), train=True, download=download)
    te = cls(str(root), train=False, download=download)
    return ArrayData(name, _to_nchw(tr.data), torch.as_tensor(tr.targets, dtype=torch.int64),
                     _to_nchw(te.data), torch.as_tensor(te.targets, dtype=torch.int64), list(tr.classes),
                     f"torchvision:{root}")


def _torchvision_svhn(root: Path, download: bool) -> ArrayData:
    """SVHN (MUC's official auxiliary data) from torchvision's layout (``root/SVHN/{train,test}_32x32.mat``)."""
    from torchvision.datasets import SVHN

    tr = SVHN(str(root / "SVHN"), split="train", download=download)
    te = SVHN(str(root / "SVHN"), split="test", download=download)
    return ArrayData("svhn", _to_nchw(tr.data), torch.as_tensor(tr.labels, dtype=torch.int64), _to_nchw(te.data),
                     torch.as_tensor(te.labels, dtype=torch.int64), [str(i) for i in range(10)],
                     f"torchvision:{root / 'SVHN'}")


def _torchvision_mnist(root: Path, download: bool) -> ArrayData:
    from torchvision.datasets import MNIST

    tr = MNIST(str(root), train=True, download=download)
    te = MNIST(str(root), train=False, download=download)
    return ArrayData("mnist", _to_nchw(tr.data.numpy()), tr.targets.long(), _to_nchw(te.data.numpy()),
                     te.targets.long(), [str(i) for i in range(10)], f"torchvision:{root}")


def read_tinyimagenet_layout(folder: Path) -> ArrayData:
    """Reads the standard ``tiny-imagenet-200`` layout (``wnids.txt``, ``train/<wnid>/images/*.JPEG``,
    ``val/val_annotations.txt`` + ``val/images``); the labelled val split is the test set."""
    from PIL import Image

    wnids = [w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}

    def load(paths):
        return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in paths])

    tr_paths, tr_y = [], []
    for w in wnids:
        files = sorted((folder / "train" / w / "images").glob("*.JPEG"))
        tr_paths += files
        tr_y += [index[w]] * len(files)
    te_paths, te_y = [], []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] in index:
            te_paths.append(folder / "val" / "images" / parts[0])
            te_y.append(index[parts[1]])
    if not tr_paths or not te_paths:
        raise BenchError(f"{folder} has no images in the Tiny-ImageNet layout (train/<wnid>/images/*.JPEG, "
                         f"val/val_annotations.txt)")
    return ArrayData("tinyimagenet", _to_nchw(load(tr_paths)), torch.tensor(tr_y), _to_nchw(load(te_paths)),
                     torch.tensor(te_y), wnids, str(folder))


def _resize_mnist(d: ArrayData) -> ArrayData:
    if d.x_train.shape[-1] == 32:
        return d

    def rs(x):
        out = []
        for chunk in x.split(10000):
            y = torch.nn.functional.interpolate(chunk.float(), size=(32, 32), mode="bilinear", align_corners=False,
                                                antialias=True)
            out.append(y.round_().clamp_(0, 255).to(torch.uint8))
        return torch.cat(out)

    d.x_train, d.x_test = rs(d.x_train), rs(d.x_test)
    return d


_LAYOUTS = {"cifar100": "cifar-100-python/", "cifar10": "cifar-10-batches-py/", "mnist": "MNIST/raw/",
            "svhn": "SVHN/ (train_32x32.mat, test_32x32.mat)",
            "tinyimagenet": f"tiny-imagenet-200/ (wnids.txt, train/, val/; {TINYIMAGENET_URL})"}


def _no_data(name: str, root: Path, err: Exception, download: bool = True) -> BenchError:
    why, online = ((f"could not be downloaded ({type(err).__name__})", "run once with network access to download it")
                   if download else ("was not downloaded (BENCH_OFFLINE is set)",
                                     "unset BENCH_OFFLINE and run once with network access to download it"))
    layout = _LAYOUTS.get(name, "the torchvision layout")
    return BenchError(
        f"dataset {name!r} not found under {root} and {why}; pass --data-root DIR (or set BENCH_DATA) to a folder "
        f"holding {name}.npz (e.g. written by ../shared/data/expand.py) or {layout}, or {online}")


def load_arrays(name: str, data_root: str | Path | None = None, download: bool = True) -> ArrayData:
    """Load dataset ``name`` (cifar100, cifar10, mnist, tinyimagenet, svhn, or the embedded cifar100-mini and
    cifar10-mini) as uint8 tensors."""
    root = Path(data_root).expanduser() if data_root else default_data_root()
    download = download and os.environ.get("BENCH_OFFLINE", "") in ("", "0")
    if name in EMBEDDED:
        d = _from_npz(PACKAGE_DATA / EMBEDDED[name], name)
        d.source = "embedded:" + d.source
    elif (root / f"{name}.npz").is_file():
        d = _from_npz(root / f"{name}.npz", name)
    elif name == "tinyimagenet" and (root / "tiny-imagenet-200" / "wnids.txt").is_file():
        d = read_tinyimagenet_layout(root / "tiny-imagenet-200")
    else:
        try:
            if name in ("cifar100", "cifar10"):
                from torchvision import datasets

                cls = datasets.CIFAR100 if name == "cifar100" else datasets.CIFAR10
                d = _torchvision_cifar(cls, root, name, download)
            elif name == "mnist":
                if not download and not (root / "MNIST" / "raw").is_dir():
                    raise FileNotFoundError(root / "MNIST")
                d = _torchvision_mnist(root, download)
            elif name == "svhn":
                d = _torchvision_svhn(root, download)
            elif name == "tinyimagenet":
                if not download:
                    raise FileNotFoundError(root / "tiny-imagenet-200")
                from torchvision.datasets.utils import download_and_extract_archive

                download_and_extract_archive(TINYIMAGENET_URL, str(root), md5=TINYIMAGENET_MD5)
                d = read_tinyimagenet_layout(root / "tiny-imagenet-200")
            else:
                raise BenchError(f"unknown dataset {name!r}")
        except BenchError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure here means "no data and no network"
            raise _no_data(name, root, e, download) from None
    if name == "mnist":
        d = _resize_mnist(d)
    d.sha256 = fingerprint(d.x_train, d.y_train, d.x_test, d.y_test)
    return d
