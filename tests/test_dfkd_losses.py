"""Data-free distillation loss terms against hand-computed values, the Beta sampler's moments and the generators'
output shapes and ranges."""
import math

import pytest
import torch

from benchmark.models.generators import CMIGenerator, DFADGenerator, reset_generator
from strategies.dfkd.losses import (activation_loss, balance_loss, beta_sample, bn_hooks, bn_loss, kd_loss,
                                    l1_logits, masked_adversarial_loss, one_hot_loss, tv_loss, virtual_interpolation)


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_kd_loss_is_kl_teacher_student_times_t_squared():
    s, t = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    for T in (1.0, 4.0):
        expected = _kl(_softmax([0.0, 2.0 / T, 0.0]), _softmax([1.0 / T, 0.0, 0.0])) * T * T
        assert kd_loss(s, t, T).item() == pytest.approx(expected, rel=1e-5)


def test_adversarial_loss_counts_only_agreeing_samples_over_the_whole_batch():
    s = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # sample 0 agrees (class 0), sample 1 does not
    expected = -_kl(_softmax([1.0, 0.0]), _softmax([2.0, 0.0])) / 2
    assert masked_adversarial_loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_bn_loss_sums_unsquared_norms_of_mean_and_biased_variance_gaps():
    bn = torch.nn.BatchNorm2d(2).eval()
    bn.running_mean.copy_(torch.tensor([0.0, 1.0]))
    bn.running_var.copy_(torch.tensor([1.0, 1.0]))
    net = torch.nn.Sequential(bn)
    hooks = bn_hooks(net)
    x = torch.zeros(2, 2, 1, 2)
    x[:, 0] = torch.tensor([[[1.0, 3.0]], [[1.0, 3.0]]])  # channel 0: mean 2, biased var 1
    x[:, 1] = 1.0  # channel 1: mean 1, var 0
    net(x)
    # mean gap (2, 0) -> 2; var gap (0, 1) -> 1
    assert bn_loss(hooks).item() == pytest.approx(3.0, rel=1e-6)
    with torch.no_grad():  # a student step's teacher forward: no statistics, no stale value
        net(x)
    assert hooks[0].r_feature is None and bn_loss(hooks).item() == 0.0


def test_one_hot_activation_balance_tv_and_l1_by_hand():
    t = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    ce = (-math.log(_softmax([2.0, 0.0])[0]) - math.log(_softmax([0.0, 1.0])[1])) / 2
    assert one_hot_loss(t).item() == pytest.approx(ce, rel=1e-6)
    ce1 = (-math.log(_softmax([2.0, 0.0])[1]) - math.log(_softmax([0.0, 1.0])[1])) / 2
    assert one_hot_loss(t, torch.tensor([1, 1])).item() == pytest.approx(ce1, rel=1e-6)
    assert activation_loss(torch.tensor([[1.0, -3.0]])).item() == pytest.approx(-2.0)
    p = [(a + b) / 2 for a, b in zip(_softmax([2.0, 0.0]), _softmax([0.0, 1.0]))]
    assert balance_loss(t).item() == pytest.approx(sum(v * math.log(v) for v in p), rel=1e-6)
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # right: |0-1|, |2-4| -> 1.5; down: |0-2|, |1-4| -> 2.5; diagonals: |2-1| -> 1, |0-4| -> 4
    assert tv_loss(x).item() == pytest.approx(1.5 + 2.5 + 1.0 + 4.0)
    assert l1_logits(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])).item() == pytest.approx(1.5)


def test_beta_sampler_moments_and_virtual_interpolation_mixes_inputs_and_teacher_logits_alike():
    g = torch.Generator().manual_seed(0)
    for a in (0.5, 1.0, 2.0):
        b = beta_sample(a, 50000, g)
        assert float(b.min()) >= 0.0 and float(b.max()) <= 1.0
        assert b.mean().item() == pytest.approx(0.5, abs=0.01)
        assert b.var().item() == pytest.approx(1 / (4 * (2 * a + 1)), rel=0.05)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    t = torch.arange(4.0).view(4, 1) * torch.tensor([[1.0, -1.0]])
    xv, tv, lam = virtual_interpolation(x, t, 1.0, torch.Generator().manual_seed(3))
    # x and logits are both linear in the sample index: the mixed logits equal the logits of the mixed input
    assert torch.allclose(tv[:, 0], xv[:, 0, 0, 0]) and torch.allclose(tv[:, 1], -xv[:, 0, 0, 0])
    assert ((lam > 0) & (lam < 1)).all()


def test_generators_output_shapes_and_ranges():
    z = torch.randn(5, 32)
    g = CMIGenerator(nz=32, ngf=8, img_size=32, nc=3)
    reset_generator(g)
    with torch.no_grad():
        x = g(z)
    assert x.shape == (5, 3, 32, 32) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert CMIGenerator(nz=32, ngf=8, nc=1, stage_mult=4)(z).shape == (5, 1, 32, 32)
    d = DFADGenerator(nz=32, ngf=8, nc=1, mean=(0.1307,), std=(0.3081,)).train()
    y = d(z)
    # BatchNorm(affine=False) output has batch mean 0 and variance 1 per channel, mapped back by x * std + mean
    n = (y - 0.1307) / 0.3081
    assert y.shape == (5, 1, 32, 32) and abs(n.mean().item()) < 1e-4
    assert n.var(unbiased=False).item() == pytest.approx(1, abs=1e-3)
