"""Suite overhead benchmark: N fixed training steps through the suite (Avalanche ``Naive`` + the suite plugin:
tensor data, batched augmentation, per-phase optimiser, epoch callbacks; plus the method's plugins) against a bare
PyTorch loop doing the same computation (same model, data, batch size, batched augmentation, Adam), interleaved;
prints the median of the per-repetition ratios suite / bare.  Target: at most 1.10.

* ``--method finetune``: phase-0 fine-tuning steps.
* ``--method pass``: steps of PASS's phase 1 -- rotation, temperature CE, 64 prototype samples through the
  head, the frozen previous model's features and the Frobenius distillation term -- and the end-of-phase prototype
  update, after a phase 0 whose end-of-phase work (prototypes, old model) ran on the untrained network.

    python benchmarks/overhead.py [--method finetune|pass] [--scenario cifar100-mini] [--epochs 2] [--reps 3]
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


def _pass_setup(sc, model_name, recipe):
    """A PASS method after phase 0's end-of-phase work (no phase-0 training: the cost per step does not depend on
    the weights)."""
    import strategies  # noqa: F401

    seed_everything(0)
    model = build_model(model_name, sc.n_used_classes * 4, 3, sc.spec.mean, sc.spec.std)
    params = dict(METHODS.entry("pass").extra["defaults"])
    method = METHODS.get("pass")(MethodContext(model, sc, lambda k: recipe, params, torch.device("cpu")))
    method.train_phase(0, sc.benchmark.train_stream[0], 0)
    return method


def pass_suite_run(sc, model_name, recipe):
    method = _pass_setup(sc, model_name, recipe)
    t = time.perf_counter()
    method.train_phase(1, sc.benchmark.train_stream[1], recipe.epochs)
    return time.perf_counter() - t, method.suite_plugin.images_seen


def pass_bare_run(sc, model_name, recipe):
    import torch.nn.functional as F

    from strategies.pass_plugins import phase_features, rotate_batch

    method = _pass_setup(sc, model_name, recipe)
    model, old, bank = method.model, method.old.model, method.bank
    t = time.perf_counter()
    lo, hi = sc.group_bounds()[1]
    keep = (sc.data.y_train >= lo) & (sc.data.y_train < hi)
    x, y = sc.data.x_train[keep], sc.data.y_train[keep]
    model.set_active_classes(4 * hi)
    model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), recipe)
    gen, pgen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    model.train()
    seen = 0
    for _ in range(recipe.epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), recipe.batch_size):
            idx = perm[i:i + recipe.batch_size]
            xb = augment_batch(x[idx], sc.spec.augment, gen).contiguous(memory_format=torch.channels_last)
            xr, yr = rotate_batch(xb, y[idx])
            opt.zero_grad()
            f = model.backbone(xr)
            loss = F.cross_entropy(model.head(f) / 0.1, yr)
            p, c = bank.sample(recipe.batch_size, pgen)
            loss = loss + 10 * F.cross_entropy(model.head(p) / 0.1, 4 * c)
            with torch.no_grad():
                f_old = old.backbone(xr)
            loss = loss + 10 * torch.dist(f, f_old, 2)
            loss.backward()
            opt.step()
            seen += len(idx)
    f, yy = phase_features(model, x, y, recipe.batch_size, sc.spec.augment, gen, "cpu")
    bank.update(f, yy)
    method.old.update(model)
    return time.perf_counter() - t, seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["finetune", "pass"], default="finetune")
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
    suite_fn, bare_fn = (suite_run, bare_run) if a.method == "finetune" else (pass_suite_run, pass_bare_run)
    ratios = []
    for r in range(a.reps):
        # alternate which runs first, so that a warm-up or a slow spell of the shared machine hits both sides
        if r % 2 == 0:
            ts, ns = suite_fn(sc, a.model, recipe)
            tb, nb = bare_fn(sc, a.model, recipe)
        else:
            tb, nb = bare_fn(sc, a.model, recipe)
            ts, ns = suite_fn(sc, a.model, recipe)
        assert ns == nb, (ns, nb)
        ratios.append(ts / tb)
        print(f"rep {r} ({'suite' if r % 2 == 0 else 'bare'} first): suite {ts:.2f}s bare {tb:.2f}s for {nb} images "
              f"({nb / tb:.0f} img/s bare) ratio {ts / tb:.3f}")
    print(f"median suite/bare time ratio over {a.reps} interleaved reps: {statistics.median(ratios):.3f} "
          f"(target <= 1.10); command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
