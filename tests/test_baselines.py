"""Baseline (and PASS) loss terms on hand-computed values, and forgetting on a small real scenario (half of MNIST,
5 experiences of 2 classes, LeNet-5, fixed seed)."""
import json
import math

import pytest
import torch

from baselines.icarl_loss import SuiteICaRLLoss
from baselines.lwf import LwFWithT2
from conftest import SHARED_DATA, cli


def test_lwf_distillation_has_the_t2_factor():
    out = torch.tensor([[1.0, 0.0, 5.0]])
    prev = torch.tensor([[0.0, 1.0, -3.0]])
    t = 2.0
    p = [math.exp(0 / t), math.exp(1 / t)]
    p = [v / sum(p) for v in p]
    q = [math.exp(1 / t), math.exp(0 / t)]
    q = [v / sum(q) for v in q]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))  # KL(prev || cur) on the old units 0 and 1
    got = LwFWithT2(alpha=1, temperature=t)._distillation_loss(out, prev, {0, 1})
    assert got.item() == pytest.approx(kl * t * t, rel=1e-5)


class _Strategy:
    def __init__(self, x):
        self.mb_x = x


def test_icarl_loss_uses_old_sigmoid_outputs_as_old_class_targets():
    loss = SuiteICaRLLoss()
    old = torch.nn.Linear(2, 2, bias=False)
    old.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss.old_model, loss.old_classes = old, [0, 1]
    x = torch.tensor([[2.0, -1.0]])
    loss.before_forward(_Strategy(x))
    logits = torch.tensor([[0.5, 0.0, 1.0]])
    got = loss(logits, torch.tensor([2]))
    s = torch.sigmoid
    targets = [s(torch.tensor(2.0)).item(), s(torch.tensor(-1.0)).item(), 1.0]
    preds = [s(torch.tensor(v)).item() for v in (0.5, 0.0, 1.0)]
    bce = -sum(t * math.log(p) + (1 - t) * math.log(1 - p) for t, p in zip(targets, preds)) / 3
    assert got.item() == pytest.approx(bce, rel=1e-5)


@pytest.mark.skipif(not (SHARED_DATA / "mnist.npz").is_file(), reason="needs ../shared/data/mnist.npz")
def _mnist_subset(root, train_per_class, test_per_class):
    """Writes root/mnist.npz with the first images of each class of the real MNIST (a smaller real scenario)."""
    import numpy as np

    d = np.load(SHARED_DATA / "mnist.npz")
    out = {}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        y = d[f"y_{split}"]
        keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)]))
        out[f"x_{split}"], out[f"y_{split}"] = d[f"x_{split}"][keep], y[keep]
    out["classes"] = d["classes"]
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "mnist.npz", **out)
    return root


def test_lwf_mc_icarl_pass_ucir_and_eeil_forget_less_than_finetuning_on_mnist(tmp_path):
    # half of MNIST's training images (3000 per class) and 500 test images per class keep the run short
    data = _mnist_subset(tmp_path / "data", 3000, 500)
    p = cli("--scenario", "mnist", "--data-root", str(data), "--phases", "4", "--model", "lenet5",
            "--profile", "smoke", "--per-class", "all", "--methods", "finetune", "lwf-mc", "icarl", "pass", "ucir",
            "eeil", "--seeds", "0", "--no-progress",
            "--out", str(tmp_path / "run"))
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {}
    for f in (tmp_path / "run").rglob("result.json"):
        rows.update(json.loads(f.read_text())["rows"])
    fm = {k: v["forgetting_max"] for k, v in rows.items()}
    acc = {k: v["average_accuracy"] for k, v in rows.items()}
    # forgetting / average accuracy measured on this subset: fine-tuning forgets nearly everything (0.990 / 0.452);
    # the others keep most (lwf-mc 0.309 / 0.831, icarl-cnn 0.104 / 0.826, icarl-ncm 0.260 / 0.836; PASS, without
    # exemplars, 0.036 / 0.850)
    assert fm["finetune"] > 0.9
    for m in ("lwf-mc", "icarl-cnn", "icarl-ncm", "pass"):
        assert fm["finetune"] - fm[m] > 0.5, fm
        assert acc[m] > acc["finetune"] + 0.2, acc
    # the exemplar baselines (measured: ucir-cnn 0.285 / 0.705, ucir-nme -0.026 / 0.698, eeil 0.560 / 0.681; EEIL's
    # balanced fine-tuning at 1 % of the learning rate barely moves the network in one epoch)
    for m, margin in (("ucir-cnn", 0.4), ("ucir-nme", 0.4), ("eeil", 0.25)):
        assert fm["finetune"] - fm[m] > margin, fm
        assert acc[m] > acc["finetune"] + 0.15, acc
