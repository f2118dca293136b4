"""PASS plugins: rotation labels, the loss terms on hand-computed values, and the method's own bookkeeping."""
import math

import pytest
import torch
import torch.nn.functional as F

from strategies.pass_plugins import (FeatureCapturePlugin, FeatureDistillationPlugin, OldModelHolder,
                                     PrototypeAugmentationPlugin, rotate_batch)
from strategies.prototypes import PrototypeBank


def test_rotation_interleaves_the_four_rotations_with_labels_4y_plus_k():
    x = torch.arange(2 * 1 * 2 * 2, dtype=torch.float32).view(2, 1, 2, 2)
    xr, yr = rotate_batch(x, torch.tensor([3, 7]))
    assert yr.tolist() == [12, 13, 14, 15, 28, 29, 30, 31]
    assert torch.equal(xr[0], x[0]) and torch.equal(xr[1], torch.rot90(x[0], 1, (1, 2)))
    assert torch.equal(xr[6], torch.rot90(x[1], 2, (1, 2)))


class _S:
    def __init__(self, x=None):
        self.loss = torch.tensor(0.0)
        self.device = "cpu"
        self.mb_x = x


def test_prototype_augmentation_loss_by_hand():
    bank = PrototypeBank(noise=False)
    bank.means, bank.radius = {0: torch.tensor([1.0, 0.0]), 1: torch.tensor([0.0, 1.0])}, 0.0
    head = torch.nn.Linear(2, 8, bias=False)
    head.weight.data = torch.eye(8, 2)  # logit k = feature k for k < 2
    plug = PrototypeAugmentationPlugin(bank, head, weight=10.0, temperature=0.1, n_samples=3,
                                       generator=torch.Generator().manual_seed(0))
    s = _S()
    plug.before_backward(s)
    p, c = plug.last_samples
    logits = head(p) / 0.1
    expected = 10 * F.cross_entropy(logits, 4 * c)
    assert s.loss.item() == pytest.approx(expected.item())
    # only class 1 stored: its target is output 4 (logit 0) while output 1 gets 1 / 0.1 = 10
    bank.means = {1: torch.tensor([0.0, 1.0])}
    s = _S()
    plug.before_backward(s)
    assert s.loss.item() == pytest.approx(10 * math.log(7 + math.exp(10)), rel=1e-5)


def test_feature_distillation_is_the_frobenius_norm_of_the_whole_batch_difference():
    net = torch.nn.Module()
    net.backbone = torch.nn.Linear(3, 2, bias=False)
    net.backbone.weight.data = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cap = FeatureCapturePlugin(net.backbone)
    old = OldModelHolder()
    old.update(net)
    net.backbone.weight.data = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]])
    net.backbone(x)  # the strategy's forward fills the capture
    s = _S(x)
    FeatureDistillationPlugin(cap, old, weight=10.0).before_backward(s)
    # differences: [[1, 3], [0, 1]] -> Frobenius norm sqrt(11), not averaged
    assert s.loss.item() == pytest.approx(10 * math.sqrt(11), rel=1e-6)
    assert old.model.backbone._forward_hooks == {}  # the copy does not write into the capture


def test_a_non_default_temperature_gets_its_own_cached_phase0(tmp_path, capsys):
    """PASS's phase 0 is CE(logits / T, 4y + k): a PASS cell at another temperature must not load (or fill) the phase
    0 that SSRE and default PASS cells share."""
    import run_benchmark
    import strategies  # noqa: F401  (registers the methods)

    base = ["--methods", "pass", "ssre", "--dry-run", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert run_benchmark.main(base) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split("phase-0 cache: ")[1] for ln in out if "phase-0 cache" in ln] == [
        "miss (pass)", "hit (filled by an earlier cell)"]
    assert run_benchmark.main(base + ["--set", "pass.temperature=0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split("phase-0 cache: ")[1] for ln in out if "phase-0 cache" in ln] == [
        "miss (pass-temperature=0.5)", "miss (pass)"]


def test_evaluation_scores_are_the_unrotated_logits():
    """PASS's head has 4 rows per class (4y + k); a prediction is the arg-max over the k = 0 rows (``[:, ::4]``).
    SSRE the same until its head is cut to one row per class after phase 0 (``reparam.converted``)."""
    from types import SimpleNamespace

    from strategies.pass_method import PASS
    from strategies.ssre_method import SSRE

    out = torch.tensor([[0.0, 9.0, 9.0, 9.0, 1.0, 0.0, 0.0, 0.0]])  # class 0: rows 0-3, class 1: rows 4-7
    model = SimpleNamespace(name="m", model=lambda x: out)
    assert PASS.scores(model, None)["m"].tolist() == [[0.0, 1.0]]  # class 1 wins, not the rotated row 1
    for converted, want in ((False, [[0.0, 1.0]]), (True, out.tolist())):
        model.reparam = SimpleNamespace(converted=converted)
        assert SSRE.scores(model, None)["m"].tolist() == want
