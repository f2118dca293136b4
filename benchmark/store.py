"""Cell folders, atomic writes and validated checkpoint loading.

Every write goes to a temporary file in the same folder, is fsynced and renamed over the target, so a run killed
at any moment leaves either the old or the new file.  Checkpoints and caches are loaded with
``torch.load(weights_only=True)`` and checked against the cell key; a corrupt or foreign file gives a one-line
``BenchError`` naming the file and the fix.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from benchmark.errors import BenchError


def default_cache_dir() -> Path:
    """Phase-0 models and teachers: ``$BENCH_CACHE``, else ``~/.cache/rgal-bench/cache``."""
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "rgal-bench" / "cache").expanduser()


REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_MODELS_ENV = "BENCH_SHARED_MODELS"


def shared_model_roots() -> list[Path]:
    """Result folders whose cells' carried models (``phase0.pt``, ``teacher.pt``) any run may restore by key, from
    whatever ``--out`` it writes to: the repository's committed ``results/`` and the folders named in
    ``$BENCH_SHARED_MODELS`` (separated by ``os.pathsep``), e.g. a team's shared sweep folder.  A copy is used only
    when its key is the cell's (``find_carried``), so an unrelated file there is never loaded."""
    extra = [Path(p).expanduser() for p in os.environ.get(SHARED_MODELS_ENV, "").split(os.pathsep) if p]
    return [REPOSITORY / "results", *extra]


def shared_copies(pattern: str, exclude=()) -> list[Path]:
    """Every carried copy matching ``pattern`` (a cell folder's glob, e.g. ``*/phase0.pt``) in the shared roots, in
    a sweep folder of a root (``results/<sweep>/<cell>/phase0.pt``) or directly in it, but the files of ``exclude``
    (the run's own folder, already searched), compared as resolved paths."""
    seen = {Path(p).resolve() for p in exclude}
    found: list[Path] = []
    for root in shared_model_roots():
        if root.is_dir():
            for p in sorted(root.glob(f"*/{pattern}")) + sorted(root.glob(pattern)):
                if p.resolve() not in seen:
                    seen.add(p.resolve())
                    found.append(p)
    return found


def describe(path: Path) -> str:
    """A carried copy as messages name it: ``<cell>/<file>`` beside the run, or its path under a shared root."""
    path = Path(path).resolve()
    for root in shared_model_roots():
        try:
            return f"{root.name}/{path.relative_to(root.resolve())}"
        except ValueError:
            continue
    return f"{path.parent.name}/{path.name}"


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    """Writes through a temporary file renamed over ``path``.  The file gets the mode a plain ``open`` would give
    (0666 minus the umask; ``mkstemp`` alone makes every file 0600, so a team's shared cache was unreadable to the
    others).  A failed write (disk full, read-only folder) is one line naming the file; earlier results stay."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    except OSError as e:
        raise BenchError(f"cannot write {path} ({e.strerror or e}); make {path.parent} writable or choose another "
                         f"folder (--out / --cache-dir); finished phases and cells are kept") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "PytorchStreamWriter" in str(e)):
            raise BenchError(f"cannot write {path} ({e.strerror or e}); free space or choose another folder "
                             f"(--out / --cache-dir), then run the same command again: finished phases and cells "
                             f"are kept") from None
        raise


def save_json(path: Path, obj) -> None:
    _atomic(Path(path), lambda f: f.write(json.dumps(obj, indent=1, sort_keys=False, default=str).encode()))


def load_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot read {path}: {e}; delete it to recompute that cell") from None


def save_torch(path: Path, obj) -> None:
    _atomic(Path(path), lambda f: torch.save(obj, f))


def copy_file(src: Path, dst: Path) -> None:
    data = Path(src).read_bytes()
    _atomic(Path(dst), lambda f: f.write(data))


def find_carried(candidates, key: str, what: str, fix: str, strict: bool = True) -> Path | None:
    """The first of ``candidates`` (copies of cache entries that cells keep in their folders: a finished teacher
    cell's ``teacher.pt``, the ``phase0.pt`` a cell writes when its phase 0 is done) that holds the entry of ``key``.
    A corrupt one is a one-line error naming ``what`` and ``fix`` when the entry is needed from it (``strict``), and
    is passed over when the question is only whether some cell already carries it."""
    for path in candidates:
        path = Path(path)
        if not path.is_file():
            continue
        try:
            # memory-mapped: only the key is read, not the weights (a shared folder may hold many large copies)
            found = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("key")
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
            if not strict:
                continue
            raise BenchError(f"{what} {path} are corrupt ({type(e).__name__}); delete the file ({fix})") from None
        if found == key:
            return path
    return None


def load_torch(path: Path, key: str, what: str = "checkpoint", fix: str = "delete it to recompute it") -> dict:
    """Loads a checkpoint / cache written by ``save_torch`` and checks that it belongs to ``key``; ``fix`` is what
    the error tells the user to do about a missing or corrupt file."""
    if not Path(path).is_file():
        raise BenchError(f"{what} {path} is missing; {fix}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        raise BenchError(f"{what} {path} is corrupt or not a suite file ({type(e).__name__}); {fix}") from None
    if not isinstance(obj, dict) or obj.get("key") != key:
        found = obj.get("key") if isinstance(obj, dict) else "?"
        raise BenchError(f"{what} {path} belongs to another configuration (key {found}"
                         f", expected {key}); delete it or use another --out / --cache-dir")
    return obj


def check_state_fits(own: dict, state, path: Path, what: str, fix: str) -> None:
    """One-line error unless ``state`` has exactly the tensors (names and shapes) of ``own`` (a model's state dict):
    a cache or checkpoint of another architecture / class count would otherwise fail deep inside ``load_state_dict``."""
    if not isinstance(state, dict):
        raise BenchError(f"{what} {path} holds no model weights; {fix}")
    own = {k: v for k, v in own.items() if isinstance(v, torch.Tensor)}  # not the modules' extra state
    state = {k: v for k, v in state.items() if not k.endswith("_extra_state")}
    bad = [k for k in own if k not in state or tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    extra = [k for k in state if k not in own]
    if bad or extra:
        if not bad:
            first = f"unexpected tensor {extra[0]}"
        elif bad[0] not in state:
            first = f"missing tensor {bad[0]}"
        else:
            first = f"{bad[0]}: shape {tuple(state[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}"
        raise BenchError(f"{what} {path} does not fit this model (first mismatch {first}); {fix}")


def check_writable(folder: Path, flag: str = "--out") -> None:
    """One line before any training unless a file can be created in ``folder`` (``flag`` names the option to
    change), so that a read-only or missing output or cache folder is not found after hours of phase 0."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise BenchError(f"folder {folder} is not writable ({e.strerror}); pass {flag} to a writable folder") from None
