"""RGAL's L'_s: paired sampling (every sample once as an anchor, positives of the anchor's label, uniform over the
class) and the triplet-loss plugin on hand-computed values, with PASS's rotated batches."""
import math
from collections import Counter

import pytest
import torch

from strategies.rgal.paired_sampling import PairedBatches, paired_batch_indices
from strategies.rgal.triplet_plugin import TripletLossPlugin


def test_paired_batches_cover_every_sample_once_as_anchor_with_same_label_positives():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 3, 3])
    batches = paired_batch_indices(labels, 6, torch.Generator().manual_seed(0))
    assert len(batches) == PairedBatches().num_batches(len(labels), 6) == 4  # ceil(11 / 3)
    anchors = torch.cat([b[: len(b) // 2] for b in batches])
    assert sorted(anchors.tolist()) == list(range(11))
    for b in batches:
        a, p = b[: len(b) // 2], b[len(b) // 2:]
        assert torch.equal(labels[a], labels[p])
        assert not (a == p).any()  # every class here has more than one sample: never the anchor itself


def test_anchor_fraction_half_gives_a_plain_epochs_worth_of_images_from_a_fresh_random_half():
    labels = torch.arange(20) % 4
    pb = PairedBatches(anchor_fraction=0.5)
    gen = torch.Generator().manual_seed(0)
    batches = pb(labels, 4, gen)  # 2 anchors + 2 positives a batch
    assert len(batches) == pb.num_batches(20, 4) == 5  # 10 anchors
    assert sum(len(b) for b in batches) == 20  # as many images as a plain epoch of 20
    anchors = torch.cat([b[:2] for b in batches])
    assert len(set(anchors.tolist())) == 10
    for b in batches:
        assert torch.equal(labels[b[:2]], labels[b[2:]])
    # a fresh half every epoch: over many epochs each sample is an anchor about half of the time
    hits = Counter()
    for _ in range(400):
        hits.update(torch.cat([b[:2] for b in pb(labels, 4, gen)]).tolist())
    assert set(hits) == set(range(20)) and all(abs(v - 200) < 5 * math.sqrt(400 * 0.25) for v in hits.values())
    # fraction 1 is the released code's epoch, identical draws to the default
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(paired_batch_indices(labels, 4, g1),
                                                 paired_batch_indices(labels, 4, g2, anchor_fraction=1.0)))
    with pytest.raises(ValueError, match="anchor_fraction"):
        PairedBatches(anchor_fraction=0)


def test_positive_is_uniform_over_the_other_samples_of_the_class():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    gen = torch.Generator().manual_seed(1)
    counts = Counter()
    n = 3000
    for _ in range(n):
        b = paired_batch_indices(labels, 12, gen)[0]  # one batch: 6 anchors + 6 positives
        a, p = b[:6], b[6:]
        counts.update(int(pi) for ai, pi in zip(a, p) if int(ai) == 0)
    assert set(counts) == {1, 2, 3}
    for k in (1, 2, 3):  # 1/3 each; binomial std sqrt(n * 2/9) ~ 26
        assert abs(counts[k] - n / 3) < 5 * math.sqrt(n * 2 / 9)


def test_singleton_class_pairs_with_itself_and_image_mode_pairs_each_anchor_with_itself():
    labels = torch.tensor([0, 0, 1])
    b = torch.cat(paired_batch_indices(labels, 6, torch.Generator().manual_seed(0)))
    a, p = b[:3], b[3:]
    assert int(p[a == 2]) == 2
    b = paired_batch_indices(labels, 6, torch.Generator().manual_seed(0), positive="image")[0]
    assert torch.equal(b[:3], b[3:])
    with pytest.raises(ValueError, match="positive"):
        paired_batch_indices(labels, 6, positive="other")


class _Cap:
    features = None


class _S:
    def __init__(self, out, y, phase=1):
        self.mb_output, self.mb_y, self.loss = out, y, torch.tensor(0.0)
        self.experience = type("Exp", (), {"current_experience": phase})()


def test_triplet_plugin_by_hand_on_the_unrotated_images_of_a_rotated_batch():
    # three unrotated images, labels 0, 0, 1; embeddings already unit vectors; logits = embeddings, so the only
    # negative of each anchor is image 2 (the distance-weighted sampler falls back to it even beyond the cut-off)
    f = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    rotated = torch.randn(12, 2) * 5  # the three other rotations of each image: ignored by default
    rotated[::4] = f
    y = torch.tensor([4 * c + k for c in (0, 0, 1) for k in range(4)])
    out = torch.zeros(12, 8)
    out[::4, ::4] = f
    cap = _Cap()
    cap.features = rotated
    plug = TripletLossPlugin(cap, weight=0.1, stride=4, label_scale=4, generator=torch.Generator().manual_seed(0))
    s = _S(out, y)
    plug.before_backward(s)
    # triplets (0, 1, 2): [d01 - d02 + 0.2]_+ = [0.894 - 1.414 + 0.2]_+ = 0; (1, 0, 2): 0.894 - 0.632 + 0.2
    d01, d02, d12 = math.sqrt(0.8), math.sqrt(2.0), math.sqrt(0.4)
    expected = (max(0.0, d01 - d02 + 0.2) + max(0.0, d01 - d12 + 0.2)) / 2
    assert s.loss.item() == pytest.approx(0.1 * expected, abs=1e-5)
    # the paper's squared form with the same margin
    plug = TripletLossPlugin(cap, weight=1.0, stride=4, label_scale=4, squared=True)
    s = _S(out, y)
    plug.before_backward(s)
    assert s.loss.item() == pytest.approx((max(0, 0.8 - 2.0 + 0.2) + max(0, 0.8 - 0.4 + 0.2)) / 2, abs=1e-5)
    # "in incremental training": nothing in phase 0 unless asked for
    s = _S(out, y, phase=0)
    plug.last_loss = None
    plug.before_backward(s)
    assert s.loss.item() == 0.0 and plug.last_loss is None
    plug = TripletLossPlugin(cap, weight=1.0, stride=4, label_scale=4, squared=True, from_phase=0)
    s = _S(out, y, phase=0)
    plug.before_backward(s)
    assert s.loss.item() == pytest.approx((max(0, 0.8 - 2.0 + 0.2) + max(0, 0.8 - 0.4 + 0.2)) / 2, abs=1e-5)


def test_triplet_plugin_without_positives_adds_zero_and_rejects_unknown_options():
    cap = _Cap()
    cap.features = torch.randn(3, 4, requires_grad=True)
    s = _S(torch.randn(3, 5), torch.tensor([0, 1, 2]))
    TripletLossPlugin(cap).before_backward(s)
    assert s.loss.item() == 0.0
    with pytest.raises(ValueError, match="embedding"):
        TripletLossPlugin(cap, embedding="pixels")


def test_rotated_images_as_their_own_classes():
    """Two images of class 0, four rotations each: by default only the unrotated pair is used (no negative: loss
    0); with ``rotated_as_classes`` every rotation k is class 4*0+k, A_k and B_k are positives and the other
    rotations negatives.  Rotation k of both images is the unit vector e_k: d(a, p) = 0, d(a, n) = sqrt(2), so
    every triplet costs [0 - sqrt(2) + margin]_+ whichever negative is drawn."""
    f = torch.eye(4).repeat(2, 1)  # rows A0..A3, B0..B3
    y = torch.arange(4).repeat(2)  # 4 * 0 + k
    cap = _Cap()
    cap.features = f
    for as_classes, expected in ((False, 0.0), (True, 2.0 - math.sqrt(2.0))):
        plug = TripletLossPlugin(cap, weight=0.5, stride=4, label_scale=4, rotated_as_classes=as_classes, margin=2.0,
                                 generator=torch.Generator().manual_seed(0))
        s = _S(torch.randn(8, 8), y)
        plug.before_backward(s)
        assert s.loss.item() == pytest.approx(0.5 * expected, abs=1e-4)


def test_prototypes_join_as_negatives_only_when_asked():
    """A batch of one class has no negative (loss 0); with ``prototypes_as_negatives`` the stored prototype of an
    old class (here class 5 at (0, 1)) is every anchor's negative, the by-hand value of the rotated-batch test."""
    from strategies.prototypes import PrototypeBank

    bank = PrototypeBank()
    bank.update(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([5, 5]))
    cap = _Cap()
    cap.features = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    d01, d02, d12 = math.sqrt(0.8), math.sqrt(2.0), math.sqrt(0.4)
    by_hand = (max(0.0, d01 - d02 + 0.2) + max(0.0, d01 - d12 + 0.2)) / 2  # anchors 0 and 1, the prototype as negative
    for as_negatives, expected in ((False, 0.0), (True, by_hand)):
        plug = TripletLossPlugin(cap, weight=1.0, head=lambda e: e, bank=bank, prototypes_as_negatives=as_negatives)
        s = _S(cap.features.clone(), torch.tensor([0, 0]))  # logits = embeddings (head is the identity)
        plug.before_backward(s)
        assert s.loss.item() == pytest.approx(expected, abs=1e-5)
