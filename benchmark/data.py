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
produced the published LeNet-5 numbers of DFAD and of the activation-regularisation paper; the specification's wording
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
from benchmark.tinyimagenet import read_tinyimagenet

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

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def test_batches(self, batch_size: int):
        """(uint8 images, labels) batches of the test set (the interface ``benchmark.imagenet`` streams)."""
        for i in range(0, len(self.y_test), batch_size):
            yield self.x_test[i:i + batch_size], self.y_test[i:i + batch_size]


def default_data_root() -> Path:
    return Path(os.environ.get("BENCH_DATA") or Path.home() / ".cache" / "rgal-bench" / "data").expanduser()


def fingerprint(*arrays: torch.Tensor) -> str:
    h = hashlib.sha256()
    for a in arrays:  # the buffer itself, not a ``tobytes()`` copy (1.3 GB for Tiny-ImageNet)
        h.update(memoryview(np.ascontiguousarray(a.numpy())).cast("B"))
    return h.hexdigest()


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    x = np.asarray(x, dtype=np.uint8)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


# What each dataset must look like once loaded: channels, accepted image sizes, number of classes.  A file that
# differs (float images in [0, 1], 28x28 "CIFAR", 4 channels, flattened rows, labels out of range, x / y of different
# lengths) is refused at load with one line, instead of training on black images or failing deep inside torch.
GEOMETRY = {"cifar100": (3, (32,), 100), "cifar100-mini": (3, (32,), 100), "cifar10": (3, (32,), 10),
            "cifar10-mini": (3, (32,), 10), "svhn": (3, (32,), 10), "mnist": (1, (28, 32), 10),
            "tinyimagenet": (3, (64,), 200)}


def _check_images(x: np.ndarray, where: str) -> None:
    if x.dtype != np.uint8:
        hint = " (scale by 255 and cast to uint8)" if np.issubdtype(x.dtype, np.floating) else ""
        raise BenchError(f"{where} holds {x.dtype} images; the suite reads uint8 pixels 0-255{hint}")
    if x.ndim not in (3, 4):
        raise BenchError(f"{where} holds images of shape {tuple(x.shape[1:])}; expected (H, W), (H, W, C) or "
                         f"(C, H, W) per image, not flattened rows")


def validate(d: "ArrayData", where: str) -> None:
    """One-line ``BenchError`` unless ``d`` has the geometry, lengths and label set of its dataset (``GEOMETRY``)."""
    channels, sizes, n = GEOMETRY.get(d.name, (d.channels, (d.x_train.shape[-1],), d.n_classes))
    for split, x, y in (("train", d.x_train, d.y_train), ("test", d.x_test, d.y_test)):
        if x.ndim != 4 or x.shape[1] != channels or x.shape[2] != x.shape[3] or x.shape[-1] not in sizes:
            want = " or ".join(f"{channels}x{s}x{s}" for s in sizes)
            raise BenchError(f"{where}: {split} images are {'x'.join(map(str, x.shape[1:]))}, {d.name} needs {want} "
                             f"(channels x height x width); it is not a {d.name} file")
        if len(x) != len(y):
            raise BenchError(f"{where}: {len(x)} {split} images but {len(y)} labels; x and y must have one label "
                             f"per image")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= n):
            raise BenchError(f"{where}: {split} labels span {int(y.min())}..{int(y.max())}, {d.name} needs 0..{n - 1}")
    if len(d.classes) != n:
        raise BenchError(f"{where} names {len(d.classes)} classes, {d.name} has {n}")


def _from_npz(path: Path, name: str) -> ArrayData:
    import zipfile

    fix = (f"re-create it with `.venv/bin/python ../shared/data/expand.py {path.parent}` (or from the original "
           f"data), or delete it to load {name} from --data-root's other layouts")
    try:
        d = np.load(path, allow_pickle=False)
        if not isinstance(d, np.lib.npyio.NpzFile):  # a bare .npy under an .npz name
            raise ValueError("a single array, not an .npz archive")
        keys = set(d.files)
        if "x_train" not in keys and "webp" in keys:
            raise BenchError(f"{path} is a packed copy (compressed images), not arrays; expand it with "
                             f"`.venv/bin/python ../shared/data/expand.py DIR` and pass --data-root DIR")
        arrays = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test", "classes")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        why = "it is empty" if path.is_file() and path.stat().st_size == 0 else f"{type(e).__name__}: {e}"
        raise BenchError(f"cannot read {path} ({why}); it must be an .npz with x_train, y_train, x_test, y_test, "
                         f"classes; {fix}") from None
    for k in ("x_train", "x_test"):
        _check_images(arrays[k], f"{path} ({k})")
    for k in ("y_train", "y_test"):
        if not np.issubdtype(arrays[k].dtype, np.integer):
            raise BenchError(f"{path} ({k}) holds {arrays[k].dtype} labels; expected integer class indices")
    return ArrayData(name, _to_nchw(arrays["x_train"]), torch.as_tensor(arrays["y_train"].astype(np.int64)),
                     _to_nchw(arrays["x_test"]), torch.as_tensor(arrays["y_test"].astype(np.int64)),
                     [str(c) for c in arrays["classes"]], str(path))


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
        f"holding {name}.npz (from a packed copy: `.venv/bin/python ../shared/data/expand.py {root}`) or {layout}, "
        f"or {online}")


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
    elif name == "tinyimagenet" and (root / "tiny-imagenet-200").is_dir():
        d = read_tinyimagenet(root / "tiny-imagenet-200")
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
                d = read_tinyimagenet(root / "tiny-imagenet-200")
            else:
                raise BenchError(f"unknown dataset {name!r}")
        except BenchError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure here means "no data and no network"
            raise _no_data(name, root, e, download) from None
    validate(d, d.source)
    if name == "mnist":
        d = _resize_mnist(d)
    if not d.sha256:  # Tiny-ImageNet's reader computed it (checking its decoded cache)
        d.sha256 = fingerprint(d.x_train, d.y_train, d.x_test, d.y_test)
    return d
