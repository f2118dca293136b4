"""Teachers of the data-free distillation task: trained by the suite on the real training set and cached
(CONVENTIONS.md "Caches"), or loaded from a user's checkpoint (``--teacher-checkpoint``).

Training follows the profile's ``TeacherRecipe`` (``paper`` CIFAR: SGD lr 0.1, momentum 0.9, weight decay 5e-4,
cosine over 200 epochs, batch 128, random crop (padding 4) + flip, as CMI's ``train_scratch.py`` augments; MNIST:
DFAD's teacher recipe, no augmentation).  The cache key is a hash of everything that determines the teacher (data
fingerprint, model, recipe, augmentation, seed, device type); a partial teacher is checkpointed after every epoch
next to the cache entry, so a killed teacher training resumes where it stopped.

A finished ``teacher`` cell keeps a copy of the cache entry in its folder (``teacher.pt``), so a results folder
carries the teacher its students distilled: on a machine whose cache lacks it, ``get_teacher`` restores it from
there (same key, shapes checked) instead of retraining it -- 43 minutes for the ``cpu`` CIFAR-10 teacher.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark import store
from benchmark.augment import AugmentSpec, augment_batch
from benchmark.cells import stable_hash
from benchmark.data import ArrayData
from benchmark.errors import BenchError
from benchmark.models import build_model
from benchmark.models.resnet_imagenet import torchvision_state
from benchmark.precision import autocast
from benchmark.training import restore_optimisation, rng_state, seed_everything


def teacher_key(data_sha256: str, model: str, recipe, augment: AugmentSpec, seed: int, device_type: str,
                threads: int | None = None, deterministic: bool = False) -> str:
    # "init": the initialisation is drawn from the seed (a teacher initialised from whatever the process's generator
    # held would be another model: such cache entries have another key rather than a silent mismatch).  ``threads``:
    # the torch thread count of a CPU teacher (``benchmark.cells.thread_entry``)
    return stable_hash({"what": "dfkd-teacher", "data": data_sha256, "model": model, "recipe": recipe.as_dict(),
                        "augment": augment.as_dict(), "seed": seed, "device_type": device_type, "init": "seeded",
                        **({"torch_threads": threads} if threads is not None else {}),
                        **({"deterministic": True} if deterministic else {})})


def teacher_cache_path(cache_dir: Path, data_sha256: str, model: str, recipe, augment: AugmentSpec, seed: int,
                       device_type: str, threads: int | None = None, deterministic: bool = False) -> Path:
    """Where the suite caches the teacher these arguments determine (``--dry-run`` reports whether it exists)."""
    key = teacher_key(data_sha256, model, recipe, augment, seed, device_type, threads, deterministic)
    return Path(cache_dir) / "teachers" / f"{key}.pt"


@torch.no_grad()
def test_accuracy(model, data, device, batch_size: int = 1000) -> float:
    """Top-1 of ``model`` on ``data``'s test set (``ArrayData`` or a streamed ``benchmark.imagenet`` set)."""
    was = model.training
    model.eval()
    correct = total = 0
    for x, y in data.test_batches(batch_size):
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        total += len(y)
    model.train(was)
    return correct / max(1, total)


def train_teacher(model, data: ArrayData, recipe, augment: AugmentSpec, device, seed: int, partial: Path,
                  key: str, progress: bool = True) -> dict:
    """Trains ``model`` in place; checkpoints to ``partial`` after every epoch and resumes from it."""
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs) if recipe.schedule == "cosine" else None
    gen = torch.Generator(device=device)
    seed_everything(seed)
    gen.manual_seed(seed)
    start, seconds = 0, 0.0
    if partial.is_file():
        ck = store.load_torch(partial, key, "partial teacher checkpoint")
        model.load_state_dict(ck["model"])
        restore_optimisation(ck, opt, sched, gen)
        start, seconds = int(ck["epoch"]), float(ck["seconds"])
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    x, y = data.x_train.to(device), data.y_train.to(device)
    bar = tqdm(range(start, recipe.epochs), desc="  teacher epochs", initial=start, total=recipe.epochs,
               disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(y), generator=gen, device=gen.device).to(device)
        starts = range(0, len(y), recipe.batch_size)
        if recipe.max_steps_per_epoch:
            starts = starts[: recipe.max_steps_per_epoch]
        for i in starts:
            idx = perm[i:i + recipe.batch_size]
            xb = augment_batch(x[idx], augment, gen)
            if recipe.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(recipe.precision, device.type):
                loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if sched:
            sched.step()
        seconds += time.time() - t0
        if not math.isfinite(float(loss.detach())):
            raise BenchError(f"teacher training diverged (loss {float(loss.detach())}) at epoch {epoch + 1}; lower the "
                             f"teacher learning rate or use --teacher-checkpoint")
        store.save_torch(partial, {"key": key, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "scheduler": sched.state_dict() if sched else {}, "generator": gen.get_state(),
                                   "rng": rng_state(), "epoch": epoch + 1, "seconds": seconds})
    bar.close()
    model.eval()
    return {"train_seconds": seconds, "epochs": recipe.epochs}


def carried_teacher(candidates, key: str) -> Path | None:
    """The first of ``candidates`` (``teacher.pt`` files of teacher cells) that holds the teacher of ``key``."""
    return store.find_carried(candidates, key, "teacher weights",
                              "the teacher is then taken from the cache or retrained")


def teacher_source(checkpoint: str | None, cache: Path, carried) -> tuple[str, Path | None]:
    """Where a teacher comes from now, in order: ``("checkpoint", path)`` (``--teacher-checkpoint``),
    ``("cache", path)``, ``("carried", path)`` (a finished teacher cell's ``teacher.pt`` of the same key; ``carried()``
    lists the candidates, asked only when the cache misses) or ``("train", None)``.  ``get_teacher`` loads from it
    and ``--dry-run`` (``benchmark.plan.plan_dfkd``) reports it: one rule for both."""
    if checkpoint:
        return "checkpoint", Path(checkpoint)
    if cache.is_file():
        return "cache", cache
    src = carried_teacher(carried(), cache.stem)
    return ("carried", src) if src is not None else ("train", None)


def get_teacher(name: str, data: ArrayData, mean, std, recipe, augment: AugmentSpec, device, cache_dir: Path,
                seed: int = 0, checkpoint: str | None = None, progress: bool = True, carried=(),
                deterministic: bool = False):
    """(teacher in eval mode with frozen parameters, info dict with test accuracy and provenance).

    ``carried``: ``teacher.pt`` files of finished teacher cells; on a cache miss the one with this teacher's key is
    copied into the cache and used instead of training."""
    seed_everything(seed)  # the initialisation is part of what the seed fixes, whatever ran before in the process
    model = build_model(name, data.n_classes, data.channels, mean, std).to(device)
    if checkpoint:  # no recipe then (an ImageNet teacher has none: the suite does not train it)
        source, src = "checkpoint", Path(checkpoint)
    else:
        dev = torch.device(device).type
        path = teacher_cache_path(cache_dir, data.sha256, name, recipe, augment, seed, dev,
                                  torch.get_num_threads() if dev == "cpu" else None, deterministic)
        key = path.stem
        source, src = teacher_source(checkpoint, path, lambda: carried)
    if source == "checkpoint":
        info = _load_user_checkpoint(model, src)
    else:
        if source == "cache":
            ck = store.load_torch(path, key, "teacher cache")
            _load_checked(model, ck["model"], path, "teacher cache",
                          "delete it and re-run (the teacher is retrained and cached again)")
            info = dict(ck["info"], cache=f"hit {path.name}")
        elif source == "carried":
            ck = store.load_torch(src, key, "teacher weights")
            _load_checked(model, ck["model"], src, "teacher weights",
                          "delete it and re-run (the teacher is retrained and cached again)")
            store.copy_file(src, path)
            info = dict(ck["info"], cache=f"miss, restored from {store.describe(src)}")
        else:
            partial = path.with_suffix(".partial.pt")
            info = train_teacher(model, data, recipe, augment, device, seed, partial, key, progress)
            info["test_accuracy"] = test_accuracy(model, data, device)
            store.save_torch(path, {"key": key, "model": model.state_dict(), "info": info})
            partial.unlink(missing_ok=True)
            info = dict(info, cache=f"miss, trained and stored {path.name}")
        info["source"] = "suite"
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if "test_accuracy" not in info:
        info["test_accuracy"] = test_accuracy(model, data, device)
    return model, info


def _load_checked(model, state: dict, path: Path, what: str, fix: str) -> None:
    store.check_state_fits(model.state_dict(), state, path, what, fix)
    model.load_state_dict(state)


def _load_user_checkpoint(model, path: Path) -> dict:
    """A user's teacher: a ``state_dict`` of the suite's model, bare or under ``model`` / ``state_dict``, or a
    torchvision ResNet's (``benchmark.models.resnet_imagenet.torchvision_state``: ``fc.*`` -> ``head.*``)."""
    if not path.is_file():
        raise BenchError(f"--teacher-checkpoint {path} does not exist; pass the path of a saved state_dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        raise BenchError(f"--teacher-checkpoint {path} is corrupt or not a torch state_dict ({type(e).__name__}); "
                         f"save one with torch.save(model.state_dict(), FILE)") from None
    if isinstance(obj, dict):
        obj = obj.get("model", obj.get("state_dict", obj))
    if not isinstance(obj, dict):
        raise BenchError(f"--teacher-checkpoint {path} holds no state_dict; save one with "
                         f"torch.save(model.state_dict(), FILE)")
    obj = torchvision_state(obj, model.state_dict()) or obj  # a torchvision checkpoint of the same architecture
    _load_checked(model, obj, path, "--teacher-checkpoint",
                  "pass a checkpoint of the same --teacher architecture and number of classes")
    return {"source": f"user checkpoint {path}", "train_seconds": None}
