"""RGAL's terms in data-free quantization (``strategies.dfq.rgal_terms``) on a random ResNet-20 teacher and its 8-bit
copy: each side switches off to exactly nothing (Table 13's ablation), the synthesis side reaches the images but
neither the student's parameters nor its activation ranges, and the student side picks its labels as set."""
import types

import pytest
import torch

from benchmark.hparams import default_values, param_specs
from benchmark.quantization import QuantAct, quantize_model, set_range_tracking
from conftest import random_teacher
from strategies.dfq.rgal_terms import RGALQuantParams, RGALQuantTerms
from strategies.rgal.relation import RGALRelationParams, student_relation_loss


def _terms(**over):
    torch.manual_seed(0)
    teacher = random_teacher("resnet20")
    student = quantize_model(teacher, 8, 8, torch.rand(2, 3, 32, 32)).eval()
    student.requires_grad_(True)
    set_range_tracking(student, True)
    with torch.no_grad():  # one update: the released average is then exactly the batch's range (no overshoot)
        student(torch.rand(16, 3, 32, 32))
    p = {**default_values(param_specs(RGALQuantParams, RGALRelationParams)), **over}
    method = types.SimpleNamespace(student=student, p=p, gen=torch.Generator().manual_seed(0))
    return RGALQuantTerms(method), teacher, student


def test_synthesis_side_reaches_images_not_the_student_and_switches_off():
    terms, teacher, student = _terms()
    x = torch.rand(32, 3, 32, 32, requires_grad=True)
    ranges = [a.x_max.clone() for a in student.modules() if isinstance(a, QuantAct)]
    loss, figures = terms.synthesis(x, teacher(x))
    assert set(figures) == {"adv", "ntri"} and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in student.parameters())
    assert all(torch.equal(r, a.x_max) for r, a in zip(ranges, (a for a in student.modules()
                                                                 if isinstance(a, QuantAct))))
    assert all(a.tracking for a in student.modules() if isinstance(a, QuantAct))  # tracking again afterwards

    off, teacher, _ = _terms(rgal_synthesis=False)
    y = torch.rand(32, 3, 32, 32, requires_grad=True)
    loss, figures = off.synthesis(y, teacher(y))
    assert float(loss) == 0.0 and figures == {}


@pytest.mark.parametrize("s_labels", ["teacher", "pool"])
def test_student_side_is_the_relation_loss_with_the_chosen_labels_and_switches_off(s_labels):
    terms, teacher, student = _terms(s_labels=s_labels)
    x = torch.rand(32, 3, 32, 32)
    set_range_tracking(student, False)
    emb = student.backbone(x)
    s_logits, t_logits = student.head(emb), teacher(x)
    stored = torch.arange(32) % 4
    got = terms.student(emb, s_logits, t_logits, stored)
    labels = t_logits.argmax(1) if s_labels == "teacher" else stored
    want = student_relation_loss(terms.p, emb, labels, s_logits, torch.Generator().manual_seed(0))
    assert torch.allclose(got, want)
    off, _, _ = _terms(rgal_student=False)
    assert float(off.student(emb, s_logits, t_logits, stored)) == 0.0


@pytest.mark.parametrize("rgal_warmup", [True, False])
def test_gdfq_rgal_warm_up_uses_the_generator_terms_only_when_asked(rgal_warmup, tiny_data, tmp_path, monkeypatch):
    """``rgal_warmup`` off: the warm-up's generator steps are GDFQ's (no RGAL terms, so the ranges calibrate on GDFQ's
    images); the training epochs use them either way."""
    import strategies.dfq.gdfq as gdfq
    from benchmark.dfq_runner import DFQCellRun, make_dfq_cells

    (cell,) = make_dfq_cells(scenarios=["cifar10"], methods=["gdfq+rgal"], seeds=[0], profile="smoke", bits=[(4, 4)],
                             data_root=tiny_data, method_params={"gdfq+rgal": {"rgal_warmup": rgal_warmup}})
    calls, orig = [], gdfq.ConditionalGeneratorStep.step

    def step(self, n, extra=None):
        calls.append(extra is not None)
        return orig(self, n, extra)

    monkeypatch.setattr(gdfq.ConditionalGeneratorStep, "step", step)
    DFQCellRun(cell, tmp_path, tmp_path / "cache", torch.device("cpu"), tiny_data, progress=False).run()
    q = cell.config["quant"]
    warm = q["warmup_epochs"] * q["ep_steps"]
    assert len(calls) == q["epochs"] * q["ep_steps"]
    assert calls[:warm] == [rgal_warmup] * warm and all(calls[warm:])
    assert ("rgal_warmup" in cell.config["method_params"]) is (not rgal_warmup)  # key-neutral at its default


def test_synthesis_only_variant_has_no_student_side_parameters():
    """``intraq+rgal-g`` (Table 13's L'_g) declares none of L_tri's settings: setting one is a one-line error, and its
    student loss is IntraQ's."""
    from benchmark.dfq_methods import DFQ_METHODS
    from benchmark.errors import BenchError
    from benchmark.hparams import parse_settings

    import run_benchmark
    run_benchmark.load_all_methods()
    params = DFQ_METHODS.entry("intraq+rgal-g").extra["params"]
    assert "rgal_synthesis" in params and "tri_g" in params
    assert not {"rgal_student", "triplet_weight", "triplet_sampler", "s_labels"} & set(params)
    assert {"rgal_student", "triplet_weight"} <= set(DFQ_METHODS.entry("intraq+rgal").extra["params"])
    with pytest.raises(BenchError, match="triplet_weight"):
        parse_settings(["intraq+rgal-g.triplet_weight=0.2"], ["intraq+rgal-g"], DFQ_METHODS)
    from strategies.dfq.intraq import IntraQ, IntraQRGALSynthesis

    assert IntraQRGALSynthesis.student_side is False and IntraQ.student_side is True
    full, teacher, student = _terms()
    terms = RGALQuantTerms(types.SimpleNamespace(student=student, p={k: v for k, v in full.p.items() if k in params},
                                                 gen=full.m.gen), student_side=IntraQRGALSynthesis.student_side)
    x = torch.rand(8, 3, 32, 32)
    emb = student.backbone(x)
    assert float(terms.student(emb, student.head(emb), teacher(x), torch.zeros(8, dtype=torch.long))) == 0.0
