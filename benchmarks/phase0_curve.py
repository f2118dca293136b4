"""How far does a phase-0 recipe get, and when?  Runs a phase-0-only cell (``--phases 0``) through the runner itself
(same seeds, data and plugins; checkpointed after every epoch in ``--out``, so the same command resumes it; the
model is stored in the shared phase-0 cache under its key, so a cell of the same recipe restores it instead of
training it again) and evaluates the base classes after every epoch: accuracy on the base classes' test images and
the epoch's wall time.  The measurements behind the phase-0 recipes of the ``cpu`` profile
(``benchmark/profiles.py``, ``results/README.md``).

    python benchmarks/phase0_curve.py --method pass --epochs 16 --lr-step 7 [--batch-size 64] [--seed 0] \
        --out /tmp/phase0-curves --csv /tmp/phase0-curves/curves.csv

``--lr-step`` is StepLR's step (the official PASS shape: StepLR(45) of 101 epochs, decays at 45 % and 90 %).
With ``--csv FILE`` each epoch's row is also appended to FILE (written as it goes: an interrupted run keeps its
curve).  Other options: ``--scenario``, ``--profile``, ``--lr``, ``--data-root``, ``--cache-dir``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="pass")
    ap.add_argument("--scenario", default="cifar100")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, help="phase-0 epochs (default: the profile's)")
    ap.add_argument("--lr-step", type=int, help="phase-0 StepLR step, 0 = no decay (default: the profile's)")
    ap.add_argument("--batch-size", type=int, help="phase-0 batch size (default: the profile's)")
    ap.add_argument("--lr", type=float, help="phase-0 learning rate (default: the profile's)")
    ap.add_argument("--csv", help="append one row per epoch to this file")
    ap.add_argument("--out", default="runs/phase0-curves", help="the cells' folder (checkpoints, result.json)")
    ap.add_argument("--data-root")
    ap.add_argument("--cache-dir")
    a = ap.parse_args(argv)

    import run_benchmark
    run_benchmark.load_all_methods()
    from benchmark.cells import Cell, phase0_key
    from benchmark.evaluation import evaluate_phase
    from benchmark.methods import METHODS, full_params
    from benchmark.runner import CellRun, make_cells
    from benchmark.scenarios import build_scenario
    from benchmark.store import default_cache_dir

    (cell,) = make_cells(scenarios=[a.scenario], phases=[0], methods=[a.method], seeds=[a.seed],
                         profile=a.profile, data_root=a.data_root)
    cfg = dict(cell.config)
    base = dict(cfg["recipe"]["base"])
    base.update({k: v for k, v in (("epochs", a.epochs), ("lr_step", a.lr_step), ("batch_size", a.batch_size),
                                   ("lr", a.lr)) if v is not None})
    cfg["recipe"] = {**cfg["recipe"], "base": base}
    cell = Cell(cfg)
    cache = Path(a.cache_dir).expanduser() if a.cache_dir else default_cache_dir()
    run = CellRun(cell, Path(a.out), cache, torch.device("cpu"), a.data_root, progress=False)
    sc = build_scenario(cfg["scenario"], cfg["phases"], cfg["class_order_seed"], a.data_root,
                        cfg["spread_remaining"], cfg["base_classes"],
                        tuple(cfg["subset"]) if cfg.get("subset") else None)
    family = METHODS.get(cfg["method"]).phase0_family_for(full_params(cfg["method"], cfg["method_params"]))
    print(f"{cfg['method']} seed {cfg['seed']}, phase-0 family {family}, key {phase0_key(cfg, family)}, "
          f"{torch.get_num_threads()} threads, folder {run.dir} ({run.status()}); recipe {base}", flush=True)
    out = Path(a.csv) if a.csv else None
    if out is not None and not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("method,seed,epochs,lr_step,batch_size,lr,epoch,base_accuracy,epoch_seconds\n")
    t_last = [time.time()]

    def on_epoch(method, k, epoch):
        seconds = time.time() - t_last[0]
        acc = evaluate_phase(method, sc, 0, "cpu")[method.name][0]
        print(f"epoch {epoch:3d}  base accuracy {acc:.4f}  ({seconds:.0f} s)", flush=True)
        if out is not None:
            with out.open("a") as f:
                f.write(f"{cfg['method']},{cfg['seed']},{base['epochs']},{base['lr_step']},{base['batch_size']},"
                        f"{base['lr']},{epoch},{acc:.4f},{seconds:.1f}\n")
        t_last[0] = time.time()  # evaluation excluded from the next epoch's time

    run._log_epoch = on_epoch  # the runner calls it after every epoch, before the epoch's checkpoint
    res = run.run()
    print(f"phase 0: {res['timings'].get('phase0_cache')}, base accuracy "
          f"{res['rows'][cfg['method']]['acc'][0][0]:.4f} (result {run.result_path})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
