"""Exemplar memory of the specification-5 baselines: herding order by hand, fixed-budget shrinking keeps a prefix of each
class's herding order (as the official iCaRL / LUCIR code truncates), NME means with flips."""
import torch

from baselines.exemplars import ExemplarMemory, herding_order, nme_class_means


def test_herding_order_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    # mean (0.6, 0.6): first pick c or d (distance 0.04, tie -> lower index c), then d (running mean (0.7, 0.7)),
    # then a and b tie at 0.0578 (a first), then b
    assert herding_order(f).tolist() == [2, 3, 0, 1]
    assert herding_order(3 * f, 2).tolist() == [2, 3]  # features are normalised first


class _Flat(torch.nn.Module):
    """A 'backbone' whose feature is the image's mean left-half and right-half intensity."""

    def forward(self, x):
        x = x.float()
        return torch.stack([x[..., :2].mean((1, 2, 3)), x[..., 2:].mean((1, 2, 3))], 1)


def test_fixed_budget_shrinks_to_a_prefix_and_nme_means_use_flips():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.tensor([0] * 3 + [1] * 3 + [2] * 3 + [3] * 3)
    mem = ExemplarMemory(memory_total=4)
    net = _Flat()
    mem.update(net, x[:6], y[:6], "cpu")
    first = {c: v.clone() for c, v in mem.x.items()}
    assert {c: len(v) for c, v in mem.x.items()} == {0: 2, 1: 2}
    mem.update(net, x[6:], y[6:], "cpu")
    assert {c: len(v) for c, v in mem.x.items()} == {0: 1, 1: 1, 2: 1, 3: 1} and len(mem) == 4
    assert torch.equal(mem.x[0], first[0][:1]) and torch.equal(mem.x[1], first[1][:1])
    xs, ys = mem.tensors()
    assert ys.tolist() == [0, 1, 2, 3]
    means = nme_class_means(net, mem, "cpu")
    # a flip swaps the halves, so each class mean is the normalised sum of a feature and its swap: along (1, 1)
    assert torch.allclose(means, torch.full((4, 2), 2 ** -0.5), atol=1e-6)
    other = ExemplarMemory(memory_total=4)
    other.load_state_dict(mem.state_dict())
    assert all(torch.equal(other.x[c], mem.x[c]) for c in mem.x)
