"""ImageNet's validation set in the standard ImageFolder layout, streamed: the test set of the data-free
quantization task's ``imagenet`` scenario (RGAL paper Table 13: IntraQ on ResNet-18).  No training images are read
(the task is data-free; the teacher comes from ``--teacher-checkpoint``).

Layout: ``<data-root>/imagenet/val/<wnid>/*.JPEG`` with the 1,000 synset folders (what PyTorch's ImageNet example
and the usual ``valprep.sh`` produce); classes are numbered by the sorted folder names, as torchvision's
``ImageFolder`` and every torchvision / pytorchcv checkpoint do.  A folder may be empty (a test miniature), but the
1,000 must be there, or the labels would shift.

Evaluation transform (IntraQ's and GDFQ's ImageNet loaders, torchvision's reference): resize the shorter side to
``size * 256 / 224`` (256 for 224), centre-crop ``size``; the images stay uint8 (the suite's models normalise with
ImageNet's mean and std inside, ``benchmark.models.base.InputNormalizer``).  Decoding runs in DataLoader workers.

The layout's fingerprint (``sha256``, part of every cell's key) hashes the sorted relative paths and file sizes,
not the 6.4 GB of contents: a re-extracted copy of the same files has the same fingerprint.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmark.errors import BenchError
from benchmark.models.resnet_imagenet import IMAGENET_MEAN, IMAGENET_STD

N_CLASSES = 1000
IMAGENET_SPEC = SimpleNamespace(name="imagenet", mean=IMAGENET_MEAN, std=IMAGENET_STD)  # what the cells read of a spec
FOLDER = Path("imagenet") / "val"
LAYOUT = "<data-root>/imagenet/val/<wnid>/*.JPEG (the 1,000 synset folders; e.g. PyTorch's valprep.sh)"


@dataclass
class ImageFolderTestSet:
    """A streamed, labelled test set (the ``ArrayData`` interface the data-free tasks use, without training
    images)."""

    name: str
    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    image_size: int
    sha256: str
    workers: int = field(default_factory=lambda: min(4, torch.get_num_threads()))  # decoding processes
    max_batch: int = 128  # ResNet-18's activations at 224 pixels: ~3 MB an image in its first stage

    @property
    def source(self) -> str:
        return str(self.root)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def n_test(self) -> int:
        return len(self.samples)

    def transform(self):
        from torchvision import transforms

        return transforms.Compose([transforms.Resize(round(self.image_size * 256 / 224)),
                                   transforms.CenterCrop(self.image_size), transforms.PILToTensor()])

    def test_batches(self, batch_size: int):
        """(uint8 images, labels) batches of the whole set, in file order (at most ``max_batch`` images)."""
        from torchvision.datasets import ImageFolder

        ds = ImageFolder(str(self.root), transform=self.transform(), allow_empty=True)
        if ds.classes != self.classes:
            raise BenchError(f"{self.root} changed since the cell was planned; re-run the command")
        loader = torch.utils.data.DataLoader(ds, batch_size=min(batch_size, self.max_batch), num_workers=self.workers)
        try:
            yield from loader
        except (OSError, RuntimeError) as e:  # a damaged JPEG, or a worker killed (Docker's 64 MB /dev/shm)
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise BenchError(f"reading {self.root} failed ({why}); re-extract the damaged file, or give the "
                             f"container more shared memory (docker --shm-size 1g)") from None


def _fingerprint(root: Path, classes: list[str], samples: list[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    h.update("\n".join(classes).encode())
    for path, label in samples:
        h.update(f"\n{os.path.relpath(path, root)}\t{label}\t{os.path.getsize(path)}".encode())
    return h.hexdigest()


@lru_cache(maxsize=4)
def read_imagenet_val(data_root: str, image_size: int = 224) -> ImageFolderTestSet:
    """The validation set under ``data_root`` (checked: 1,000 class folders, at least one image)."""
    from torchvision.datasets import ImageFolder

    root = Path(data_root).expanduser() / FOLDER
    if not root.is_dir():
        raise BenchError(f"ImageNet is not under {root} and cannot be downloaded; put its validation set in the "
                         f"layout {LAYOUT}, or pass --data-root DIR")
    try:
        ds = ImageFolder(str(root), allow_empty=True)
    except (FileNotFoundError, OSError) as e:
        raise BenchError(f"{root} is not an ImageFolder layout ({e}); expected {LAYOUT}") from None
    if len(ds.classes) != N_CLASSES:
        raise BenchError(f"{root} has {len(ds.classes)} class folders, ImageNet has {N_CLASSES} (the labels are the "
                         f"sorted folder names, so a missing folder shifts them); expected {LAYOUT}")
    if not ds.samples:
        raise BenchError(f"{root} has no images; expected {LAYOUT}")
    return ImageFolderTestSet("imagenet", root, list(ds.classes), list(ds.samples), image_size,
                              _fingerprint(root, ds.classes, ds.samples))
