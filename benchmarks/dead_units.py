"""How many ReLU units of a distillation student never fire on real training images, at initialisation and after a
DFKD cell has trained it.  The figures behind the per-seed spread of the MNIST table (``results/README.md``):
LeNet-5-half has only 3 / 8 / 60 convolution channels and 42 hidden units, and every method of a seed starts from the
same seeded student: a seed whose student loses most of a layer to dead ReLUs under one method may be short of
capacity under others too (a correlation to look at per method, not a rule).

The cell is run by the suite itself (``run_benchmark.main``, into ``--out``, a scratch folder by default) with
``benchmark.dfkd_runner.build_model`` wrapped so that the trained student can be inspected afterwards; nothing
else is changed.  A unit is dead when its ReLU output is at most 0 for every one of ``--images`` training images (a
channel: at every position).  Units are named by module (LeNet-5: ``conv2.1`` is conv2's ReLU).

    python benchmarks/dead_units.py --scenario mnist --method kd-real --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402


def dead_units(net: nn.Module, x: torch.Tensor, chunk: int = 1000) -> dict[str, str]:
    """``{relu: "dead/total"}`` for every ReLU call of ``net.backbone``'s forward on the images ``x`` (fed ``chunk``
    at a time), named by module; a ReLU module applied k > 1 times in one forward (ResNet blocks reuse theirs) gets
    one entry per call, ``name#0`` .. ``name#k-1``.  (``OutputCapture`` keeps only a module's latest output, hence
    this hook.)"""
    calls: list[tuple[str, torch.Tensor]] = []

    def hook(name):
        def fn(module, inputs, out):
            per_unit = out.flatten(2).amax(dim=2) if out.dim() > 2 else out  # a channel fires anywhere in its map
            calls.append((name, (per_unit > 0).any(0)))
        return fn

    hooks = [m.register_forward_hook(hook(n)) for n, m in net.backbone.named_modules() if isinstance(m, nn.ReLU)]
    fired: dict[str, torch.Tensor] = {}
    net.eval()
    try:
        with torch.no_grad():
            for part in x.split(chunk):
                calls.clear()
                net(part)
                names = [n for n, _ in calls]
                for i, (n, f) in enumerate(calls):
                    key = n if names.count(n) == 1 else f"{n}#{names[:i].count(n)}"
                    fired[key] = fired[key] | f if key in fired else f
    finally:
        for h in hooks:
            h.remove()
    return {n: f"{int((~f).sum())}/{f.numel()}" for n, f in fired.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="mnist")
    ap.add_argument("--method", default="kd-real")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--out", default=None, help="where the cells go (default: a temporary folder)")
    args = ap.parse_args(argv)

    import run_benchmark
    from benchmark import dfkd_runner
    from benchmark.data import load_arrays
    from benchmark.scenarios import SCENARIOS
    from benchmark.training import seed_everything

    built = []
    original = dfkd_runner.build_model

    def keep(*a, **k):
        built.append((a, k, original(*a, **k)))
        return built[-1][2]

    dfkd_runner.build_model = keep
    x = load_arrays(SCENARIOS.get(args.scenario).dataset).x_train[:args.images]
    out = args.out or tempfile.mkdtemp(prefix="dead-units-")
    for seed in args.seeds:
        built.clear()
        rc = run_benchmark.main(["--task", "dfkd", "--scenario", args.scenario, "--methods", args.method,
                                 "--profile", args.profile, "--seeds", str(seed), "--out", out, "--no-progress"])
        if rc != 0 or not built:
            print(f"error: the {args.method} cell of seed {seed} did not train a student here (finished already in "
                  f"{out}? use an empty --out)", file=sys.stderr)
            return 2
        a, k, trained = built[-1]
        seed_everything(seed)
        initial = original(*a, **k)  # the runner seeds, then builds the student: the same initial weights
        print(f"seed {seed}: dead ReLU units on {len(x)} training images, at init {dead_units(initial, x)}, "
              f"after {args.method} {dead_units(trained, x)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
