"""The exemplar and side-classifier baselines on hand-computed values: UCIR's cosine classifier, less-forget and
margin-ranking terms,
EEIL's per-group distillation, LwM's Grad-CAM maps and attention distillation (and that it trains the network).
Their forgetting against fine-tuning on MNIST is checked in ``test_baselines.py`` (one run for all methods)."""
import math

import pytest
import torch

from baselines.eeil import grouped_distillation
from baselines.ucir import CosineHead, less_forget_loss, margin_ranking_loss


def _params(method: str, **changes) -> dict:
    """A method's declared defaults with ``changes`` (what a cell resolves before a profile or --set)."""
    from benchmark.methods import METHODS

    return {**METHODS.entry(method).extra["defaults"], **changes}


def test_cosine_head_is_sigma_times_cosine_over_active_classes():
    h = CosineHead(2, 3, sigma=2.0)
    h.weight.data = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    x = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(h(x), torch.tensor([[2 * 0.6, 2 * 0.8, 2 * 1.4 / math.sqrt(2)]]), atol=1e-6)
    h.active = 2
    assert h(x).shape == (1, 2)


def test_less_forget_and_margin_ranking_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    f_old = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert less_forget_loss(f, f_old).item() == pytest.approx(((1 - 1 / math.sqrt(2)) + 0.0) / 2, rel=1e-6)
    # 2 old classes (0, 1), 3 new (2, 3, 4); samples 0 and 2 are old-class exemplars, sample 1 is new
    cos = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.7],
                        [0.0, 0.0, 0.9, 0.0, 0.0],
                        [0.3, 0.2, 0.1, 0.6, 0.5]])
    y = torch.tensor([0, 2, 1])
    # sample 0: gt 0.9 vs top-2 new 0.8, 0.7 -> max(0, 0.5 - 0.1) = 0.4, max(0, 0.5 - 0.2) = 0.3
    # sample 2: gt 0.2 vs 0.6, 0.5 -> 0.9, 0.8
    assert margin_ranking_loss(cos, y, n_old=2, k=2, margin=0.5).item() == pytest.approx((0.4 + 0.3 + 0.9 + 0.8) / 4)
    assert margin_ranking_loss(cos, torch.tensor([2, 3, 4]), n_old=2).item() == 0.0  # no old-class sample


def test_eeil_distillation_is_a_soft_cross_entropy_per_old_group():
    z = torch.tensor([[1.0, 0.0, 2.0, 0.0, 5.0]])
    z_old = torch.tensor([[0.0, 2.0, 0.0, 0.0, -3.0]])
    T = 2.0

    def sce(a, b):  # -sum softmax(b / T) log softmax(a / T)
        pa = [math.exp(v / T) for v in a]
        pb = [math.exp(v / T) for v in b]
        return -sum(q / sum(pb) * math.log(p / sum(pa)) for p, q in zip(pa, pb))

    want = sce([1.0, 0.0], [0.0, 2.0]) + sce([2.0, 0.0], [0.0, 0.0])  # groups [0, 2) and [2, 4); class 4 is new
    assert grouped_distillation(z, z_old, [(0, 2), (2, 4)], T).item() == pytest.approx(want, rel=1e-6)


def test_lwm_gradcam_and_attention_distillation_by_hand():
    from baselines.lwm import attention_distillation, gradcam_map

    a = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, 2 channels, 1, 2)
    g = torch.tensor([[[[1.0, 1.0]], [[-1.0, 0.0]]]])  # channel weights: mean 1 and -0.5
    # 1 * [1, 0] - 0.5 * [0, 2] = [1, -1] -> ReLU [1, 0] -> normalised [1, 0]
    assert torch.allclose(gradcam_map(a, g), torch.tensor([[1.0, 0.0]]))
    q_old, q_cur = torch.tensor([[0.6, 0.8], [1.0, 0.0]]), torch.tensor([[0.8, 0.6], [1.0, 0.0]])
    assert attention_distillation(q_old, q_cur).item() == pytest.approx((0.2 + 0.2 + 0.0) / 2)


def _lwm_setup(n_classes: int, n_old: int, beta: float):
    """A LeNet-5 current model (seed 0), an independent frozen previous model (seed 1) and an LwM plugin in a later
    phase with ``n_old`` old classes (gamma 1, T 2)."""
    from baselines.lwm import LwMPlugin
    from benchmark.models import build_model
    from benchmark.models.base import frozen_copy

    torch.manual_seed(0)
    net = build_model("lenet5", n_classes, 1, (0.5,), (0.5,))

    class _Sc:
        def seen_after(self, k):
            return n_old

    plug = LwMPlugin(net, _Sc(), _params("lwm", kd_weight=beta))
    torch.manual_seed(1)
    old = frozen_copy(build_model("lenet5", n_classes, 1, (0.5,), (0.5,)))
    plug.set_old(old)
    plug.n_old = n_old
    return net, plug, old


def _lwm_step(plug, net, x):
    """One ``before_backward`` of ``plug`` on ``net``'s forward of ``x``, from a zero loss; the strategy stand-in."""
    s = type("Strategy", (), {})()
    s.mb_x, s.mb_output = x, net(x)
    s.loss = s.mb_output.sum() * 0.0
    plug.before_backward(s)
    return s


def test_lwm_attention_term_trains_the_current_network():
    """Unlike FACIL's detached hooks, the attention distillation sends gradients into the current model."""
    net, plug, _ = _lwm_setup(4, 2, beta=0.0)
    s = _lwm_step(plug, net, torch.rand(6, 1, 32, 32))
    assert s.loss.item() > 0
    s.loss.backward()
    grads = [p.grad.abs().sum().item() for p in net.backbone.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0


def test_eeil_balanced_finetuning_distils_every_group_against_the_network_after_the_unbalanced_stage(monkeypatch):
    """Official EEIL recomputes all distillation targets with the post-unbalanced network before fine-tuning."""
    import baselines.eeil as eeil
    from benchmark.augment import AugmentSpec
    from benchmark.models import build_model
    from benchmark.training import PhaseRecipe

    torch.manual_seed(0)
    net = build_model("resnet20", 6, 3, (0.5,) * 3, (0.5,) * 3)

    class Scenario:  # phase 0: classes 0-3, phase 1: classes 4-5
        spec = type("S", (), {"augment": AugmentSpec()})()

        @staticmethod
        def group_bounds():
            return [(0, 4), (4, 6)]

    recipe = PhaseRecipe(epochs=1, lr=0.0, optimizer="sgd", batch_size=8)  # lr 0: the network stays as it is
    params = _params("eeil", memory_per_class=2, bft_epochs=1, bft_lr_factor=0.01)
    plugin = eeil.EEILPlugin(net, Scenario(), lambda k: recipe, params, "cpu", 0)
    plugin.k = 1
    x, y = torch.rand(12, 3, 32, 32), torch.arange(6).repeat(2)
    plugin.memory.update(net.backbone, x, y, "cpu")
    plugin.old_model = build_model("resnet20", 6, 3, (0.5,) * 3, (0.5,) * 3).eval()  # a different network
    calls = []
    orig = eeil.grouped_distillation

    def spy(logits, target, groups, T):
        calls.append((target.clone(), list(groups)))
        return orig(logits, target, groups, T)

    monkeypatch.setattr(eeil, "grouped_distillation", spy)
    batches = []
    monkeypatch.setattr(eeil, "augment_batch", lambda xb, spec, gen: batches.append(xb) or xb)
    expected = eeil.frozen_copy(net)  # the network as it is after the unbalanced stage
    plugin.balanced_finetune()
    assert len(calls) == 2 and len(batches) == 2  # 12 exemplars, batch 8: two steps
    with torch.no_grad():
        for (target, groups), xb in zip(calls, batches):
            assert groups == [(0, 4), (4, 6)]  # every group, the new one too
            assert torch.allclose(target, expected(xb), atol=1e-5)  # not the previous phase's model
            assert not torch.allclose(target, plugin.old_model(xb), atol=1e-3)


def test_lwm_ce_covers_the_current_phase_and_distillation_has_no_t2_by_default():
    import torch.nn.functional as F

    from baselines.lwm import LwMPlugin
    from benchmark.models import build_model

    class _Sc:
        @staticmethod
        def group_bounds():
            return [(0, 2), (2, 4)]

    logits, y = torch.tensor([[3.0, 1.0, 0.5, -0.5], [0.0, 2.0, 1.0, 2.0]]), torch.tensor([2, 3])
    plug = LwMPlugin(build_model("lenet5", 4, 1, (0.5,), (0.5,)), _Sc(), _params("lwm", attention_weight=0.0))
    plug.k = 1
    # CE over classes 2-3 only: sample 0 log-softmax([0.5, -0.5])[0], sample 1 log-softmax([1, 2])[1]
    want = -(math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(-0.5)))
             + math.log(math.exp(2.0) / (math.exp(1.0) + math.exp(2.0)))) / 2
    assert plug.criterion(logits, y).item() == pytest.approx(want, rel=1e-6)
    plug.p = {**plug.p, "ce_scope": "seen"}
    assert plug.criterion(logits, y).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    plug.k = 0  # phase 0 (logits sliced to its classes 0-1): all of its classes either way
    plug.p = {**plug.p, "ce_scope": "new"}
    assert plug.criterion(logits[:, :2], torch.tensor([0, 1])).item() == pytest.approx(
        F.cross_entropy(logits[:, :2], torch.tensor([0, 1])).item(), rel=1e-6)

    torch.manual_seed(0)
    net, old = build_model("lenet5", 4, 1, (0.5,), (0.5,)), build_model("lenet5", 4, 1, (0.5,), (0.5,)).eval()
    kd = {}
    for t2 in (False, True):
        plug = LwMPlugin(net, _Sc(), _params("lwm", attention_weight=0.0, kd_t2=t2))
        plug.set_old(old)
        plug.n_old = 2
        s = _lwm_step(plug, net, torch.rand(3, 1, 32, 32))
        with torch.no_grad():
            o = old(s.mb_x)[:, :2]
        want = F.kl_div(F.log_softmax(s.mb_output[:, :2] / 2, 1), F.softmax(o / 2, 1), reduction="batchmean")
        kd[t2] = (s.loss.item(), want.item())
    assert kd[False][0] == pytest.approx(kd[False][1], rel=1e-5) and kd[False][1] > 0
    assert kd[True][0] == pytest.approx(4 * kd[True][1], rel=1e-5)


def _ucir_plugin(adapt=True):
    from baselines.ucir import UCIRPlugin
    from benchmark.models import build_model

    torch.manual_seed(0)
    net = build_model("lenet5", 5, 1, (0.5,), (0.5,))
    net.head = CosineHead(net.embed_dim, 5)

    class _Sc:  # phase 0: classes 0-1, phase 1: classes 2-4
        @staticmethod
        def group_bounds():
            return [(0, 2), (2, 5)]

    params = _params("ucir", memory_per_class=2, adapt_lambda=adapt)
    plug = UCIRPlugin(net, _Sc(), params, "cpu", 0)
    return net, plug


@pytest.mark.parametrize("adapt", [True, False])
def test_ucir_step_adds_adaptive_less_forget_and_margin_ranking(adapt):
    """Phase 1 of 2 old + 3 new classes: loss += 5 * sqrt(2 / 3) * L_lf + L_mr (adapt_lambda) or 5 * L_lf + L_mr."""
    net, plug = _ucir_plugin(adapt)
    old = _perturbed_copy(net)
    plug.old_model, plug.n_old = old, 2
    net.head.active = 5
    x, y = torch.rand(6, 1, 32, 32), torch.tensor([0, 1, 2, 3, 4, 0])
    s = type("Strategy", (), {})()
    s.mb_x, s.mb_y = x, y
    s.mb_output = net(x)  # the strategy's forward: the plugin reads its pooled features
    s.loss = torch.zeros(())
    plug.before_backward(s)
    f = net.backbone(x)
    lf = (1 - torch.nn.functional.cosine_similarity(f, old.backbone(x), dim=1)).mean()
    mr = margin_ranking_loss(net.head.cosine(f), y, 2, 2, 0.5)
    lam = 5.0 * (math.sqrt(2 / 3) if adapt else 1.0)
    assert lf.item() > 0 and mr.item() > 0
    assert s.loss.item() == pytest.approx((lam * lf + mr).item(), rel=1e-5)


def _perturbed_copy(net):
    from benchmark.models.base import frozen_copy

    other = frozen_copy(net)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))  # an "old" network that differs from the current one
    return other


def test_ucir_imprints_new_rows_at_the_old_rows_mean_norm_and_keeps_old_rows_frozen(monkeypatch):
    """Phase start: new row c = normalised mean of normalised features of class c, times the mean norm of the old
    rows; the old rows are restored after every optimiser step."""
    import baselines.ucir as ucir

    net, plug = _ucir_plugin()
    plug.old_model, plug.n_old = _perturbed_copy(net), 2
    with torch.no_grad():
        net.head.weight[:2] = torch.randn(2, net.embed_dim) * 3
    x, y = torch.rand(9, 1, 32, 32), torch.tensor([2, 3, 4] * 3)
    monkeypatch.setattr(ucir, "materialize", lambda ds: (x, y))
    s = type("Strategy", (), {})()
    s.clock = type("Clock", (), {"train_exp_counter": 1})()
    s.experience = type("Exp", (), {"dataset": None})()
    old_rows = net.head.weight[:2].detach().clone()
    plug.before_training_exp(s)
    net.eval()
    with torch.no_grad():
        f = torch.nn.functional.normalize(net.backbone(x), dim=1)
    norm = old_rows.norm(dim=1).mean()
    for c in (2, 3, 4):
        want = torch.nn.functional.normalize(f[y == c].mean(0), dim=0) * norm
        assert torch.allclose(net.head.weight[c], want, atol=1e-5)
    imprinted = net.head.weight[2:].detach().clone()
    with torch.no_grad():
        net.head.weight.add_(1.0)  # an optimiser step moves every row
    plug.after_update(s)
    assert torch.equal(net.head.weight[:2], old_rows)  # the old rows are restored
    assert torch.allclose(net.head.weight[2:], imprinted + 1.0)  # the new rows keep the step


def test_eeil_step_distils_only_the_old_groups_of_the_previous_model():
    """EEIL's before_backward in phase 2 (groups [0,2), [2,4), new [4,6)): loss += lamb * distillation over the two
    old groups against the previous model's logits; the new group is not distilled."""
    from baselines.eeil import EEILPlugin
    from benchmark.models import build_model

    torch.manual_seed(0)
    net = build_model("lenet5", 6, 1, (0.5,), (0.5,))

    class _Sc:
        @staticmethod
        def group_bounds():
            return [(0, 2), (2, 4), (4, 6)]

    plug = EEILPlugin(net, _Sc(), None, _params("eeil", memory_per_class=2, kd_weight=0.7,
                                                                bft_epochs=0), "cpu", 0)
    plug.old_model = _perturbed_copy(net)
    s = type("Strategy", (), {})()
    s.clock = type("Clock", (), {"train_exp_counter": 2})()
    plug.before_training_exp(s)
    x = torch.rand(5, 1, 32, 32)
    s.mb_x, s.mb_output, s.loss = x, net(x), torch.zeros(())
    plug.before_backward(s)
    old = plug.old_model(x)
    want = 0.7 * grouped_distillation(s.mb_output, old, [(0, 2), (2, 4)], 2.0)
    wrong = 0.7 * grouped_distillation(s.mb_output, old, [(0, 2), (2, 4), (4, 6)], 2.0)
    assert s.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert abs(want.item() - wrong.item()) > 1e-3


def test_lwm_grad_cam_uses_the_previous_models_top_old_class_for_both_maps():
    """Both Grad-CAM maps are taken for c = argmax of the previous model's logits over the old classes, recomputed
    here with plain hooks; with the current model's own top class the loss would differ."""
    import torch.nn.functional as F

    from baselines.lwm import attention_distillation, gradcam_map

    net, plug, old = _lwm_setup(6, 4, beta=0.5)
    x = torch.rand(8, 1, 32, 32)
    s = _lwm_step(plug, net, x)

    def cam(model, cls):
        acts = []
        h = model.backbone.gradcam_layer().register_forward_hook(lambda m, i, o: acts.append(o))
        with torch.enable_grad():
            out = model(x)
        h.remove()
        g, = torch.autograd.grad(out.gather(1, cls).sum(), acts[0])
        return gradcam_map(acts[0].detach(), g), out

    with torch.enable_grad():
        _, old_out = cam(old, torch.zeros(8, 1, dtype=torch.long))
    c_old = old_out[:, :4].argmax(1, keepdim=True)
    q_old, _ = cam(old, c_old)
    q_cur, cur_out = cam(net, c_old)
    kd = F.kl_div(F.log_softmax(cur_out[:, :4] / 2, 1), F.softmax(old_out[:, :4].detach() / 2, 1),
                  reduction="batchmean")
    assert s.loss.item() == pytest.approx((0.5 * kd + attention_distillation(q_old, q_cur)).item(), rel=1e-4)
    c_cur = cur_out[:, :4].argmax(1, keepdim=True)
    assert not torch.equal(c_cur, c_old)  # the case distinguishes the two choices
    q_old2, _ = cam(old, c_cur)
    q_cur2, _ = cam(net, c_cur)
    other = 0.5 * kd + attention_distillation(q_old2, q_cur2)
    assert abs(other.item() - s.loss.item()) > 1e-4
