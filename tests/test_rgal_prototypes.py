"""RGAL's prototype optimisation (L'_g): it raises the old/current disagreement, moves only the samples, and runs
inside PASS on a real scenario."""
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import cli
from strategies.rgal.prototype_optimization import optimize_prototypes


def test_optimization_moves_samples_towards_disagreement_without_touching_models():
    torch.manual_seed(0)
    head_old, head_cur = torch.nn.Linear(8, 3), torch.nn.Linear(8, 5)
    p = torch.randn(12, 8)
    c = torch.randint(0, 3, (12,))

    def l_adv(x):
        return F.kl_div(F.log_softmax(head_cur(x)[:, :3], 1), F.softmax(head_old(x), 1), reduction="batchmean")

    new = optimize_prototypes(p, c, head_old, head_cur, steps=50, lr=0.05, w_ntri=0.0, w_oh=0.0,
                              generator=torch.Generator().manual_seed(0))
    assert (new - p).norm() > 0 and l_adv(new) > l_adv(p)
    assert all(q.grad is None for q in [*head_old.parameters(), *head_cur.parameters()])
    # with the one-hot term alone the samples become more confidently their class under the old head
    new_oh = optimize_prototypes(p, c, head_old, head_cur, steps=50, lr=0.05, w_adv=0.0, w_ntri=0.0)
    assert F.cross_entropy(head_old(new_oh), c) < F.cross_entropy(head_old(p), c)


@pytest.mark.parametrize("schedule", ["step", "epoch"])
def test_pass_with_prototype_optimization_reports_movement(tmp_path, schedule):
    # the embedded scenario (1 000 images a phase) and the small LeNet: about 12 s instead of 55 s on MNIST
    p = cli("--scenario", "cifar100-mini", "--phases", "1", "--model", "lenet5_half", "--profile", "smoke",
            "--methods", "pass+rgal-g", "--no-progress", "--out", str(tmp_path / "run"),
            "--set", f"rgal_schedule={schedule}")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(next((tmp_path / "run").rglob("result.json")).read_text())
    # recorded in the cell only when it differs from the default (key-neutral parameter)
    assert r["cell"]["method_params"].get("rgal_schedule", "step") == schedule
    assert ("rgal_schedule" in r["cell"]["method_params"]) == (schedule != "step")
    mv = r["extra"]["prototype_movement_per_phase"]
    assert len(mv) == 1 and 0 < mv[0] < 10  # phase 1 only; samples move, by less than 10 radii
    assert r["rows"]["pass+rgal-g"]["published_name"] == "PASS+RGAL L'_g only"


class _Exp:
    def __init__(self, k):
        self.current_experience = k


class _Strategy:
    def __init__(self, k=1):
        self.experience, self.device = _Exp(k), torch.device("cpu")


def _pool_plugin(schedule, seed=0, **kw):
    from strategies.pass_plugins import OldModelHolder
    from strategies.prototypes import PrototypeBank
    from strategies.rgal.prototype_optimization import PrototypeOptimizationPlugin

    torch.manual_seed(0)
    bank = PrototypeBank()
    labels = torch.arange(4).repeat_interleave(10)
    bank.update(torch.randn(40, 8) + labels[:, None], labels)
    old = OldModelHolder()
    old.model = torch.nn.Module()
    old.model.head = torch.nn.Linear(8, 6)
    head_cur = torch.nn.Linear(8, 6)
    plug = PrototypeOptimizationPlugin(bank, old, head_cur, schedule=schedule, pool_per_class=5,
                                       seed=seed, steps=5, lr=0.05, generator=torch.Generator().manual_seed(0), **kw)
    return plug, bank


def test_l_g_reshapes_every_draw_of_the_bank_whoever_samples_it():
    """The plugin needs only the bank: a loss of the user's own that calls ``bank.sample`` gets optimised samples of
    the same classes (the same draw, then moved), the movement is recorded, and the class means stay as they were."""
    plug, bank = _pool_plugin("step")
    means = {c: m.clone() for c, m in bank.means.items()}
    hooked, c1 = bank.sample(16, torch.Generator().manual_seed(3), context=_Strategy(1))
    bank.sample_hook = None
    raw, c2 = bank.sample(16, torch.Generator().manual_seed(3))
    assert torch.equal(c1, c2) and not torch.allclose(hooked, raw)
    assert plug._moves == [pytest.approx(float((hooked - raw).norm(dim=1).mean()) / bank.radius)]
    assert all(torch.equal(bank.means[c], m) for c, m in means.items())


def test_pool_schedules_draw_the_step_classes_from_a_pool_built_per_phase_or_per_epoch():
    s = _Strategy(1)
    for schedule, rebuilt in (("phase", False), ("epoch", True)):
        plug, bank = _pool_plugin(schedule)
        plug.before_training_exp(s)
        pools = []
        for _ in range(2):
            plug.before_training_epoch(s)
            pools.append(plug.pool[0].clone())
            assert pools[-1].shape == (4 * 5, 8)
            c = torch.tensor([3, 0, 0, 2, 1, 3])
            got = plug.hook(torch.zeros(6, 8), c, s)
            for x, cls in zip(got, c.tolist()):  # each sample is one of its own class's 5 pool entries
                rows = pools[-1][5 * cls: 5 * cls + 5]
                assert any(torch.equal(x, r) for r in rows)
        assert (not torch.equal(pools[0], pools[1])) == rebuilt
        assert len(plug._moves) == (2 if rebuilt else 1)
        # the same seed builds the same pool and picks the same samples (what makes a resumed epoch exact)
        twin, _ = _pool_plugin(schedule)
        twin.before_training_exp(s)
        twin.before_training_epoch(s)
        twin.before_training_epoch(s)
        assert torch.equal(twin.pool[0], pools[1])
        assert torch.equal(twin.hook(None, c, s), _replay(plug, s, c))


def _replay(plug, s, c):
    plug._picks = plug._gen(s, 1, "rgal_pool_picks")  # the picks of epoch 1 from its start
    return plug.hook(None, c, s)


def test_pools_built_while_the_heads_agree_have_no_adversarial_term():
    # before a phase the current head equals the previous one on the old classes: with L_adv alone the pool stays put
    plug, bank = _pool_plugin("phase", w_ntri=0.0, w_oh=0.0)
    plug.before_training_exp(_Strategy(1))
    assert plug._moves == [0.0]
    plug, _ = _pool_plugin("epoch", w_ntri=0.0, w_oh=0.0)
    plug.before_training_exp(_Strategy(1))
    plug.before_training_epoch(_Strategy(1))  # epoch 0: the heads still agree, as before the phase
    plug.before_training_epoch(_Strategy(1))  # epoch 1 faces the current head (here another one): L_adv moves it
    assert plug._moves[0] == 0.0 and plug._moves[1] > 0
    # the movements so far travel with a mid-phase checkpoint
    twin, _ = _pool_plugin("epoch")
    twin.load_training_state(plug.training_state())
    twin.after_training_exp(None)
    assert twin.movement == [plug._moves[1] / 2]


def test_sampler_windows_and_key_neutral_parameters():
    from benchmark.methods import METHODS, cell_params, full_params
    from strategies.rgal.config import sampler_kw

    defaults = METHODS.entry("pass+rgal").extra["defaults"]
    prm = {**defaults, "triplet_distance_cutoff": 0.3}
    assert sampler_kw(prm, "triplet") == {"cutoff": 0.3, "nonzero_loss_cutoff": 1.4}
    assert sampler_kw(prm, "rgal") == {"lower": 0.5, "upper": 1.0}
    assert sampler_kw({**prm, "rgal_sampler": "random"}, "rgal") == {}
    recorded = cell_params("pass+rgal", {**defaults, "rgal_schedule": "epoch"})
    # a parameter added later is recorded only when it differs from its default: earlier cells keep their keys
    assert recorded["rgal_schedule"] == "epoch" and "rgal_pool_per_class" not in recorded
    assert "rgal_steps" in recorded  # an original parameter is always recorded
    assert full_params("pass+rgal", recorded) == {**defaults, "rgal_schedule": "epoch"}


def test_rgal_options_that_cannot_act_are_refused():
    from benchmark.errors import BenchError
    from benchmark.methods import METHODS
    from strategies.rgal.config import check_prototype_params

    g = METHODS.entry("pass+rgal-g").extra["defaults"]
    check_prototype_params(dict(g))  # defaults pass
    check_prototype_params({**g, "rgal_focal_lower": 0.3})  # the focal window with the focal sampler
    with pytest.raises(BenchError, match="rgal_distance_cutoff=0.3 has no effect"):
        check_prototype_params({**g, "rgal_distance_cutoff": 0.3})
    with pytest.raises(BenchError, match="rgal_sample_on=embedding has no effect"):  # random negatives ignore it
        check_prototype_params({**g, "rgal_sampler": "random", "rgal_sample_on": "embedding"})


RGAL_METHODS = {"pass+rgal": 4, "pass+rgal-g": 4, "pass+rgal-s": 4, "pass+rgal-random": 4, "ssre+rgal": 1}


@pytest.mark.parametrize("method,change,message", [
    ("pass+rgal-g", {"rgal_ntri": 0, "rgal_margin": 0.5},
     "rgal_margin=0.5 has no effect here: it applies only with rgal_ntri != 0"),
    ("pass+rgal", {"triplet_weight": 0, "triplet_squared": True}, "triplet_squared=True has no effect"),
    ("pass+rgal-random", {"triplet_sample_on": "embedding"}, "triplet_sample_on=embedding has no effect"),
    ("ssre+rgal", {"triplet_rotated_as_classes": True},
     "triplet_rotated_as_classes=True has no effect here: it applies only to rotated batches"),
])
def test_rgal_options_that_cannot_act_in_a_method_are_refused_and_its_defaults_pass(method, change, message):
    """Each would otherwise make a new cell with the default's numbers (``strategies.rgal.config._applies``)."""
    from benchmark.errors import BenchError
    from benchmark.methods import METHODS
    from strategies.rgal.config import check_prototype_params, check_triplet_params

    def check(name, prm):
        if "rgal_ntri" in prm:
            check_prototype_params(prm)
        if "triplet_weight" in prm:
            check_triplet_params(prm, RGAL_METHODS[name])

    for name in RGAL_METHODS:  # every RGAL method's own defaults are accepted
        check(name, dict(METHODS.entry(name).extra["defaults"]))
    with pytest.raises(BenchError, match=message):
        check(method, {**METHODS.entry(method).extra["defaults"], **change})


def test_ssre_refuses_a_radius_option_it_never_uses():
    from benchmark.errors import BenchError
    from benchmark.methods import METHODS
    from strategies.ssre_method import SSRE

    prm = {**METHODS.entry("ssre").extra["defaults"], "recompute_radius": True}
    with pytest.raises(BenchError, match="recompute_radius=true has no effect here"):
        SSRE(type("Ctx", (), {"params": prm}))  # refused before any model or data is touched


def test_pool_size_without_a_pool_schedule_is_a_one_line_error(tmp_path):
    p = cli("--scenario", "cifar100-mini", "--phases", "1", "--model", "lenet5_half", "--profile", "smoke",
            "--methods", "pass+rgal-g", "--set", "rgal_pool_per_class=5", "--no-progress", "--out", str(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "rgal_pool_per_class=5 has no effect here: it applies only with rgal_schedule phase or epoch" in p.stderr
