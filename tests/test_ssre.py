"""SSRE: BatchNorm folding and adapter merging preserve the network's function; the prototype-selection losses
match hand-computed values."""
import math

import pytest
import torch

from benchmark.models import build_model
from strategies.pass_plugins import OldModelHolder
from strategies.prototypes import PrototypeBank
from strategies.reparam import adapters, merge_adapters, to_ssre
from strategies.ssre_plugins import PrototypeSelection, SelectionDistillationPlugin, SelectionWeightedCE


def _net_with_random_bn():
    torch.manual_seed(0)
    net = build_model("resnet20", 4 * 10, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return net.eval()


def test_folding_keeps_the_unrotated_logits_and_only_adapters_and_head_train():
    net = _net_with_random_bn()
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)[:, ::4]
        to_ssre(net)
        out = net(x)
    assert out.shape == (5, 10)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all("adapter" in n or n.startswith("head.") for n in trainable)
    assert len(adapters(net)) == 2 * 9  # both 3x3 convolutions of ResNet-20's nine blocks
    assert all(float(a.adapter.weight.detach().abs().sum()) == 0.0 for a in adapters(net))


def test_merged_network_computes_the_same_function_as_before_the_merge():
    net = _net_with_random_bn()
    to_ssre(net)
    for a in adapters(net):  # as after a phase of training (stride-2 blocks included)
        a.adapter.weight.data.normal_(0, 0.1)
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        before = net(x)
        merge_adapters(net)
        after = net(x)
    assert before.abs().max() > 1.0  # the adapters changed the function
    assert torch.allclose(after, before, atol=1e-4, rtol=1e-4)
    assert all(float(a.adapter.weight.detach().abs().sum()) == 0.0 for a in adapters(net))


class _Cap:
    features = None


class _S:
    def __init__(self, x):
        self.mb_x, self.loss = x, torch.tensor(0.0)


def test_selection_weighted_ce_and_distillation_by_hand():
    bank = PrototypeBank()
    bank.means = {0: torch.tensor([2.0, 0.0]), 1: torch.tensor([0.0, 3.0])}
    cap = _Cap()
    cap.features = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    sel = PrototypeSelection(cap, bank)
    s = sel.s()  # max cosine to the prototypes: 1 and 1/sqrt(2)
    assert s.tolist() == pytest.approx([1.0, 1 / math.sqrt(2)])
    logits, y = torch.tensor([[0.1, 0.2, 0.0], [0.0, 0.0, 0.3]]), torch.tensor([2, 2])
    ce = torch.nn.functional.cross_entropy(logits / 0.1, y, reduction="none")
    loss = SelectionWeightedCE(sel, 0.1)(logits, y)
    assert loss.item() == pytest.approx(float((ce * (1 - s)).mean()))  # sample 0 weighs 0
    # distillation: sum_i s_i ||f_i - f_old_i||, old backbone = identity * 0.5
    net = torch.nn.Module()
    net.backbone = torch.nn.Linear(2, 2, bias=False)
    net.backbone.weight.data = 0.5 * torch.eye(2)
    old = OldModelHolder()
    old.update(net)
    st = _S(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    SelectionDistillationPlugin(sel, cap, old, weight=1.0).before_backward(st)
    expected = 1.0 * 0.5 + (1 / math.sqrt(2)) * math.sqrt(0.5)
    assert st.loss.item() == pytest.approx(expected, rel=1e-6)
    # phase 0 (no prototypes): plain CE / T and no distillation
    empty = PrototypeSelection(cap, PrototypeBank())
    assert SelectionWeightedCE(empty, 0.1)(logits, y).item() == pytest.approx(float(ce.mean()))
