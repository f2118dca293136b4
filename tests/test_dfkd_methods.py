"""Data-free distillation pieces on hand-computed values: CMI's contrastive term and memory bank, DeepInversion's
Jensen-Shannon term, the differentiable resized crop of CMI's local view, and RGAL's generator-side triplet
variants (the paper's reversed hinge against the released unswapped one)."""
import math

import pytest
import torch

from benchmark.augment import random_resized_crop
from strategies.dfkd.cmi import MemoryBank
from strategies.dfkd.losses import contrastive_loss, js_divergence


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_contrastive_loss_by_hand_with_and_without_cached_rows():
    local = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    glob = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    T = 0.5
    sims = [[sum(a * b for a, b in zip(l, g)) / T for g in glob.tolist()] for l in local.tolist()]
    rows = [-math.log(_softmax(s)[i]) for i, s in enumerate(sims)]
    # two current samples + one cached row: mean over the current rows plus the cached row's CE
    assert contrastive_loss(local, glob, 2, T).item() == pytest.approx((rows[0] + rows[1]) / 2 + rows[2], rel=1e-5)
    assert contrastive_loss(local, glob, 3, T).item() == pytest.approx(sum(rows) / 3, rel=1e-5)
    g, lo = glob.clone().requires_grad_(True), local.clone().requires_grad_(True)
    contrastive_loss(lo, g, 3, T).backward()
    assert g.grad is None and lo.grad is not None  # gradients flow through the local view only


def test_js_divergence_by_hand():
    s, t = [2.0, 0.0, -1.0], [0.0, 1.0, 0.0]
    T = 3.0
    p, q = _softmax([v / T for v in s]), _softmax([v / T for v in t])
    m = [(a + b) / 2 for a, b in zip(p, q)]
    clamp = lambda v: min(max(v, 0.01), 0.99)  # noqa: E731
    p, q, m = [clamp(v) for v in p], [clamp(v) for v in q], [clamp(v) for v in m]
    js = 0.5 * sum(mi * math.log(mi / pi) for mi, pi in zip(m, p)) + 0.5 * sum(
        mi * math.log(mi / qi) for mi, qi in zip(m, q))
    assert js_divergence(torch.tensor([s]), torch.tensor([t]), T).item() == pytest.approx(js, rel=1e-5)


def test_random_resized_crop_is_identity_at_full_scale_and_zooms_otherwise():
    x = torch.rand(3, 2, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_resized_crop(x, g, scale=(1.0, 1.0), ratio=(1.0, 1.0)), x, atol=1e-6)
    # a quarter-area crop of a left/right split image shows at most the whole image's range, differentiably
    y = torch.zeros(4, 1, 8, 8, requires_grad=True)
    out = random_resized_crop(y + torch.arange(8.0).view(1, 1, 1, 8), g, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    span = out.amax((1, 2, 3)) - out.amin((1, 2, 3))
    assert (span < 4.5).all() and (span > 2.5).all()  # half the width: about 4 of the 8 column values
    out.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_memory_bank_ring_buffer_and_sampling_without_replacement():
    bank = MemoryBank(5, 1, "cpu")
    g = torch.Generator().manual_seed(0)
    assert bank.sample(3, g).shape == (0, 1)
    bank.add(torch.tensor([[1.0], [2.0], [3.0]]))
    s = bank.sample(10, g)
    assert sorted(s.flatten().tolist()) == [1.0, 2.0, 3.0]  # only the filled part, each row once
    bank.add(torch.tensor([[4.0], [5.0], [6.0]]))  # wraps: 6 overwrites 1
    assert bank.filled == 5 and sorted(bank.data.flatten().tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0] and bank.ptr == 1
    st = bank.state_dict()
    other = MemoryBank(5, 1, "cpu")
    other.load_state_dict(st)
    assert torch.equal(other.data, bank.data) and other.ptr == 1


def _rgal(tmp_path, **params):
    from benchmark.augment import AugmentSpec
    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.models import build_model
    from strategies.dfkd import DFKD_METHODS, DFKDContext
    from strategies.dfkd.rgal import RGAL

    torch.manual_seed(0)
    t = build_model("lenet5", 10, 1, (0.5,), (0.5,)).eval()
    s = build_model("lenet5_half", 10, 1, (0.5,), (0.5,))
    defaults = DFKD_METHODS.entry("rgal").extra["defaults"]
    ctx = DFKDContext(t, s, {**defaults, **params}, dfkd_profile("smoke", "mnist").distill, 10, (1, 32, 32), (0.5,),
                      (0.5,), AugmentSpec(), torch.device("cpu"), torch.Generator().manual_seed(1), tmp_path, "k")
    return RGAL(ctx)


def test_rgal_generator_triplet_is_reversed_in_the_paper_variant_and_plain_in_the_released_one(tmp_path):
    from strategies.rgal.losses import sampled_triplet_loss

    x = torch.rand(16, 1, 32, 32)
    for variant, reverse in (("paper", True), ("released", False)):
        m = _rgal(tmp_path, variant=variant)
        m.gen.manual_seed(5)
        _, parts = m.generator_loss(x)
        t = m.teacher(x)
        s_logits, s_emb = m.student.forward_features(x)
        want = sampled_triplet_loss(s_emb, t.argmax(1), sample_on=t, sampler="focal", reverse=reverse,
                                    generator=torch.Generator().manual_seed(5), sampler_kw={"lower": 0.5, "upper": 1.0})
        assert parts["tri_g"] == pytest.approx(want.item(), rel=1e-5)
        assert m.row_name == ("rgal" if variant == "paper" else "rgal[released]")


def test_rgal_synthesis_adds_the_lowest_loss_iterate_and_student_batches_are_paired(tmp_path):
    m = _rgal(tmp_path, g_steps=3, student_batch=8)
    orig, losses = m.generator_loss, []
    m.generator_loss = lambda *a: (lambda r: (losses.append(float(r[0].detach())), r)[1])(orig(*a))
    info = m.synthesize()
    assert len(m.pool) == 16 and info["loss_g"] == pytest.approx(min(losses))
    idx = m._next_indices()
    _, y = m.pool.tensors()
    assert len(idx) == 8 and torch.equal(y[idx[:4]], y[idx[4:]])  # 4 anchors, then 4 positives of the same labels


def test_rgal_one_hot_targets_are_the_rounds_sorted_random_classes_by_default_and_the_argmax_as_an_option(tmp_path):
    import torch.nn.functional as F

    for mode in ("random", "argmax"):
        m = _rgal(tmp_path / mode, g_steps=2, oh_targets=mode)
        orig, seen = m.generator_loss, []

        def spy(x, targets=None):
            loss, parts = orig(x, targets)
            seen.append((targets, m.teacher(x), parts["oh"]))
            return loss, parts

        m.generator_loss = spy
        m.gen.manual_seed(3)
        n = m.ctx.recipe.synthesis_batch
        m.synthesize()
        assert len(seen) == 2
        if mode == "random":
            g = torch.Generator().manual_seed(3)
            torch.randn(n, int(m.p["nz"]), generator=g)  # z is drawn first, then the targets
            want = torch.randint(10, (n,), generator=g).sort().values
            for targets, t, oh in seen:
                assert torch.equal(targets, want)  # the same sorted targets for every step of the round
                assert oh == pytest.approx(F.cross_entropy(t, want).item(), rel=1e-5)
        else:
            for targets, t, oh in seen:
                assert targets is None and oh == pytest.approx(F.cross_entropy(t, t.argmax(1)).item(), rel=1e-5)


def test_lenet_activation_term_reads_conv3_before_the_fully_connected_layers_as_dafl():
    from benchmark.models import build_model
    from strategies.dfkd.generative import GenerativeMethod

    torch.manual_seed(0)
    t = build_model("lenet5", 10, 1, (0.5,), (0.5,)).eval()
    x = torch.rand(4, 1, 32, 32)
    logits, act = t.forward_activations(x)
    b = t.backbone
    conv3 = b.conv3(b.conv2(b.conv1(b.normalize(x)))).flatten(1)
    assert act.shape == (4, 120) and torch.allclose(act, conv3)
    assert torch.allclose(logits, t(x))
    m = GenerativeMethod.__new__(GenerativeMethod)  # only generator_loss's terms, no generator needed
    m.p, m.teacher, m.device, m.hooks = {"act": 1.0}, t, torch.device("cpu"), []
    _, parts = m.generator_loss(x)
    assert parts["act"] == pytest.approx(-conv3.abs().mean().item(), rel=1e-6)
    w = build_model("wrn16_1", 10, 3, (0.5,) * 3, (0.5,) * 3).eval()  # elsewhere: the pooled embedding
    xw = torch.rand(2, 3, 32, 32)
    assert torch.allclose(w.forward_activations(xw)[1], w.forward_features(xw)[1])


def test_diversity_metrics_by_hand():
    from benchmark.diversity import diversity_metrics

    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    y = torch.tensor([0, 0, 1, 1])
    # mean absolute differences (L1 / 2): d01 0.5, d02 1, d03 4, d12 1.5, d13 3.5, d23 3
    m = diversity_metrics(x, y)
    assert m["global_diversity"] == pytest.approx((0.5 + 1 + 4 + 1.5 + 3.5 + 3) / 6)
    assert m["intra_class_diversity"] == pytest.approx((0.5 + 3) / 2)  # class 0: d01; class 1: d23
    assert m["inter_class_distance"] == pytest.approx((1 + 4 + 1.5 + 3.5) / 4)
    one = diversity_metrics(x[:2], y[:2])
    assert one["inter_class_distance"] is None and one["classes"] == 1


def _dfad_arvi(tmp_path, **params):
    from benchmark.augment import AugmentSpec
    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.models import build_model
    from strategies.dfkd import DFKD_METHODS, DFKDContext

    torch.manual_seed(0)
    t = build_model("lenet5", 10, 1, (0.5,), (0.5,)).eval()
    s = build_model("lenet5_half", 10, 1, (0.5,), (0.5,))
    entry = DFKD_METHODS.entry("dfad+ar+vi")
    ctx = DFKDContext(t, s, {**entry.extra["defaults"], "student_batch": 12, **params},
                      dfkd_profile("smoke", "mnist").distill, 10, (1, 32, 32), (0.5,), (0.5,), AugmentSpec(),
                      torch.device("cpu"), torch.Generator().manual_seed(1), tmp_path, "k")
    return DFKD_METHODS.get("dfad+ar+vi")(ctx)


def test_dfad_arvi_with_every_component_switched_off_is_dfad(tmp_path):
    """The ablation rows of the MNIST table rest on this: with R_l, R_m and VI off, DFAD+AR+VI trains exactly as DFAD
    (same generator, losses, optimiser and random draws), so a difference between the rows is the components'."""
    from benchmark.augment import AugmentSpec
    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.models import build_model
    from strategies.dfkd import DFKD_METHODS, DFKDContext

    prof = dfkd_profile("smoke", "mnist")

    def build(method, **params):
        torch.manual_seed(0)
        t = build_model("lenet5", 10, 1, (0.5,), (0.5,)).eval()
        s = build_model("lenet5_half", 10, 1, (0.5,), (0.5,))
        defaults = prof.params_for(method, DFKD_METHODS.entry(method).extra["defaults"])
        ctx = DFKDContext(t, s, {**defaults, "student_batch": 12, **params}, prof.distill, 10, (1, 32, 32), (0.5,),
                          (0.5,), AugmentSpec(), torch.device("cpu"), torch.Generator().manual_seed(1),
                          tmp_path / method, "k")
        return DFKD_METHODS.get(method)(ctx)

    runs = []
    for m in (build("dfad"), build("dfad+ar+vi", ar_l=0.0, ar_m=0.0, vi=False)):
        torch.manual_seed(3)
        losses = []
        for _ in range(2):
            m.synthesize()
            losses.append(m.student_loss()[0].item())
        runs.append((losses, torch.cat([p.detach().flatten() for p in m.generator.parameters()])))
    (la, ga), (lb, gb) = runs
    assert la == lb and torch.equal(ga, gb)
    fresh = torch.cat([p.detach().flatten() for p in build("dfad").generator.parameters()])
    assert not torch.equal(ga, fresh)  # the generator did train
    # and the default components do change the student's objective on the same draws
    torch.manual_seed(3)
    on = build("dfad+ar+vi")
    on.synthesize()
    assert on.student_loss()[0].item() != la[0]


@pytest.mark.parametrize("vi,mode,criterion", [(True, "replace", "l1"), (True, "add", "l1"), (False, "replace", "l1"),
                                               (True, "replace", "kl")])
def test_dfad_arvi_student_learns_interpolated_images_against_mixed_teacher_logits(tmp_path, vi, mode, criterion):
    """Eq. 4-9: x_v = lam G(z_i) + (1 - lam) G(z_j) against lam T(G(z_i)) + (1 - lam) T(G(z_j)), with the method's
    criterion (DFAD's L1 by default; KL at T as an option) -- recomputed by hand from the same random draws."""
    import torch.nn.functional as F

    from strategies.dfkd.losses import virtual_interpolation

    m = _dfad_arvi(tmp_path, vi=vi, vi_mode=mode, criterion=criterion, temperature=2.0)
    m.gen.manual_seed(7)
    loss, n = m.student_loss()
    m.gen.manual_seed(7)
    with torch.no_grad():
        x = m.generator(torch.randn(12, m.nz, generator=m.gen))
        t = m.teacher(x)
        x_v, t_v, lam = virtual_interpolation(x, t, 1.0, m.gen)
    crit = (lambda s, tt: F.l1_loss(s, tt)) if criterion == "l1" else (
        lambda s, tt: F.kl_div(F.log_softmax(s / 2, 1), F.softmax(tt / 2, 1), reduction="batchmean") * 4)
    want = crit(m.student(x_v if vi else x), t_v if vi else t)
    if mode == "add":
        want = want + crit(m.student(x), t)
    assert n == 12 and loss.item() == pytest.approx(want.item(), rel=1e-5)
    if vi:  # the target really is a mixture: lam strictly inside (0, 1) and different from both endpoints
        assert ((lam > 0) & (lam < 1)).all() and not torch.allclose(t_v, t)


def test_dfad_arvi_generator_loss_weights_r_l_and_r_m_and_maximises_the_l1_gap(tmp_path):
    """L_G = ar_l * R_l + ar_m * R_m - L1(S(x), T(x)) (Eq. 1-3): R_l the teacher's CE against its own argmax, R_m
    minus the mean absolute teacher feature."""
    import torch.nn.functional as F

    m = _dfad_arvi(tmp_path, ar_l=0.3, ar_m=0.7)
    x = torch.rand(6, 1, 32, 32)
    loss, parts = m.generator_loss(x)
    t, f = m.teacher.forward_activations(x)
    assert parts["oh"] == pytest.approx(F.cross_entropy(t, t.argmax(1)).item(), rel=1e-5)
    assert parts["act"] == pytest.approx(-f.abs().mean().item(), rel=1e-5)
    assert parts["adv"] == pytest.approx(-F.l1_loss(m.student(x), t).item(), rel=1e-5)
    assert set(parts) == {"oh", "act", "adv"}
    assert loss.item() == pytest.approx(0.3 * parts["oh"] + 0.7 * parts["act"] + parts["adv"], rel=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_rgal_embedding_loss_paper_form_by_hand(tmp_path, reduction):
    """L_emb = ||e_T - Fc(e_S)||^2 with a trainable linear Fc: batch mean of the squared norm ("sum") or of its
    per-dimension mean ("mean", the default), times emb_weight."""
    m = _rgal(tmp_path, emb_reduction=reduction, emb_weight=2.0)
    lin = m.proj = torch.nn.Linear(2, 3)  # small dimensions to compute by hand
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        lin.bias.zero_()
    s_emb = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t_emb = torch.tensor([[1.0, 3.0, 4.0], [1.0, -2.0, 0.0]])
    # Fc(s) = [[1, 4, 3], [0, -2, -1]]; squared gaps [[0, 1, 1], [1, 0, 1]]: per-sample sums 2 and 2
    want = 2.0 * (2.0 if reduction == "sum" else 4.0 / 6.0)
    assert m.embedding_loss(None, s_emb, t_emb).item() == pytest.approx(want)


def test_rgal_embedding_loss_released_form_is_scaled_by_emb_weight(tmp_path):
    """The released CDLoss (0.1 x MSE of pooled blocks through linear maps) scales with emb_weight as the paper
    form does."""
    x = torch.rand(4, 1, 32, 32)
    vals = []
    for w in (1.0, 2.5):
        m = _rgal(tmp_path / str(w), emb="released", emb_weight=w)
        with torch.no_grad():
            s_emb, s_blocks = m.student.backbone(x, return_blocks=True)
            t_emb, t_blocks = m.teacher.backbone(x, return_blocks=True)
            vals.append(m.embedding_loss(x, s_emb, t_emb, s_blocks, t_blocks).item())
    assert vals[0] > 0 and vals[1] == pytest.approx(2.5 * vals[0], rel=1e-5)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_generator_step_runs_the_student_in_the_chosen_mode_and_never_trains_it(tmp_path, mode):
    """``g_student_mode``: eval (CMI acbbea6, the default) leaves a BatchNorm student's running statistics alone
    during the generator step; train (DFAD's official DFAD_cifar.py) lets the generated batches update them.  Either
    way the student's weights get no update and its mode is restored."""
    from benchmark.augment import AugmentSpec
    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.models import build_model
    from strategies.dfkd import DFKD_METHODS, DFKDContext

    prof = dfkd_profile("smoke", "cifar10")
    torch.manual_seed(0)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    t = build_model("wrn16_1", 10, 3, mean, std).eval()
    s = build_model("wrn16_1", 10, 3, mean, std).train()
    params = {**prof.params_for("dfad", DFKD_METHODS.entry("dfad").extra["defaults"]), "student_batch": 8,
              "g_student_mode": mode}
    ctx = DFKDContext(t, s, params, prof.distill, 10, (3, 32, 32), mean, std, AugmentSpec(), torch.device("cpu"),
                      torch.Generator().manual_seed(1), tmp_path, "k")
    m = DFKD_METHODS.get("dfad")(ctx)
    bn = [b for b in s.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    stats = [b.running_mean.clone() for b in bn]
    weights = [p.detach().clone() for p in s.parameters()]
    g0 = [p.detach().clone() for p in m.generator.parameters()]
    m.synthesize()
    moved = [not torch.equal(b.running_mean, st) for b, st in zip(bn, stats)]
    assert all(moved) if mode == "train" else not any(moved)
    assert all(torch.equal(p, w) for p, w in zip(s.parameters(), weights)) and s.training
    assert any(not torch.equal(p, q) for p, q in zip(m.generator.parameters(), g0))  # the generator did train


def test_rgal_released_probe_is_one_uniform_image_in_the_normalised_space_through_the_train_mode_student(tmp_path):
    """R10: as the released main.py:260-262, the CD-layer probe is one ``rand`` image of the networks' (normalised)
    input space through the train-mode student, which moves its BN running statistics exactly once: the suite draws
    it from the method's generator and maps it back through mean / std, its networks normalising inside."""
    import copy

    from conftest import dfkd_context
    from strategies.dfkd import DFKD_METHODS

    ctx = dfkd_context("rgal", tmp_path / "pool")
    ctx.params["emb"] = "released"
    reference = copy.deepcopy(ctx.student).train()
    g = torch.Generator().manual_seed(0)  # the context's generator, seeded 0: the probe is its first draw
    r = torch.rand((1, 3, 32, 32), generator=g)
    x = r * 0.25 + 0.5  # mean 0.5, std 0.25
    assert torch.allclose(reference.backbone.normalize(x), r, atol=1e-6)  # the student sees r itself
    first_bn = next(m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = first_bn.running_mean.clone()
    with torch.no_grad():
        reference.backbone(x)
    DFKD_METHODS.get("rgal")(ctx)
    got = {k: v for k, v in ctx.student.state_dict().items() if "running_" in k}
    want = {k: v for k, v in reference.state_dict().items() if "running_" in k}
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not torch.equal(first_bn.running_mean, before)  # moved once: momentum 0.1 toward the batch mean
