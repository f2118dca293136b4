"""What the fidelity harnesses rest on and what they found, pinned on small hand-checkable inputs (CI has no copy of
the official code): the comparison utilities on worked examples; pool images quantised as the released
``save_image_batch`` writes them (floor); WRN block features before the final BN-ReLU; RGAL's generator-side triplet
on that raw block and its student-side triplet on the teacher's argmax of the augmented batch."""
import pytest
import torch
import torch.nn.functional as F

import strategies.dfkd  # noqa: F401
import strategies.rgal.relation as relation_module
from benchmark.models import build_model
from benchmarks.fidelity.common import (Row, compare_terms, step_change_rel_diff, table, tensor_rel_diff, verdict,
                                        worst)
from conftest import dfkd_context
from strategies.dfkd import DFKD_METHODS
from strategies.dfkd.pool import to_uint8
from strategies.rgal.losses import sampled_triplet_loss


def test_comparisons_on_worked_examples():
    terms = compare_terms({"ce": 2.0, "kd": 1.0, "only_official": 3.0}, {"ce": 2.0, "kd": 1.001})
    assert terms["ce"]["rel"] == 0.0 and terms["kd"]["abs"] == pytest.approx(0.001)
    assert terms["kd"]["rel"] == pytest.approx(0.001 / 1.001)
    assert terms["only_official"]["rel"] == 1.0 and worst(terms) == ("only_official", 1.0)
    assert tensor_rel_diff(torch.tensor([1.0, -4.0]), torch.tensor([1.0, -3.0])) == pytest.approx(0.25)
    assert tensor_rel_diff(torch.zeros(2), torch.zeros(3)) == 1.0
    # an update whose only disagreement is an element that barely moves (a round-off sign flip of Adam's first step)
    before = {"w": torch.zeros(3)}
    a, b = {"w": torch.tensor([1e-3, -1e-3, 1e-7])}, {"w": torch.tensor([1e-3, -1e-3, -1e-7])}
    assert step_change_rel_diff(before, a, b)["w"] == 0.0
    b2 = {"w": torch.tensor([1e-3, -0.5e-3, 0.0])}
    assert step_change_rel_diff(before, a, b2)["w"] == pytest.approx(0.5)
    assert verdict(1e-6, 1e-5) == "identical" and verdict(1e-3, 1e-5) == "differs"
    assert verdict(1e-3, 1e-5, "generator in train mode") == "departs on purpose"
    with pytest.raises(ValueError):
        Row("x", 1, "o/r", "c", "loss", 0.0, 1e-5, "same")
    row = Row("pass", 1, "o/r", "0123456789", "loss terms", 2e-7, 1e-5, "identical").__dict__
    assert "| pass | 1 | o/r (0123456) | loss terms | 2.0e-07 | 1e-05 | identical |" in table([row])


def test_pool_images_are_quantised_by_truncation_as_the_released_pngs():
    x = torch.tensor([0.0, 0.999, 0.5, 1.0, 1.2, -0.1, 3.9 / 255])
    assert to_uint8(x).tolist() == [0, 254, 127, 255, 255, 0, 3]
    assert to_uint8(x, "round").tolist() == [0, 255, 128, 255, 255, 0, 4]


def test_wrn_blocks_end_before_the_final_bn_relu_which_the_embedding_applies():
    m = build_model("wrn16_1", 10, 3, (0.5,) * 3, (0.25,) * 3).eval()
    x = torch.rand(3, 3, 32, 32)
    emb, blocks = m.backbone(x, return_blocks=True)
    raw = m.backbone.stages[2](m.backbone.stages[1](m.backbone.stages[0](m.backbone.conv1(m.backbone.normalize(x)))))
    assert torch.equal(blocks[-1], raw) and (blocks[-1] < 0).any()  # pre-activation: negative values survive
    assert torch.allclose(emb, torch.relu(m.backbone.bn(raw)).mean((2, 3)), atol=1e-6)


def _rgal(tmp_path, **params):
    ctx = dfkd_context("rgal", tmp_path)
    ctx.params.update(params)
    return DFKD_METHODS.get("rgal")(ctx)


def test_rgal_generator_triplet_is_taken_on_the_raw_last_block_pooled(tmp_path):
    method = _rgal(tmp_path, tri_g=1.0, variant="released")
    with torch.no_grad():  # a teacher whose argmax spreads over classes, so that the batch has negatives
        method.teacher.head.weight.normal_(0, 3)
    x = torch.rand(12, 3, 32, 32) * torch.linspace(0.2, 1.0, 12).view(-1, 1, 1, 1)
    g0 = method.gen.get_state()
    _, parts = method.generator_loss(x)
    t = method.teacher(x)
    assert len(t.argmax(1).unique()) > 1
    with torch.no_grad():
        _, blocks = method.student.backbone(x, return_blocks=True)
    feat = F.adaptive_avg_pool2d(blocks[-1], 1).flatten(1)
    kw = dict(sample_on=t, sampler="focal", sampler_kw={"lower": 0.5, "upper": 1.0}, margin=0.2)
    expected = sampled_triplet_loss(feat, t.argmax(1), generator=torch.Generator().set_state(g0), **kw)
    assert parts["tri_g"] == pytest.approx(expected.item(), rel=1e-5)
    emb = method.student.backbone(x)
    on_emb = sampled_triplet_loss(emb, t.argmax(1), generator=torch.Generator().set_state(g0), **kw)
    assert expected.item() > 0 and abs(on_emb.item() - expected.item()) > 1e-3  # the two features give different hinges here
    method.p["g_feature"] = "embedding"
    method.gen.set_state(g0)
    assert method.generator_loss(x)[1]["tri_g"] == pytest.approx(on_emb.item(), rel=1e-5)


@pytest.mark.parametrize("s_labels", ["teacher", "pool"])
def test_rgal_student_triplet_labels(tmp_path, monkeypatch, s_labels):
    """``teacher``: the teacher's argmax of the augmented batch (released ``main.py``); ``pool``: the labels stored
    at synthesis."""
    method = _rgal(tmp_path, s_labels=s_labels)
    x01 = torch.rand(16, 3, 32, 32)
    stored = torch.arange(16) % 4  # labels the teacher would not give: the two choices are told apart
    method.pool.add(x01, stored)
    seen = {}
    monkeypatch.setattr(relation_module, "sampled_triplet_loss",
                        lambda emb, labels, **kw: seen.setdefault("labels", labels.clone()) * 0.0 + emb.sum() * 0)
    logits = []
    h = method.teacher.head.register_forward_hook(lambda m, i, o: logits.append(o.detach()))
    idx = method._next_indices()
    method._batches.append(idx)  # student_loss draws the same batch again
    method.student_loss()
    h.remove()
    expected = logits[-1].argmax(1) if s_labels == "teacher" else stored[idx]
    assert torch.equal(seen["labels"], expected)


def test_deepinversion_trains_the_student_on_the_official_scripts_batch():
    """Official scripts/deepinv/deepinv_cifar10_wrn402_wrn161.sh: the student steps on batches of --batch_size 256;
    the paper profile's CIFAR cells get 256, the smaller profiles keep their own batch for every method (cpu CIFAR
    128)."""
    import strategies.dfkd  # noqa: F401
    from benchmark.dfkd_profiles import dfkd_profile
    from strategies.dfkd import DFKD_METHODS

    defaults = DFKD_METHODS.entry("deepinversion").extra["defaults"]
    for ds in ("cifar10", "cifar100"):
        assert dfkd_profile("paper", ds).params_for("deepinversion", defaults)["student_batch"] == 256
    assert dfkd_profile("cpu", "cifar10").params_for("deepinversion", defaults)["student_batch"] == 128
    assert dfkd_profile("smoke", "cifar10").params_for("deepinversion", defaults)["student_batch"] == 16
