"""Phase recipes: MultiStepLR milestones (UCIR's and MUC's official schedules), cell keys that stay what they were
for recipes without milestones, and the ``paper`` profile's per-method official recipes."""
import pytest
import torch

import baselines  # noqa: F401  (registers the methods)
import strategies  # noqa: F401

from benchmark.errors import BenchError
from benchmark.profiles import PROFILES
from benchmark.runner import make_cells
from benchmark.training import PhaseRecipe


def _lrs(recipe: PhaseRecipe, epochs: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = recipe.scheduler(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched:
            sched.step()
    return out


def test_milestones_decay_at_the_given_epochs_and_step_and_constant_schedules_are_unchanged():
    ms = _lrs(PhaseRecipe(epochs=6, lr=1.0, optimizer="sgd", lr_milestones=(2, 5)), 6)
    assert [round(v, 6) for v in ms] == [1.0, 1.0, 0.1, 0.1, 0.1, 0.01]
    st = _lrs(PhaseRecipe(epochs=5, lr=1.0, lr_step=2), 5)
    assert [round(v, 6) for v in st] == [1.0, 1.0, 0.1, 0.1, 0.01]
    assert PhaseRecipe(epochs=3, lr=1.0).scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], 1.0)) is None


def test_recipe_dict_omits_empty_milestones_so_older_cell_keys_hold_and_round_trips():
    r = PhaseRecipe(epochs=5, lr=1e-3, batch_size=16, lr_step=4, channels_last=True)
    d = r.as_dict()
    assert "lr_milestones" not in d and PhaseRecipe.from_dict(d) == r
    m = PhaseRecipe(epochs=160, lr=0.1, optimizer="sgd", lr_milestones=(80, 120))
    assert m.as_dict()["lr_milestones"] == [80, 120] and PhaseRecipe.from_dict(m.as_dict()) == m
    # the committed cpu cells' keys: a PASS-family cpu cell's config holds exactly the pre-milestone fields
    (cell,) = make_cells(scenarios=["cifar100-mini"], phases=[2], methods=["pass"], seeds=[0], profile="cpu")
    assert set(cell.config["recipe"]["inc"]) == {"epochs", "lr", "optimizer", "weight_decay", "momentum",
                                                 "batch_size", "lr_step", "lr_gamma", "channels_last"}


def test_paper_profile_trains_ucir_eeil_muc_on_their_official_recipes_and_others_on_pass():
    def recipes(method, profile="paper"):
        (cell,) = make_cells(scenarios=["cifar100-mini"], phases=[2], methods=[method], seeds=[0], profile=profile)
        return cell.config["recipe"], cell.config["method_params"]

    (ucir, _), (muc, _), (eeil, eeil_p), (lwm, _) = (recipes(m) for m in ("ucir", "muc", "eeil", "lwm"))
    for rec in (ucir["base"], ucir["inc"]):
        assert (rec["optimizer"], rec["lr"], rec["epochs"], rec["lr_milestones"], rec["batch_size"],
                rec["weight_decay"]) == ("sgd", 0.1, 160, [80, 120], 128, 5e-4)
    assert (muc["inc"]["epochs"], muc["inc"]["lr_milestones"]) == (200, [120, 160, 180])
    assert (eeil["inc"]["optimizer"], eeil["inc"]["epochs"], eeil["inc"]["lr_step"]) == ("sgd", 40, 10)
    assert (eeil_p["bft_epochs"], eeil_p["bft_lr_factor"], eeil_p["bft_lr_step"]) == (30, 0.1, 10)
    pass_inc = PROFILES.get("paper").inc.as_dict()
    assert lwm["inc"] == pass_inc and lwm["base"] == PROFILES.get("paper").base.as_dict()
    cpu_eeil, cpu_p = recipes("eeil", "cpu")
    assert cpu_eeil["inc"]["optimizer"] == "adam" and cpu_p["bft_lr_factor"] == 0.1


def test_epoch_override_scales_milestones():
    prof = PROFILES.get("paper").with_overrides(epochs=16)
    r = prof.recipes("ucir")[1]
    assert r.epochs == 16 and r.lr_milestones == (8, 12)


def test_set_integer_for_a_float_default_is_the_default_cell():
    """``--set ar_l=1`` is stored as the float 1.0 of a float option (JSON reads ``1`` as an int), so it names the same
    cell as ``ar_l=1.0``; ints stay ints."""
    import strategies.dfkd  # noqa: F401  (registers the methods)
    from strategies.dfkd import DFKD_METHODS
    from benchmark.hparams import parse_settings

    got = parse_settings(["dfad+ar+vi.ar_l=1", "dfad+ar+vi.g_steps=2"], ["dfad+ar+vi"], registry=DFKD_METHODS)
    assert got == {"dfad+ar+vi": {"ar_l": 1.0, "g_steps": 2}}
    assert type(got["dfad+ar+vi"]["ar_l"]) is float and type(got["dfad+ar+vi"]["g_steps"]) is int
    assert parse_settings(["g_steps=3.0"], ["dfad+ar+vi"], registry=DFKD_METHODS) == {"dfad+ar+vi": {"g_steps": 3}}
    with pytest.raises(BenchError, match="g_steps takes an integer"):
        parse_settings(["g_steps=2.5"], ["dfad+ar+vi"], registry=DFKD_METHODS)


def test_inc_epochs_changes_later_phases_only_and_keeps_the_phase0_cache_key():
    """``--inc-epochs`` retrains phases 1..T at the new length (step scaled with them) on the same cached phase 0: the
    cell key changes, the phase-0 key does not; ``--epochs`` changes both."""
    from benchmark.cells import phase0_key

    def cell(**kw):
        return make_cells(scenarios=["cifar100-mini"], phases=[2], methods=["pass", "ssre"], seeds=[0],
                          profile="cpu", **kw)

    plain, longer, every = cell(), cell(inc_epochs=20), cell(epochs=20)
    cpu = PROFILES.get("cpu")
    for a, b, c, group in zip(plain, longer, every, ("pass", "ssre")):
        base, inc = cpu.recipes(group)
        assert b.config["recipe"]["base"] == a.config["recipe"]["base"] == base.as_dict()
        assert b.config["recipe"]["inc"]["epochs"] == 20 != inc.epochs
        assert b.config["recipe"]["inc"]["lr_step"] == max(1, round(inc.lr_step * 20 / inc.epochs))
        assert b.key != a.key and phase0_key(b.config, "f") == phase0_key(a.config, "f")
        assert c.config["recipe"]["base"]["epochs"] == 20 and phase0_key(c.config, "f") != phase0_key(a.config, "f")
