"""Mixed precision (``benchmark.precision``): how ``--precision`` resolves, that it keys cells, that every method's
training loss under bf16 autocast stays close to its float32 value on the same batch and state, and that bf16 runs
finish and store float32 state."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import baselines  # noqa: F401  (registers the baselines)
import strategies  # noqa: F401  (registers PASS, SSRE)
import strategies.dfkd  # noqa: F401
from benchmark.errors import BenchError
from benchmark.methods import METHODS, MethodContext, full_params
from benchmark.models import build_model
from benchmark.precision import cpu_has_native_bf16, resolve_precision
from benchmark.runner import make_cells
from benchmark.scenarios import build_scenario
from benchmark.training import PhaseRecipe, seed_everything
from conftest import SHARED_DATA, cli, dfkd_context

# bf16 keeps 8 bits of mantissa: a loss through a ResNet-20 lands within a few per cent of its float32 value
BF16_REL_TOL = 0.05


def test_auto_is_bf16_only_where_the_cpu_computes_it_natively():
    zen4 = "processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16\n"
    zen2 = "processor : 0\nflags : fpu sse2 avx2 fma\n"
    assert cpu_has_native_bf16(zen4) and not cpu_has_native_bf16(zen2)
    assert cpu_has_native_bf16("flags : avx2 amx_bf16 amx_tile\n")
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(BenchError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(BenchError, match="unknown precision"):
        resolve_precision("half", "cpu")


def test_precision_is_part_of_the_cell_key_and_fp32_keeps_the_keys_made_before_it_existed():
    kw = dict(scenarios=["cifar100-mini"], phases=[2], methods=["pass"], seeds=[0], profile="smoke")
    plain, fp32, bf16 = (make_cells(**kw)[0], make_cells(**kw, precision="fp32")[0],
                         make_cells(**kw, precision="bf16")[0])
    assert plain.key == fp32.key and "precision" not in plain.config["recipe"]["base"]
    assert bf16.key != fp32.key
    assert bf16.config["recipe"]["base"]["precision"] == bf16.config["recipe"]["inc"]["precision"] == "bf16"
    assert PhaseRecipe.from_dict(bf16.config["recipe"]["base"]).precision == "bf16"


class _Stop(Exception):
    pass


class _LossProbe:
    """A plugin placed just before the suite plugin: records the step's total loss (every term added) and stops."""

    def __init__(self):
        self.loss = None

    def __getattr__(self, name):  # every other Avalanche callback: nothing
        if name.startswith(("before_", "after_")):
            return lambda *a, **k: None
        raise AttributeError(name)

    def before_backward(self, strategy, **kw):
        self.loss = (float(strategy.loss.detach()), torch.is_autocast_enabled("cpu"))
        raise _Stop


def _first_step_loss(method_name: str, precision: str) -> tuple[float, bool]:
    """The loss of the first training step of phase 1 on cifar100-mini (smoke recipe), after phase 0's end-of-phase
    work on a freshly initialised network: identical seeds, so only the arithmetic differs between precisions."""
    sc = build_scenario("cifar100-mini", 1)
    cfg = make_cells(scenarios=["cifar100-mini"], phases=[1], methods=[method_name], seeds=[0],
                     profile="smoke")[0].config
    # batch 8: bf16 is emulated (about 9x slower than fp32) on CPUs without bf16 instructions, CI's included
    rec = {k: replace(PhaseRecipe.from_dict(cfg["recipe"][k]), precision=precision, batch_size=8)
           for k in ("base", "inc")}
    seed_everything(0)
    cls = METHODS.get(method_name)
    model = build_model(cfg["model"], sc.spec.n_classes * cls.outputs_per_class, sc.data.channels, sc.spec.mean,
                        sc.spec.std)
    ctx = MethodContext(model, sc, lambda k: rec["base" if k == 0 else "inc"],
                        full_params(method_name, cfg["method_params"]), torch.device("cpu"), 0, None)
    method = cls(ctx)
    method.train_phase(0, sc.benchmark.train_stream[0], 0)  # end-of-phase work only (old model, prototypes, ...)
    seed_everything(1)
    method.suite_plugin.generator.manual_seed(1)
    probe = _LossProbe()
    method.strategy.plugins.insert(method.strategy.plugins.index(method.suite_plugin), probe)
    with pytest.raises(_Stop):
        method.train_phase(1, sc.benchmark.train_stream[1], 1)
    assert not torch.is_autocast_enabled("cpu")  # an exception inside a step leaves no autocast behind
    return probe.loss


# every distinct loss code path: PASS's variants (pass, pass+rgal-g / -s / -random) compute subsets of pass+rgal's
# terms and SSRE's of ssre+rgal's; joint trains phase 0 only (finetune's CE)
LOSS_PATHS = ["pass+rgal", "ssre+rgal", "finetune", "lwf", "lwf-mc", "icarl", "ewc", "ucir", "eeil", "lwm", "muc"]


def test_the_loss_paths_cover_every_registered_method():
    variants = {"pass", "pass+rgal-g", "pass+rgal-s", "pass+rgal-random", "ssre", "joint"}
    assert set(METHODS.names()) == set(LOSS_PATHS) | variants


@pytest.mark.parametrize("method", LOSS_PATHS)
def test_bf16_first_step_loss_of_every_method_is_close_to_fp32(method):
    loss32, on32 = _first_step_loss(method, "fp32")
    loss16, on16 = _first_step_loss(method, "bf16")
    assert not on32 and on16  # the loss terms ran under autocast in bf16 only
    assert loss16 == pytest.approx(loss32, rel=BF16_REL_TOL)


def _dfkd_losses(method_name: str, precision: str, tmp: Path) -> tuple[float, float]:
    from benchmark.precision import autocast
    from strategies.dfkd import DFKD_METHODS

    method = DFKD_METHODS.get(method_name)(dfkd_context(method_name, tmp / precision, precision))
    with autocast(precision, "cpu"):
        info = method.synthesize()
        loss, _ = method.student_loss()
    synth = info.get("loss_g")
    return float(loss.detach()), (None if synth is None else float(synth))


@pytest.mark.parametrize("method", [m for m in ("cmi", "deepinversion", "dafl", "zskt", "dfq", "dfad", "dfad+ar+vi",
                                                "kd-real", "rgal")])
def test_bf16_synthesis_and_student_losses_of_every_dfkd_method_are_close_to_fp32(method, tmp_path):
    s32, g32 = _dfkd_losses(method, "fp32", tmp_path)
    s16, g16 = _dfkd_losses(method, "bf16", tmp_path)
    assert s16 == pytest.approx(s32, rel=BF16_REL_TOL, abs=1e-3)
    if g32 is not None:
        assert g16 == pytest.approx(g32, rel=BF16_REL_TOL, abs=1e-3)


@pytest.mark.skipif(not (SHARED_DATA / "mnist.npz").is_file(), reason="needs ../shared/data/mnist.npz")
def test_a_bf16_run_finishes_keyed_by_its_precision_with_float32_state(tmp_path):
    """A data-free distillation run (MNIST, LeNet-5: cheap even where bf16 is emulated) end to end in bf16; the
    class-incremental path runs through Avalanche in the per-method tests above."""
    import json

    r = cli("--task", "dfkd", "--scenario", "mnist", "--methods", "dfad", "--profile", "smoke", "--precision", "bf16",
            "--data-root", str(SHARED_DATA), "--out", str(tmp_path / "dfkd"), "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(next((tmp_path / "dfkd").glob("*dfad*/result.json")).read_text())
    assert res["cell"]["distill"]["precision"] == "bf16" and res["cell"]["teacher_recipe"]["precision"] == "bf16"
    assert 0.0 <= res["rows"]["dfad"]["top1"] <= 1.0
    teacher = torch.load(next((tmp_path / "cache").rglob("*.pt")), weights_only=True)
    assert all(t.dtype == torch.float32 for t in teacher["model"].values()
               if isinstance(t, torch.Tensor) and t.is_floating_point())


def test_fp16_on_a_cpu_is_a_one_line_error(tmp_path):
    r = cli("--scenario", "cifar100-mini", "--phases", "1", "--methods", "lwf", "--profile", "smoke", "--precision",
            "fp16", "--device", "cpu", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "fp16 needs a CUDA device" in r.stderr
    assert not (tmp_path / "x").exists()
