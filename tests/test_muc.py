"""MUC's own parts (baselines/muc.py): the distillation and discrepancy terms on hand-computed values, the side
classifiers' layout, the auxiliary data (format conversion; the scenario's own dataset refused), and stage 3 on
real images actually separating the side heads on the auxiliary data while fitting the phase's classes."""
import math

import pytest
import torch

from baselines.muc import SideHeads, aux_images, classifier_discrepancy
from baselines.soft_targets import soft_cross_entropy
from benchmark.errors import BenchError
from benchmark.scenarios import build_scenario


def test_soft_cross_entropy_by_hand():
    z, z_old = torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]])
    # T = 2: target softmax([1, 0]) = (e/(e+1), 1/(e+1)); log softmax([0, 1]) = (-log(1+e), 1 - log(1+e))
    e = math.e
    want = -(e / (e + 1) * -math.log(1 + e) + 1 / (e + 1) * (1 - math.log(1 + e)))
    assert soft_cross_entropy(z, z_old, 2.0).item() == pytest.approx(want, rel=1e-6)


def test_classifier_discrepancy_by_hand():
    a = torch.tensor([[0.0, 0.0]])  # softmax (0.5, 0.5)
    b = torch.tensor([[math.log(3.0), 0.0]])  # (0.75, 0.25)
    c = torch.tensor([[0.0, math.log(3.0)]])  # (0.25, 0.75)
    # pairs: |a-b| mean 0.25, |a-c| 0.25, |b-c| 0.5
    assert classifier_discrepancy([a, b, c]).item() == pytest.approx(1.0, rel=1e-6)
    assert classifier_discrepancy([a, a]).item() == 0.0


def test_side_heads_follow_the_official_layout():
    side = SideHeads(2, [(0, 2), (2, 3)], k=3)  # group 0: 2 classes, group 1: 1 class -> 3*3 rows
    assert side.fc.weight.shape == (9, 2)
    with torch.no_grad():
        side.fc.weight.copy_(torch.arange(18.0).view(9, 2))
        side.fc.bias.zero_()
    e = torch.tensor([[1.0, 0.0]])
    h0, h1 = side.heads(e, 0), side.heads(e, 1)
    assert [h.tolist() for h in h0] == [[[0.0, 2.0]], [[4.0, 6.0]], [[8.0, 10.0]]]  # rows 0-5, two per head
    assert [h.tolist() for h in h1] == [[[12.0]], [[14.0]], [[16.0]]]  # rows 6-8 start at K * lo = 6


def test_aux_data_is_converted_to_the_scenario_and_never_the_scenario_itself():
    mini = build_scenario("cifar100-mini", 10)
    x = aux_images("auto", mini, None)  # embedded CIFAR-10 subset, 50 per class
    assert x.dtype == torch.uint8 and x.shape == (500, 3, 32, 32)
    with pytest.raises(BenchError, match="scenario's own classes"):
        aux_images("cifar100", mini, None)
    noise = aux_images("noise", mini, None, n_noise=7)
    assert noise.shape == (7, 3, 32, 32) and noise.float().std() > 50


def test_grey_scenarios_get_grey_aux_images():
    class _Spec:
        name, dataset = "mnist", "mnist"

    class _Data:
        x_train = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    class _Sc:
        spec, data = _Spec(), _Data()

    x = aux_images("cifar10-mini", _Sc(), None)
    assert x.shape == (500, 1, 32, 32) and x.dtype == torch.uint8 and x.float().mean() > 50


def test_stage3_fits_the_new_classes_and_separates_the_side_heads_on_aux_data(monkeypatch):
    import baselines.muc as muc
    from benchmark.models import build_model

    torch.manual_seed(0)
    sc = build_scenario("cifar100-mini", 10)
    net = build_model("resnet20", sc.n_used_classes, 3, sc.spec.mean, sc.spec.std)
    side = SideHeads(net.embed_dim, sc.group_bounds(), 3)
    net.muc_side = side
    # an untrained backbone's features are large (norm ~19): lr 0.01 here; the official 0.1 suits trained features
    # (measured on a trained CIFAR-100 ResNet-20: CE 0.29, discrepancy 0.74 of at most 1.2 after 80 epochs)
    params = {"K": 3, "temperature": 2.0, "side_kd": "previous", "ce_scope": "new", "aux": "auto", "stage3_epochs": 80,
              "stage3_views": 1, "stage3_lr": 0.01, "stage3_batch": 128, "side_init": "keep"}
    plug = muc.MUCPlugin(net, side, sc, params, torch.device("cpu"), 0, None)
    lo, hi = sc.group_bounds()[1]
    keep = (sc.data.y_train >= lo) & (sc.data.y_train < hi)
    x, y = sc.data.x_train[keep], sc.data.y_train[keep]
    net.eval()  # stage 3's features: eval-mode BatchNorm
    with torch.no_grad():
        fx, fu = net.backbone(x), net.backbone(plug.aux())
    init = {k: v.clone() for k, v in side.state_dict().items()}

    def after_stage3():
        side.load_state_dict(init)
        plug.train_side_heads(1, x, y)
        with torch.no_grad():
            ce = sum(torch.nn.functional.cross_entropy(z, y - lo) for z in side.heads(fx, 1)).item() / 3
            return ce, classifier_discrepancy(side.heads(fu, 1)).item()  # the real one, even when patched

    with torch.no_grad():
        ce0 = sum(torch.nn.functional.cross_entropy(z, y - lo) for z in side.heads(fx, 1)).item() / 3
    net.train()
    frozen = {k: v.clone() for k, v in net.state_dict().items()
              if not k.startswith("muc_side") and isinstance(v, torch.Tensor)}  # not the head's extra state
    ce_mcd, dis_mcd = after_stage3()
    # stage 3 trains group 1's side heads only: network, main head and the other groups' rows are untouched
    assert net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in frozen.items())
    g1 = slice(3 * lo, 3 * hi)
    w0, w1 = init["fc.weight"], side.fc.weight.detach()
    assert torch.equal(w0[:g1.start], w1[:g1.start]) and torch.equal(w0[g1.stop:], w1[g1.stop:])
    assert not torch.equal(w0[g1], w1[g1])
    monkeypatch.setattr(muc, "classifier_discrepancy", lambda zs: zs[0].sum() * 0.0)  # CE-only counterfactual
    ce_plain, dis_plain = after_stage3()
    assert ce_mcd < 0.8 * ce0 and ce_plain < 0.8 * ce0
    # measured 0.27 vs 0.065; the discrepancy term makes the heads disagree on out-of-distribution images
    assert dis_mcd > dis_plain + 0.1


@pytest.mark.parametrize("side_init", ["stage3", "keep"])
def test_side_heads_that_reached_zero_restart_from_a_random_init_or_stay_identical(side_init):
    """Adam's coupled weight decay in stage 1 drives a future group's side rows to 0 (measured on CIFAR-100): with
    ``keep`` its K heads are identical, get identical gradients and stay so (discrepancy exactly 0); ``stage3``
    re-draws them with nn.Linear's default init, so stage 3 separates them on the auxiliary data."""
    import baselines.muc as muc
    from benchmark.models import build_model

    torch.manual_seed(0)
    sc = build_scenario("cifar100-mini", 10)
    net = build_model("resnet20", sc.n_used_classes, 3, sc.spec.mean, sc.spec.std)
    net.muc_side = side = SideHeads(net.embed_dim, sc.group_bounds(), 3)
    params = {"K": 3, "temperature": 2.0, "side_kd": "previous", "ce_scope": "new", "aux": "auto", "stage3_epochs": 10,
              "stage3_views": 1, "stage3_lr": 0.01, "stage3_batch": 128, "side_init": side_init,
              "side_init_scale": 1.0}
    plug = muc.MUCPlugin(net, side, sc, params, torch.device("cpu"), 0, None)
    lo, hi = sc.group_bounds()[1]
    keep = (sc.data.y_train >= lo) & (sc.data.y_train < hi)

    def stage3_from_zero():
        with torch.no_grad():
            side.fc.weight.zero_()
            side.fc.bias.zero_()
        plug.train_side_heads(1, sc.data.x_train[keep], sc.data.y_train[keep])
        return side.fc.weight.detach().clone()

    first = stage3_from_zero()
    assert torch.equal(stage3_from_zero(), first)  # the redraw comes from the stage's seeded generator
    net.eval()
    with torch.no_grad():
        heads = side.heads(net.backbone(plug.aux()[:256]), 1)
        dis = classifier_discrepancy(heads).item()
    w = side.fc.weight.detach()[3 * lo:3 * hi].view(3, hi - lo, -1)
    assert w.abs().sum() > 0  # stage 3 trained them either way
    if side_init == "keep":
        assert torch.equal(w[0], w[1]) and torch.equal(w[1], w[2]) and dis == 0.0
    else:
        bound = 1 / net.embed_dim ** 0.5
        assert not torch.equal(w[0], w[1]) and dis > 0.05
        assert w.abs().max() < 3 * bound  # a default-init scale, not a blow-up


class _Backbone(torch.nn.Module):  # the embedding is the input itself, so every term can be written out
    def forward(self, x):
        return x


class _Net(torch.nn.Module):
    def __init__(self, side):
        super().__init__()
        self.backbone, self.head, self.muc_side = _Backbone(), torch.nn.Linear(2, 6), side

    def forward(self, x):
        return self.head(self.backbone(x))


class _Scenario:
    def group_bounds(self):
        return [(0, 2), (2, 4), (4, 6)]

    def seen_after(self, k):
        return [2, 4, 6][k]


class _Strategy:
    pass


@pytest.mark.parametrize("k_heads", [2, 1])
def test_stage1_loss_mixes_new_class_ce_and_distillation_by_phase(k_heads):
    from baselines.muc import MUCPlugin
    from benchmark.models.base import frozen_copy

    torch.manual_seed(0)
    net = _Net(SideHeads(2, _Scenario().group_bounds(), k=k_heads))
    params = {"K": k_heads, "temperature": 2.0, "side_kd": "previous", "ce_scope": "new"}
    plug = MUCPlugin(net, net.muc_side, _Scenario(), params, torch.device("cpu"), 0, None)
    old = frozen_copy(net)
    with torch.no_grad():
        for prm in net.parameters():
            prm.add_(0.3 * torch.randn_like(prm))  # the current model has moved away from the old one
    plug.old_model, plug.k = old, 2  # phase 2: old classes 0-3 (groups 0 and 1), new classes 4-5
    x, y = torch.tensor([[1.0, -2.0], [0.5, 0.5]]), torch.tensor([4, 5])
    st = _Strategy()
    st.mb_x, st.mb_output = x, net(x)
    st.loss = plug.criterion(st.mb_output, y)
    plug.before_backward(st)

    def sce(z, z_old):  # soft cross-entropy at T = 2, written out
        q = torch.softmax(z_old / 2, 1)
        return -(q * torch.log_softmax(z / 2, 1)).sum(1).mean()

    z, z_old = net.head(x), old.head(x)
    ce = -torch.log_softmax(z[:, 4:6], 1)[[0, 1], [0, 1]].mean()  # over the new classes' logits only
    want = (1 - 2 / 3) * ce + 2 / 3 * sce(z[:, :4], z_old[:, :4])
    if k_heads > 1:  # group 1's K heads of 2 rows each from row K * 2, previous phase only, averaged over K
        w, b, w_old, b_old = net.muc_side.fc.weight, net.muc_side.fc.bias, old.muc_side.fc.weight, old.muc_side.fc.bias
        r = [slice(2 * k_heads + 2 * i, 2 * k_heads + 2 * i + 2) for i in range(k_heads)]
        want = want + 2 / 3 * sum(sce(x @ w[ri].T + b[ri], x @ w_old[ri].T + b_old[ri]) for ri in r) / k_heads
    assert ce.item() > 0.1  # the (1 - a) CE term weighs in the comparison
    assert st.loss.item() == pytest.approx(want.item(), rel=1e-5)
    st.loss.backward()
    g = net.muc_side.fc.weight.grad
    if k_heads > 1:  # gradients reach group 1's side heads only, never the frozen old model
        assert g[2 * k_heads:4 * k_heads].abs().sum() > 0
        assert g[:2 * k_heads].abs().sum() == 0 and g[4 * k_heads:].abs().sum() == 0
    else:
        assert g is None or g.abs().sum() == 0
    assert all(prm.grad is None for prm in old.parameters())


def test_the_auxiliary_datas_fingerprint_is_part_of_the_cell_key():
    """Other auxiliary images train other side classifiers: a cell records their sha256 (noise: the word), so a
    changed auxiliary file or source makes a new cell instead of passing for a finished one."""
    import baselines  # noqa: F401  (registers the methods)
    from benchmark.data import load_arrays
    from benchmark.runner import make_cells

    def cell(aux, K=3):
        (c,) = make_cells(scenarios=["cifar100-mini"], phases=[2], methods=["muc"], seeds=[0], profile="smoke",
                          method_params={"muc": {"aux": aux, "K": K}})
        return c

    auto, noise = cell("auto"), cell("noise")
    assert auto.config["aux_data"] == load_arrays("cifar10-mini", None).sha256
    assert noise.config["aux_data"] == "noise"
    assert auto.key != noise.key
    assert "aux_data" not in cell("auto", K=1).config  # one side head: no stage 3, no auxiliary data read
