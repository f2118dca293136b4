"""One-time migration of committed result folders to the keys that name the torch thread count.

A CPU cell's configuration holds ``torch_threads`` (``benchmark.cells.thread_entry``), and a
distillation cell's holds ``teacher_key`` (the key of the suite's teacher it distils, which itself names the thread
count), so two cells computed at different thread counts never share a key, a folder or a cached model.  Committed
folders were keyed without it.  This tool rewrites each one whose ``result.json`` recorded ``versions.torch_threads``:
the configuration gains the entry, the key and the folder name (``...-<key[:10]>``) follow, the ``key`` inside a
carried ``phase0.pt`` / ``teacher.pt`` follows, and every mention of the old folder name in the repository's
Markdown is replaced.  A folder that did not record its thread count cannot be given the key it would have today:
it keeps its old key (a new run never reuses it, so it is recomputed if asked for) and its ``result.json`` says so
under ``provenance_gaps``.

    python tools/migrate_thread_keys.py [RESULTS_DIR] [--dry-run]

Idempotent: a folder whose configuration already holds ``torch_threads`` is left alone.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import baselines  # noqa: E402,F401  (registers the methods)
import strategies  # noqa: E402,F401
from benchmark.augment import AugmentSpec  # noqa: E402
from benchmark.cells import Cell, phase0_key, stable_hash  # noqa: E402
from benchmark.dfkd_profiles import TeacherRecipe  # noqa: E402
from benchmark.methods import METHODS, full_params  # noqa: E402
from benchmark.teachers import teacher_key  # noqa: E402

GAP = ("torch_threads: not recorded by the suite version that ran this cell; it cannot be derived, so the cell keeps "
       "the key it was written with (without the thread count) and a new run does not reuse it")


def new_config(cfg: dict, threads: int, teacher_threads: int) -> dict:
    """The configuration with the thread count; a distillation cell's ``teacher_key`` names the teacher it really
    distilled (trained at ``teacher_threads``, which may differ from the cell's own count: such a cell is one that
    no new run produces, and its key says so)."""
    new = {**cfg, "torch_threads": threads}
    if cfg["task"] == "dfkd":
        new["teacher_key"] = None if cfg.get("teacher_checkpoint_sha256") else teacher_key(
            cfg["data_sha256"], cfg["teacher"], TeacherRecipe(**cfg["teacher_recipe"]), AugmentSpec(**cfg["augment"]),
            cfg["teacher_seed"], cfg["device_type"], teacher_threads)
    return new


def dirname(cfg: dict, key: str) -> str:
    if cfg["task"] == "dfkd":
        return f"{cfg['scenario']}-{cfg['method']}-s{cfg['seed']}-{key[:10]}"
    return Cell(cfg).dirname if stable_hash(cfg) == key else ""


def families(cfg: dict) -> list[str]:
    """Phase-0 families a carried ``phase0.pt`` of this cell may hold: its own method's first, then every other."""
    fams = [METHODS.get(cfg["method"]).phase0_family_for(full_params(cfg["method"], cfg["method_params"]))]
    for m in METHODS.names():
        fams.append(METHODS.get(m).phase0_family_for(full_params(m, {})))
    return [f for f in dict.fromkeys(fams) if f]


def rekey_phase0(path: Path, old_cfg: dict, new_cfg: dict) -> bool:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for fam in families(old_cfg):
        if obj.get("key") == phase0_key(old_cfg, fam):
            obj["key"] = phase0_key(new_cfg, fam)
            torch.save(obj, path)
            return True
    return False


def rekey_teacher(path: Path, old_cfg: dict, new_cfg: dict) -> bool:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    args = (old_cfg["data_sha256"], old_cfg["teacher"], TeacherRecipe(**old_cfg["teacher_recipe"]),
            AugmentSpec(**old_cfg["augment"]), old_cfg["teacher_seed"], old_cfg["device_type"])
    if obj.get("key") != teacher_key(*args):
        return False
    obj["key"] = new_cfg["teacher_key"]
    torch.save(obj, path)
    return True


def trained_here(results: Path) -> dict:
    """cache file name -> {thread counts of the cells that trained it} for phase-0 and teacher caches, read from
    the committed results (``... cache: "miss, trained and stored <file>"``), by sweep folder and over all."""
    by_dir, everywhere = {}, {}
    for res_path in results.glob("*/*/result.json"):
        res = json.loads(res_path.read_text())
        status = (res.get("timings") or {}).get("phase0_cache") or (res.get("teacher") or {}).get("cache") or ""
        if status.startswith("miss, trained and stored "):
            f = status.rsplit(" ", 1)[1]
            t = (res.get("versions") or {}).get("torch_threads")
            by_dir.setdefault((res_path.parent.parent.name, f), set()).add(t)
            everywhere.setdefault(f, set()).add(t)
            by_dir.setdefault((res_path.parent.parent.name, res_path.parent.name), set()).add(t)  # restored from it
    return {"dir": by_dir, "all": everywhere}


def shared_model_threads(res: dict, sweep: str, trained: dict):
    """The thread count the cell's shared model (phase 0 or teacher) was trained at: its own if it trained it;
    else that of the committed cell that did (None: not known)."""
    status = (res.get("timings") or {}).get("phase0_cache") or (res.get("teacher") or {}).get("cache")
    own = (res.get("versions") or {}).get("torch_threads")
    if not status or status.startswith("miss, trained"):
        return own
    if status.startswith("miss, restored from "):
        key = (sweep, status.split("restored from ", 1)[1].split("/", 1)[0])
    else:  # "hit FILE"
        key = (sweep, status.rsplit(" ", 1)[1])
    found = trained["dir"].get(key) or trained["all"].get(key[1]) or set()
    return next(iter(found)) if len(found) == 1 else None


def migrate(results: Path, dry_run: bool) -> list[tuple[str, str]]:
    renames, gaps, notes = [], 0, []
    trained = trained_here(results)
    for res_path in sorted(results.glob("*/*/result.json")):
        res = json.loads(res_path.read_text())
        cfg, folder = res["cell"], res_path.parent
        if "torch_threads" in cfg or cfg.get("device_type") != "cpu":
            continue
        threads = (res.get("versions") or {}).get("torch_threads")
        shared = shared_model_threads(res, folder.parent.name, trained)
        gap = None
        if threads is None:
            gap = GAP
        elif shared is None or (cfg["task"] == "cil" and shared != threads):
            what = "phase-0 model" if cfg["task"] == "cil" else "teacher"
            at = "an unrecorded thread count" if shared is None else f"{shared} threads"
            gap = (f"torch_threads: the cell ran at {threads} threads on a {what} trained at {at}; no key of today "
                   f"describes that, so the cell keeps the key it was written with and a new run does not reuse it")
        if gap is not None:
            gaps += 1
            if not dry_run:
                res.setdefault("versions", {}).setdefault("torch_threads", None)
                res["provenance_gaps"] = sorted(set(res.get("provenance_gaps", [])) | {gap})
                res_path.write_text(json.dumps(res, indent=1, default=str))
            continue
        old_key, new = res["key"], new_config(cfg, int(threads), int(shared))
        new_key = stable_hash(new)
        if folder.name != dirname(cfg, old_key):
            notes.append(f"skipped {folder}: its name is not the one its key gives")
            continue
        target = folder.parent / dirname(new, new_key)
        renames += [(folder.name, target.name), (old_key, new_key)]
        if dry_run:
            continue
        for carried, fn in (("phase0.pt", rekey_phase0), ("teacher.pt", rekey_teacher)):
            if (folder / carried).is_file() and not fn(folder / carried, cfg, new):
                notes.append(f"{folder / carried}: its key matches no model of this cell; left as it was")
        res.update(key=new_key, cell=new)
        res["key_migration"] = {"from_key": old_key, "tool": "tools/migrate_thread_keys.py",
                                "why": "keys name the torch thread count since issue 36"}
        res_path.write_text(json.dumps(res, indent=1, default=str))
        if (folder / "cell.json").is_file():
            cj = json.loads((folder / "cell.json").read_text())
            cj.update(key=new_key, cell=new)
            (folder / "cell.json").write_text(json.dumps(cj, indent=1, default=str))
        subprocess.run(["git", "mv", str(folder), str(target)], cwd=ROOT, check=True)
    print(f"{len(renames) // 2} folders re-keyed, {gaps} kept their keys (provenance_gaps says why)", file=sys.stderr)
    for n in notes:
        print("note:", n, file=sys.stderr)
    return renames


def rewrite_mentions(renames: list[tuple[str, str]]) -> None:
    files = subprocess.run(["git", "ls-files", "*.md", "*.sh", "*.csv", "*.tex"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        p = ROOT / f
        text = p.read_text()
        new = text
        for old, now in renames:
            new = new.replace(old, now)
        if new != text:
            p.write_text(new)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", type=Path, default=ROOT / "results")
    ap.add_argument("--dry-run", action="store_true", help="print what would be renamed, change nothing")
    a = ap.parse_args(argv)
    renames = migrate(a.results, a.dry_run)
    for old, new in renames[::2]:
        print(f"{old} -> {new}")
    if not a.dry_run:
        rewrite_mentions(renames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
