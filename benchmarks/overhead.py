"""Suite overhead benchmark: N fixed fine-tuning steps through the suite (Avalanche ``Naive`` + the suite plugin:
tensor data, batched augmentation, per-phase optimiser, epoch callbacks) against a bare PyTorch loop doing the same
computation (same model, data, batch size, batched augmentation, Adam), interleaved; prints the median of the
per-repetition ratios suite / bare.  Target (issue 2): at most 1.10.

    python benchmarks/overhead.py [--scenario cifar100-mini] [--epochs 2] [--reps 3] [--model resnet20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmark.augment import augment_batch  # noqa: E402
from benchmark.methods import METHODS, MethodContext  # noqa: E402
from benchmark.models import build_model  # noqa: E402
from benchmark.scenarios import build_scenario  # noqa: E402
from benchmark.training import PhaseRecipe, make_optimizer, seed_everything  # noqa: E402


def suite_run(sc, model_name, recipe):
    import baselines  # noqa: F401

    seed_everything(0)
    model = build_model(model_name, sc.n_used_classes, 3, sc.spec.mean, sc.spec.std)
    method = METHODS.get("finetune")(MethodContext(model, sc, lambda k: recipe, {}, torch.device("cpu")))
    exp = sc.benchmark.train_stream[0]
    t = time.perf_counter()
    method.train_phase(0, exp, recipe.epochs)
    return time.perf_counter() - t, method.suite_plugin.images_seen


def bare_run(sc, model_name, recipe):
    seed_everything(0)
    model = build_model(model_name, sc.n_used_classes, 3, sc.spec.mean, sc.spec.std)
    t = time.perf_counter()
    lo, hi = sc.group_bounds()[0]
    keep = sc.data.y_train < hi
    x, y = sc.data.x_train[keep], sc.data.y_train[keep]
    model.set_active_classes(hi)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), recipe)
    gen = torch.Generator().manual_seed(0)
    model.train()
    seen = 0
    for _ in range(recipe.epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), recipe.batch_size):
            idx = perm[i:i + recipe.batch_size]
            xb = augment_batch(x[idx], sc.spec.augment, gen)
            if recipe.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            loss.backward()
            opt.step()
            seen += len(idx)
    return time.perf_counter() - t, seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="cifar100-mini")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    sc = build_scenario(a.scenario, 10, data_root=a.data_root)
    recipe = PhaseRecipe(epochs=a.epochs, lr=1e-3, weight_decay=2e-4, batch_size=a.batch_size, channels_last=True)
    sc.benchmark  # build outside the timings
    ratios = []
    for r in range(a.reps):
        ts, ns = suite_run(sc, a.model, recipe)
        tb, nb = bare_run(sc, a.model, recipe)
        assert ns == nb, (ns, nb)
        ratios.append(ts / tb)
        print(f"rep {r}: suite {ts:.2f}s bare {tb:.2f}s for {nb} images ({nb / tb:.0f} img/s bare) ratio {ts / tb:.3f}")
    print(f"median suite/bare time ratio over {a.reps} interleaved reps: {statistics.median(ratios):.3f} "
          f"(target <= 1.10); command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
