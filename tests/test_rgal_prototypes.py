"""RGAL's prototype optimisation (L'_g): it raises the old/current disagreement, moves only the samples, and runs
inside PASS on a real scenario."""
import json

import torch
import torch.nn.functional as F

from conftest import cli
from strategies.rgal.prototype_optimization import optimize_prototypes


def test_optimization_moves_samples_towards_disagreement_without_touching_models():
    torch.manual_seed(0)
    head_old, head_cur = torch.nn.Linear(8, 3), torch.nn.Linear(8, 5)
    p = torch.randn(12, 8)
    c = torch.randint(0, 3, (12,))

    def l_adv(x):
        return F.kl_div(F.log_softmax(head_cur(x)[:, :3], 1), F.softmax(head_old(x), 1), reduction="batchmean")

    new = optimize_prototypes(p, c, head_old, head_cur, steps=50, lr=0.05, w_ntri=0.0, w_oh=0.0,
                              generator=torch.Generator().manual_seed(0))
    assert (new - p).norm() > 0 and l_adv(new) > l_adv(p)
    assert all(q.grad is None for q in [*head_old.parameters(), *head_cur.parameters()])
    # with the one-hot term alone the samples become more confidently their class under the old head
    new_oh = optimize_prototypes(p, c, head_old, head_cur, steps=50, lr=0.05, w_adv=0.0, w_ntri=0.0)
    assert F.cross_entropy(head_old(new_oh), c) < F.cross_entropy(head_old(p), c)


def test_pass_with_prototype_optimization_reports_movement(tmp_path):
    # the embedded scenario (1 000 images a phase) and the small LeNet: about 12 s instead of 55 s on MNIST
    p = cli("--scenario", "cifar100-mini", "--phases", "1", "--model", "lenet5_half", "--profile", "smoke",
            "--methods", "pass+rgal-g", "--no-progress", "--out", str(tmp_path / "run"))
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(next((tmp_path / "run").rglob("result.json")).read_text())
    mv = r["extra"]["prototype_movement_per_phase"]
    assert len(mv) == 1 and 0 < mv[0] < 10  # phase 1 only; samples move, by less than 10 radii
    assert r["rows"]["pass+rgal-g"]["published_name"] == "PASS+RGAL L'_g only"
