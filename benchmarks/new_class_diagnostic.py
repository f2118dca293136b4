"""Does a method learn its new classes within a phase? Phase ``--phase K`` (default 1) of a class-incremental cell,
evaluated after every epoch: accuracy on the earlier classes and on the new ones (each among all seen classes, as
``acc[K][:]``; "old" pools all earlier groups), the new classes' accuracy among themselves (0 among all but high
among themselves: the old classes win the arg-max, no label bug) and which groups the new images are predicted
into.  For SSRE also the mean CE weight ``1 - s`` of its prototype selection.  The figures behind the
``cpu`` PASS-family recipe (``benchmark/profiles.py``, ``results/README.md``); phase 0 comes from (or goes to) the
shared phase-0 cache, so a recipe of later phases can be tried in minutes.  With ``--phase K > 1`` phases
1..K-1 are trained first, quietly, with the same recipe (the ``--epochs`` / ``--lr-step`` / ``--batch-size``
overrides apply to them too).  ``--fresh-rows`` re-initialises the new classes' classifier rows before phase K with
PyTorch's ``nn.Linear`` default (what the official PASS / SSRE ``Incremental_learning`` gives new rows; the suite's
full-size head carries them from earlier phases, where Adam's weight decay drives them to ~0).

    python benchmarks/new_class_diagnostic.py --method pass --epochs 8 --lr-step 0 --base-epochs 5 --base-lr-step 2
    python benchmarks/new_class_diagnostic.py --method ssre --epochs 25 --lr-step 19 --base-epochs 5 --base-lr-step 2
    python benchmarks/new_class_diagnostic.py --method ssre --phase 2 [--fresh-rows]

(``--base-*`` choose the phase-0 recipe, default the profile's; other options: ``--scenario``, ``--phases``,
``--profile``, ``--batch-size``, ``--seed``.)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402


class _SelectionWeights(SupervisedPlugin):
    """Mean ``1 - s`` over the steps of an epoch (SSRE's weight of each sample's CE)."""

    def __init__(self, selection):
        super().__init__()
        self.selection, self.values = selection, []

    def before_backward(self, strategy, **kwargs):
        s = self.selection.s()
        if s is not None:
            self.values.append(float((1 - s.detach()).mean()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="pass")
    ap.add_argument("--scenario", default="cifar100")
    ap.add_argument("--phases", type=int, default=10)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase", type=int, default=1, help="the incremental phase to diagnose (earlier ones are trained)")
    ap.add_argument("--epochs", type=int, help="epochs of phase 1 (default: the profile's)")
    ap.add_argument("--lr-step", type=int, help="StepLR step of phase 1, 0 = no decay (default: the profile's)")
    ap.add_argument("--batch-size", type=int, help="batch size of phase 1 (default: the profile's)")
    ap.add_argument("--base-epochs", type=int, help="epochs of phase 0 (default: the profile's)")
    ap.add_argument("--base-lr-step", type=int, help="StepLR step of phase 0 (default: the profile's)")
    ap.add_argument("--fresh-rows", action="store_true", help="re-initialise the new classes' rows before phase K")
    ap.add_argument("--data-root")
    ap.add_argument("--cache-dir")
    a = ap.parse_args(argv)

    import baselines  # noqa: F401  (registers the methods)
    import strategies  # noqa: F401
    from benchmark.cells import Cell
    from benchmark.evaluation import evaluate_phase
    from benchmark.methods import METHODS, MethodContext, full_params
    from benchmark.models import build_model
    from benchmark.runner import CellRun, make_cells
    from benchmark.scenarios import build_scenario
    from benchmark.store import default_cache_dir
    from benchmark.training import seed_everything

    (cell,) = make_cells(scenarios=[a.scenario], phases=[a.phases], methods=[a.method], seeds=[a.seed],
                         profile=a.profile, data_root=a.data_root)
    cfg = dict(cell.config)
    for part, ep, step, bs in (("base", a.base_epochs, a.base_lr_step, None),
                               ("inc", a.epochs, a.lr_step, a.batch_size)):
        r = dict(cfg["recipe"][part])
        r.update({k: v for k, v in (("epochs", ep), ("lr_step", step), ("batch_size", bs)) if v is not None})
        cfg["recipe"] = {**cfg["recipe"], part: r}
    cell = Cell(cfg)
    cache = Path(a.cache_dir).expanduser() if a.cache_dir else default_cache_dir()
    run = CellRun(cell, Path("/nonexistent"), cache, torch.device("cpu"), a.data_root, progress=False)
    sc = build_scenario(cfg["scenario"], cfg["phases"], cfg["class_order_seed"], a.data_root,
                        cfg["spread_remaining"], cfg["base_classes"])
    method_cls = METHODS.get(cfg["method"])
    model = build_model(cfg["model"], sc.spec.n_classes * method_cls.outputs_per_class, sc.data.channels,
                        sc.spec.mean, sc.spec.std)
    params = full_params(cfg["method"], cfg["method_params"])
    ctx = MethodContext(model, sc, run.recipe_for, params, torch.device("cpu"), cfg["seed"], a.data_root)
    method = method_cls(ctx)
    state = {"phases_done": 0, "rows": {}, "phase_times": [], "train_images": 0, "train_seconds": 0.0,
             "phase0_cache": None}
    # phase 0 exactly as the runner trains it (from the cache, or trained and stored there); no checkpoints
    run._save_checkpoint = lambda *args, **kwargs: None
    t0 = time.time()
    run._train_phase(method, sc, sc.benchmark, 0, state, method.state_dict(), None)
    print(f"phase 0 ({cfg['recipe']['base']['epochs']} epochs, cache {state['phase0_cache']}, "
          f"{time.time() - t0:.0f} s): accuracy {evaluate_phase(method, sc, 0, 'cpu')[method.name][0]:.3f}")

    K = a.phase
    if not 1 <= K <= cfg["phases"]:
        ap.error(f"--phase must be within 1..{cfg['phases']}")
    for k in range(1, K):
        t = time.time()
        run._train_phase(method, sc, sc.benchmark, k, state, method.state_dict(), None)
        row = evaluate_phase(method, sc, k, "cpu")[method.name]
        print(f"phase {k} ({time.time() - t:.0f} s): acc[{k}][{k}] {row[k]:.3f}, acc[{k}][0] {row[0]:.3f}", flush=True)

    lo, hi = sc.group_bounds()[K]
    d = sc.data
    new = (d.y_test >= lo) & (d.y_test < hi)
    counts = [int(((d.y_test >= a_) & (d.y_test < b_)).sum()) for a_, b_ in sc.group_bounds()]
    weights = _SelectionWeights(method.selection) if hasattr(method, "selection") else None
    if weights is not None:
        method.strategy.plugins.insert(0, weights)
    inc = cfg["recipe"]["inc"]
    seed_everything(cfg["seed"] * 1000 + K)
    if a.fresh_rows:
        import math
        opc = 1 if getattr(getattr(method, "reparam", None), "converted", False) else method_cls.outputs_per_class
        with torch.no_grad():
            w, b = model.head.weight, model.head.bias
            bound = 1 / math.sqrt(w.shape[1])
            w[lo * opc:hi * opc].uniform_(-bound, bound)
            b[lo * opc:hi * opc].uniform_(-bound, bound)
    print(f"phase {K}: {inc['epochs']} epochs, lr {inc['lr']}, StepLR step {inc['lr_step']}, batch {inc['batch_size']}")
    print("epoch  acc[K][old]  acc[K][K]  new among new" + ("  mean 1-s" if weights else ""))
    t1 = time.time()

    @torch.no_grad()
    def on_epoch_end(epoch):
        row = evaluate_phase(method, sc, K, "cpu")[method.name]
        old = sum(row[g] * n for g, n in enumerate(counts[:K])) / sum(counts[:K])
        model.eval()
        scores = torch.cat([method.scores(d.x_test[new][i:i + 500])[method.name]
                            for i in range(0, int(new.sum()), 500)])
        model.train()
        among = float(((scores[:, lo:hi].argmax(1) + lo) == d.y_test[new]).float().mean())
        pred = scores[:, :hi].argmax(1)
        where = " ".join(f"{float(((pred >= a_) & (pred < b_)).float().mean()):.2f}"
                         for a_, b_ in sc.group_bounds()[:K + 1])
        extra = f"  {sum(weights.values) / max(len(weights.values), 1):8.3f}" if weights else ""
        if weights:
            weights.values.clear()
        print(f"{epoch:5d}  {old:11.3f}  {row[K]:9.3f}  {among:13.3f}{extra}  ({time.time() - t1:.0f} s)  "
              f"new images predicted in groups 0..K: {where}", flush=True)

    method.suite_plugin.on_epoch_end = on_epoch_end
    method.suite_plugin.generator.manual_seed(cfg["seed"] * 1000 + K)
    method.train_phase(K, sc.benchmark.train_stream[K], inc["epochs"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
