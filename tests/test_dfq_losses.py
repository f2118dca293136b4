"""The data-free quantization losses (``strategies.dfq.losses``) against hand-computed values, and GDFQ's
conditional generator: label-conditioned images in the models' [0, 1] input space whose per-channel statistics are
the dataset's (its last layer is a non-affine BatchNorm in the normalised space)."""
import math

import pytest
import torch
from torch import nn

from benchmark.models.generators import GENERATORS
from strategies.dfq.losses import (bns_loss, marginal_distance_loss, moment_hooks, quantized_kd_loss,
                                   soft_inception_loss, soft_targets)


def test_bns_loss_is_the_mse_of_batch_mean_and_biased_variance_averaged_over_layers():
    bn = nn.BatchNorm2d(2).eval()
    bn.running_mean.copy_(torch.tensor([0.0, 1.0]))
    bn.running_var.copy_(torch.tensor([1.0, 1.0]))
    hooks = moment_hooks(nn.Sequential(bn))
    x = torch.tensor([[0.0, -1.0], [2.0, 3.0]]).view(2, 2, 1, 1)  # channel means 1, 1; biased variances 1, 4
    bn(x)
    # mean: ((1 - 0)^2 + (1 - 1)^2) / 2 = 0.5; variance: ((1 - 1)^2 + (4 - 1)^2) / 2 = 4.5
    assert float(bns_loss(hooks)) == pytest.approx(5.0)
    second = nn.BatchNorm2d(2).eval()  # running statistics (0, 1) equal to its input's: no loss, the mean halves
    hooks2 = moment_hooks(nn.Sequential(bn, nn.Identity()))[:1] + moment_hooks(nn.Sequential(second))
    bn(x)
    second(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]).view(2, 2, 1, 1))
    assert float(bns_loss(hooks2)) == pytest.approx(2.5)


def test_quantized_kd_loss_reductions_and_weights():
    torch.manual_seed(0)
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([0, 3, 5, 9])
    ce = float(nn.functional.cross_entropy(s, y))
    assert float(quantized_kd_loss(t, t, y, 20.0, 20.0)) == pytest.approx(float(nn.functional.cross_entropy(t, y)),
                                                                         abs=1e-4)  # KL(t || t) = 0 (x 8000): the CE
    batchmean = float(quantized_kd_loss(s, t, y, 20.0, 1.0)) - ce
    elementwise = float(quantized_kd_loss(s, t, y, 20.0, 1.0, reduction="elementwise")) - ce
    assert elementwise == pytest.approx(batchmean / 10, rel=1e-5)  # PyTorch 1.2's mean over B x C = batch mean / C
    assert float(quantized_kd_loss(s, t, y, 20.0, 20.0)) - ce == pytest.approx(20 * batchmean, rel=1e-5)


def test_soft_targets_are_one_for_half_and_uniform_above_the_floor_for_the_rest():
    t = soft_targets(20000, 0.6, torch.Generator().manual_seed(0))
    ones = t == 1.0
    assert abs(ones.float().mean().item() - 0.5) < 0.02
    rest = t[~ones]
    assert rest.min() >= 0.6 and rest.max() < 1.0 and abs(rest.mean().item() - 0.8) < 0.01


def test_soft_inception_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(class 0) = 0.5 and 0.75
    loss = soft_inception_loss(logits, torch.tensor([0, 0]), torch.tensor([0.6, 1.0]))
    assert float(loss) == pytest.approx(((0.5 - 0.6) ** 2 + (0.75 - 1.0) ** 2) / 2)


def test_marginal_distance_loss_penalises_too_close_and_too_far_only_where_a_centre_exists():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    c = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])  # d = 1 - cos: 0 (too close), 1 (inside), 2 (too far)
    assert float(marginal_distance_loss(f, c, torch.ones(3), 0.02, 1.0)) == pytest.approx((0.02 + 0 + 1) / 3,
                                                                                          rel=1e-5)
    assert float(marginal_distance_loss(f, c, torch.tensor([1, 1, 0]), 0.02, 1.0)) == pytest.approx(0.01, rel=1e-4)
    assert float(marginal_distance_loss(f, c, torch.zeros(3), 0.02, 1.0)) == 0.0  # no class has a centre yet


def test_gdfq_generator_is_label_conditioned_and_matches_the_dataset_statistics():
    torch.manual_seed(0)
    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
    g = GENERATORS["gdfq"](nz=100, ngf=64, img_size=32, nc=3, mean=mean, std=std, n_classes=100)
    z = torch.randn(64, 100)
    x = g(z, torch.arange(64))
    assert x.shape == (64, 3, 32, 32)
    # the last layer standardises each channel over the batch in the normalised space, mapped back with mean / std
    assert torch.allclose(x.mean((0, 2, 3)), torch.tensor(mean), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.tensor(std), atol=1e-3)
    other = g(z, torch.arange(64).flip(0))
    assert not torch.allclose(x, other)  # the same noise with other labels gives other images
    assert [m.eps for m in g.modules() if isinstance(m, nn.BatchNorm2d)][1:3] == [0.8, 0.8]  # the official quirk
