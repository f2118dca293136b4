"""RGAL samplers and triplet losses against hand-computed values and their sampling distributions."""
import math

import pytest
import torch
import torch.nn.functional as F

from strategies.rgal.losses import reversed_triplet_loss, sampled_triplet_loss, triplet_loss
from strategies.rgal.samplers import distance_weighted, focal_weighted, positive_pairs, random_weights, sample_triplets


def _unit(angle_deg, n=4):
    """A unit vector in the plane of the first two axes (n dims): distance between angles a, b is 2 sin(|a-b|/2)."""
    v = torch.zeros(n)
    v[0], v[1] = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return v


def _inv_density(d, n):
    return d ** (2 - n) * (1 - d * d / 4) ** (-(n - 3) / 2)


def test_positive_pairs_are_all_ordered_same_label_pairs():
    a, p = positive_pairs(torch.tensor([0, 1, 0, 0]))
    assert sorted(zip(a.tolist(), p.tolist())) == [(0, 2), (0, 3), (2, 0), (2, 3), (3, 0), (3, 2)]


def test_distance_weighted_weights_are_inverse_density_with_clamp_and_cutoff():
    # anchor at 0 deg; negatives at 20 deg (d=0.347 -> clamped to 0.5), 50 deg (d=0.845), 90 deg (d=1.414 >= 1.4)
    emb = torch.stack([_unit(0), _unit(20), _unit(50), _unit(90), _unit(1)])
    labels = torch.tensor([0, 1, 2, 3, 0])
    w = distance_weighted(emb, labels)[0]
    d50 = 2 * math.sin(math.radians(25))
    expected = torch.tensor([0.0, _inv_density(0.5, 4), _inv_density(d50, 4), 0.0, 0.0])
    assert torch.allclose(w, expected / expected.sum(), atol=1e-5)
    assert w.sum().item() == pytest.approx(1.0)


def test_focal_weighted_only_draws_inside_the_window_and_falls_back_to_uniform():
    emb = torch.stack([_unit(0), _unit(20), _unit(50), _unit(80), _unit(2)])
    labels = torch.tensor([0, 1, 2, 3, 0])
    w = focal_weighted(emb, labels)[0]  # d = 0.347 (< 0.5), 0.845 (inside), 1.286 (> 1.0)
    assert w.tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0, 0.0])
    far = torch.stack([_unit(0), _unit(120), _unit(150), _unit(1)])  # every negative beyond both windows
    for fn in (distance_weighted, focal_weighted):
        assert fn(far, torch.tensor([0, 1, 2, 0]))[0].tolist() == pytest.approx([0.0, 0.5, 0.5, 0.0])


def test_random_weights_are_uniform_over_negatives():
    w = random_weights(torch.randn(4, 3), torch.tensor([0, 0, 1, 2]))
    assert w[0].tolist() == pytest.approx([0, 0, 0.5, 0.5])


@pytest.mark.parametrize("sampler,expected", [
    # anchor 0 at 0 deg; negatives at 35 / 55 / 75 deg: d = 0.601, 0.923, 1.218 (n = 4)
    ("distance", [_inv_density(0.601, 4), _inv_density(0.923, 4), _inv_density(1.218, 4)]),
    ("focal", [_inv_density(0.601, 4), _inv_density(0.923, 4), 0.0]),  # 1.218 is outside (0.5, 1.0)
    ("random", [1.0, 1.0, 1.0]),
])
def test_sampled_negatives_follow_each_samplers_distribution(sampler, expected):
    emb = torch.stack([_unit(0), _unit(1), _unit(35), _unit(55), _unit(75)])
    labels = torch.tensor([0, 0, 1, 2, 3])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(1000):
        a, p, n = sample_triplets(emb, labels, sampler, g)
        counts += torch.bincount(n[a == 0], minlength=5)
    freq = counts / counts.sum()
    want = torch.tensor([0.0, 0.0, *expected])
    assert torch.allclose(freq, want / want.sum(), atol=0.03), freq


def test_antipodal_pairs_and_anchors_without_negatives_give_finite_weights():
    """The released code turns a row into NaN when a pair sits at distance 2 (log 0); NaN weights become 0 and a
    row without negatives is all 0, so such an anchor is never sampled."""
    emb = torch.stack([_unit(0), _unit(180), _unit(50), _unit(1)])  # rows 0 and 1 at distance 2
    labels = torch.tensor([0, 1, 2, 0])
    for fn in (distance_weighted, focal_weighted, random_weights):
        w = fn(emb, labels)
        assert torch.isfinite(w).all()
        if fn is not random_weights:
            assert w[0].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0], abs=1e-6)  # 50 deg: the one valid negative
            # row 1 (180 deg): its negatives at 2.0, 1.81 and 2.0 are all beyond both windows -> uniform
            assert w[1].tolist() == pytest.approx([1 / 3, 0.0, 1 / 3, 1 / 3], abs=1e-6)
        same = fn(emb, torch.zeros(4, dtype=torch.long))  # one class: nobody has a negative
        assert torch.equal(same, torch.zeros(4, 4))
    assert sample_triplets(emb, torch.zeros(4, dtype=torch.long), "focal") is None


def test_triplet_loss_default_form_and_paper_form_by_hand():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])  # anchor, positive, negative
    a, p, n = torch.tensor([0]), torch.tensor([1]), torch.tensor([2])
    x = F.normalize(emb, dim=1)
    dap, dan = (x[0] - x[1] + 1e-6).norm().item(), (x[0] - x[2] + 1e-6).norm().item()
    assert triplet_loss(emb, a, p, n).item() == pytest.approx(max(0.0, dap - dan + 0.2), rel=1e-5)
    sq = ((x[0] - x[1]).pow(2).sum() - (x[0] - x[2]).pow(2).sum()).item() + 0.5
    assert triplet_loss(emb, a, p, n, margin=0.5, squared=True).item() == pytest.approx(max(0.0, sq), rel=1e-5)
    # reversed: positive and negative swapped inside the hinge (here the hinge is inactive), not the negation
    rev = reversed_triplet_loss(emb, a, p, n).item()
    assert rev == pytest.approx(max(0.0, dan - dap + 0.2), abs=1e-5) and rev == 0.0


def test_triplets_with_a_zero_embedding_are_left_out_and_their_gradient_stays_bounded():
    # a low-bit student's embedding can be all zero (every activation in the zero bin): F.normalize's gradient there
    # is ~1e12 x the upstream one, which once filled a generator's Adam moments
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.0, 0.0]], requires_grad=True)
    a, p, n = torch.tensor([0, 3, 0]), torch.tensor([1, 1, 3]), torch.tensor([2, 2, 1])
    loss = triplet_loss(emb, a, p, n)
    assert loss.item() == pytest.approx(triplet_loss(emb.detach(), a[:1], p[:1], n[:1]).item())  # the valid one
    loss.backward()
    assert emb.grad.norm() < 10 and torch.equal(emb.grad[3], torch.zeros(2))
    zero = torch.zeros(4, 2, requires_grad=True)  # all degenerate: no triplet, zero loss and gradient
    out = reversed_triplet_loss(zero, a, p, n)
    out.backward()
    assert out.item() == 0.0 and torch.equal(zero.grad, torch.zeros(4, 2))


def test_sampled_triplet_loss_is_zero_without_positives_and_differentiable():
    emb = torch.randn(4, 8, requires_grad=True)
    assert sampled_triplet_loss(emb, torch.tensor([0, 1, 2, 3])).item() == 0.0
    loss = sampled_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), sample_on=torch.randn(4, 5),
                                generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert emb.grad is not None
