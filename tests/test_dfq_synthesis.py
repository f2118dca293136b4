"""IntraQ's pixel-space synthesis (``strategies.dfq.intraq_synthesis``) on a random WRN-16-1 teacher with BatchNorm
statistics that are not the identity: the optimised batch matches the teacher's BN statistics far better than the
noise it starts from (under 0.7 of its BN loss after 30 steps), moves each image's class probability towards its soft target, is reproducible from the seed,
and the class centres are per-class means of what was added."""
import pytest
import torch

from strategies.dfq.intraq_synthesis import ClassCentres, synthesize_batch
from strategies.dfq.losses import bns_loss, moment_hooks
from conftest import random_teacher

MEAN, STD = (0.5,) * 3, (0.25,) * 3


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return random_teacher()


def _bns(teacher, x01):
    hooks = moment_hooks(teacher)
    with torch.no_grad():
        teacher(x01)
    loss = float(bns_loss(hooks))
    for h in hooks:
        h.remove()
    return loss


def test_synthesis_matches_bn_statistics_and_soft_targets_reproducibly(teacher):
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    centres = ClassCentres(10, teacher.backbone.embed_dim)

    def run(seed):
        return synthesize_batch(teacher, labels, centres, torch.Generator().manual_seed(seed), MEAN, STD, (3, 32, 32),
                                steps=30, lr=0.2)

    x = run(0)
    noise = torch.randn((8, 3, 32, 32), generator=torch.Generator().manual_seed(0)) * 0.25 + 0.5  # its start
    assert x.shape == (8, 3, 32, 32) and not x.requires_grad
    assert _bns(teacher, x) < 0.7 * _bns(teacher, noise)
    with torch.no_grad():
        p_end = teacher(x).softmax(1).gather(1, labels.view(-1, 1)).mean()
        p_start = teacher(noise).softmax(1).gather(1, labels.view(-1, 1)).mean()
    assert p_end > 1.3 * p_start  # targets are 1 or U(0.6, 1): the class probability rises towards them
    assert torch.equal(x, run(0))  # the seed fixes the batch


def test_class_centres_are_per_class_means_of_the_added_features():
    c = ClassCentres(3, 2)
    c.add(torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]]), torch.tensor([0, 0, 2]))
    centres, has = c.of(torch.tensor([0, 1, 2]))
    assert torch.equal(centres, torch.tensor([[2.0, 1.0], [0.0, 0.0], [0.0, 5.0]]))
    assert has.tolist() == [1.0, 0.0, 1.0]  # class 1 has no image yet: its constraint is masked out
    restored = ClassCentres(3, 2)
    restored.load_state_dict(c.state_dict())
    assert torch.equal(restored.of(torch.tensor([0]))[0], centres[:1])
