"""The data-free distillation task end to end on real MNIST (smoke profile): a run interrupted mid-epoch resumes to
the same numbers as an uninterrupted one (pool-based and generator-based methods), reports put the published numbers
beside measured ones, and bad input gets one-line errors."""
import json
import re

import pytest
import torch

from benchmark.dfkd_runner import DFKDCellRun, make_dfkd_cells
from conftest import SHARED_DATA, cli
from conftest import run_main as in_process
from test_cli import _one_line_error

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mnist.npz").is_file(), reason="needs ../shared/data/mnist.npz")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dfkd-cache")


def _cells(methods, **params):
    return make_dfkd_cells(scenarios=["mnist"], methods=methods, seeds=[0], profile="smoke", data_root=SHARED_DATA,
                           method_params={m: dict(params) for m in methods})


@pytest.mark.parametrize("method,cls_path", [("rgal", "strategies.dfkd.rgal.RGAL"),
                                             ("cmi", "strategies.dfkd.cmi.CMI"),  # memory bank, projection head
                                             ("deepinversion", "strategies.dfkd.deepinversion.DeepInversion"),
                                             ("dfad+ar+vi", "strategies.dfkd.dfad_arvi.DFADARVI")])
def test_interrupted_run_resumes_to_the_same_numbers(method, cls_path, tmp_path, cache, monkeypatch):
    import importlib

    (cell,) = _cells([method], kd_steps=2)  # 2 rounds per epoch of 4 steps: interrupt between rounds of epoch 2
    ref = DFKDCellRun(cell, tmp_path / "a", cache, torch.device("cpu"), SHARED_DATA, progress=False).run()

    mod_name, cls_name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(mod_name), cls_name)
    orig, calls = cls.synthesize, []

    def flaky(self):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(DFKDCellRun, "checkpoint_seconds", -1.0)  # save after every round
    monkeypatch.setattr(cls, "synthesize", flaky)
    run = DFKDCellRun(cell, tmp_path / "b", cache, torch.device("cpu"), SHARED_DATA, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert run.status() == "partial"
    assert {k: run.checkpoint_state()[k] for k in ("epoch", "round")} == {"epoch": 1, "round": 1}
    # --dry-run prices what is left: half of epoch 2 and the epochs after it
    dry = in_process("--task", "dfkd", "--scenario", "mnist", "--profile", "smoke", "--methods", method, "--set",
                     f"{method}.kd_steps=2", "--data-root", str(SHARED_DATA), "--out", str(tmp_path / "b"),
                     "--cache-dir", str(cache), "--dry-run")
    epochs = cell.config["distill"]["epochs"]
    assert f"partial 1/{epochs} epochs" in dry.stdout, dry.stdout
    monkeypatch.setattr(cls, "synthesize", orig)
    res = run.run()
    assert len(calls) == 4  # the resumed run started after the third round, from the checkpoint
    assert [c["top1"] for c in res["rows"][method]["curve"]] == [c["top1"] for c in ref["rows"][method]["curve"]]
    assert res["extra"] == ref["extra"]
    assert not run.ckpt_path.exists() and run.finished()["key"] == cell.key


def test_reference_rows_and_report_with_published_numbers(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    out = tmp_path / "o"
    args = ("--task", "dfkd", "--scenario", "mnist", "--profile", "smoke", "--methods", "teacher", "kd-real",
            "--data-root", str(SHARED_DATA), "--out", str(out), "--no-progress")
    empty = in_process(*args, "--dry-run", "--cache-dir", str(tmp_path / "empty-cache"))
    assert empty.stdout.count("teacher cache: miss") == 2, empty.stdout
    assert empty.stdout.count("this cell trains it") == 1, empty.stdout  # the teacher's time is counted once
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    # throughput printed with the run, then the summary table with units, which way is better and the teacher beside
    assert re.search(r"kd-real seed 0, student top-1 \d+\.\d\d %, student \d+ img/s", p.stdout), p.stdout
    assert re.search(r"teacher seed 0, teacher top-1 \d+\.\d\d %", p.stdout), p.stdout
    assert "student acc % \u2191" in p.stdout and "teacher acc %" in p.stdout and "chance %" in p.stdout
    row = next(line for line in p.stdout.splitlines() if " kd-real " in line and "lenet5" in line)
    assert re.search(r"mnist\s+lenet5->lenet5_half\s+kd-real\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+\s+10\.0\s+[\d.]+\s+1$",
                     row), row
    dry = in_process(*args, "--dry-run")
    assert dry.stdout.count("finished") == 2 and dry.stdout.count("teacher cache: hit") == 2, dry.stdout
    res = [json.loads(f.read_text()) for f in out.rglob("result.json")]
    by = {r["cell"]["method"]: r for r in res}
    # 60 smoke steps: measured 0.496 with the seeded initialisation; chance is 0.1
    assert by["teacher"]["rows"]["teacher"]["top1"] == by["teacher"]["teacher"]["test_accuracy"] > 0.3
    assert by["kd-real"]["teacher"]["test_accuracy"] == by["teacher"]["teacher"]["test_accuracy"]  # one cached teacher
    md = (out / "report" / "dfkd_tables.md").read_text()
    assert "98.89" in md and "98.67" in md  # the activation-regularisation paper's Teacher and KD rows beside ours
    assert (out / "report" / "dfkd_accuracy_curves.png").stat().st_size > 10_000


def test_a_results_folder_carries_its_teacher_to_a_machine_without_the_cache(tmp_path, monkeypatch):
    """The teacher cell keeps its cache entry as teacher.pt; a fresh cache then restores it instead of training."""
    import benchmark.teachers

    out = tmp_path / "o"
    args = ("--task", "dfkd", "--scenario", "mnist", "--profile", "smoke", "--data-root", str(SHARED_DATA),
            "--out", str(out), "--no-progress")
    first = tmp_path / "cache"
    assert in_process(*args, "--methods", "teacher", "--cache-dir", str(first)).returncode == 0
    (carried,) = out.glob("mnist-teacher-s0-*/teacher.pt")
    (cached,) = (first / "teachers").glob("*.pt")
    assert carried.read_bytes() == cached.read_bytes()

    fresh = tmp_path / "fresh-cache"
    dry = in_process(*args, "--methods", "teacher", "kd-real", "--cache-dir", str(fresh), "--dry-run")
    assert dry.stdout.count(f"restored from {carried.parent.name}/teacher.pt, no training") == 2, dry.stdout
    assert "this cell trains it" not in dry.stdout, dry.stdout

    def no_training(*a, **k):
        raise AssertionError("the teacher was retrained although the folder carries it")

    monkeypatch.setattr(benchmark.teachers, "train_teacher", no_training)
    assert in_process(*args, "--methods", "kd-real", "--cache-dir", str(fresh)).returncode == 0
    (res,) = [json.loads(f.read_text()) for f in out.glob("mnist-kd-real-*/result.json")]
    teacher_res = json.loads((carried.parent / "result.json").read_text())
    assert res["teacher"]["cache"] == f"miss, restored from {carried.parent.name}/teacher.pt"
    assert res["teacher"]["test_accuracy"] == teacher_res["teacher"]["test_accuracy"]
    assert (fresh / "teachers" / cached.name).read_bytes() == cached.read_bytes()  # cached for the next cells

    carried.write_bytes(b"not a checkpoint")
    _one_line_error(in_process(*args, "--methods", "kd-real", "--seeds", "1", "--cache-dir", str(tmp_path / "c3")),
                    "teacher weights", "corrupt", "delete the file")


@pytest.mark.parametrize("args,words", [
    (["--scenario", "tinyimagenet"], ["no data-free distillation setting", "mnist"]),
    (["--teacher", "resnet1000"], ["unknown model", "resnet1000"]),
    (["--teacher-checkpoint", "/nonexistent.pt"], ["--teacher-checkpoint", "does not exist"]),
    (["--set", "rgal.nope=1", "--methods", "rgal"], ["rgal has no parameter 'nope'"]),
    (["--methods", "cmi", "--set", "cmi.adv=\"high\""], ["adv takes a number"]),
    (["--phases", "5"], ["--phases belongs to class-incremental runs"]),
    (["--model", "lenet5"], ["--model belongs to class-incremental runs", "--teacher and --student"]),
    (["--spread-remaining"], ["--spread-remaining belongs to class-incremental runs"]),
    (["--inc-epochs", "3"], ["--inc-epochs belongs to class-incremental runs"]),
])
def test_dfkd_bad_input_gives_one_line_error(args, words, tmp_path):
    _one_line_error(in_process("--task", "dfkd", "--data-root", str(SHARED_DATA), "--out", str(tmp_path / "o"),
                               "--dry-run", *args), *words)


def test_corrupt_teacher_checkpoint_and_dfkd_flags_without_the_task(tmp_path):
    bad = tmp_path / "t.pt"
    bad.write_bytes(b"not a checkpoint")
    _one_line_error(cli("--task", "dfkd", "--scenario", "mnist", "--profile", "smoke", "--methods", "teacher",
                        "--teacher-checkpoint", str(bad), "--data-root", str(SHARED_DATA), "--out",
                        str(tmp_path / "o"), "--no-progress"), "corrupt", "state_dict")
    _one_line_error(in_process("--teacher", "lenet5", "--dry-run"), "--teacher", "--task dfkd")


def test_teacher_initialisation_is_fixed_by_the_seed_whatever_ran_before(tmp_path):
    """The teacher is built after seeding: the generator's state left by earlier work does not change it."""
    from dataclasses import replace

    from benchmark.augment import AugmentSpec
    from benchmark.data import ArrayData
    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.teachers import get_teacher

    prof = dfkd_profile("smoke", "mnist")
    x = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    data = ArrayData("tiny", x, torch.arange(8) % 2, x, torch.arange(8) % 2, ["a", "b"], "test", "sha")
    states = []
    for i, burn in enumerate((0, 1000)):
        torch.rand(burn)  # earlier work in the process
        t, _ = get_teacher(prof.teacher, data, (0.5,), (0.5,), replace(prof.teacher_recipe, epochs=0),
                           AugmentSpec(), "cpu", tmp_path / str(i), seed=3, progress=False)
        states.append(torch.cat([p.flatten() for p in t.parameters()]))
    assert torch.equal(states[0], states[1])


def test_dry_run_teacher_estimate_is_epochs_times_images_over_throughput():
    from benchmark.dfkd_estimates import predicted_teacher_seconds
    from benchmark.cil_estimates import CPU_IMAGES_PER_S

    t = {"epochs": 14, "batch_size": 128, "max_steps_per_epoch": 0}
    cfg = {"scenario": "cifar10", "teacher": "wrn16_2", "teacher_recipe": t}
    assert predicted_teacher_seconds(cfg, 50000) == pytest.approx(14 * 50000 / CPU_IMAGES_PER_S["wrn16_2"])
    # a capped epoch (smoke / mini teachers) sees max_steps_per_epoch batches only, unless the data is smaller
    cfg["teacher_recipe"] = {**t, "epochs": 1, "max_steps_per_epoch": 60}
    assert predicted_teacher_seconds(cfg, 50000) == pytest.approx(60 * 128 / CPU_IMAGES_PER_S["wrn16_2"])
    assert predicted_teacher_seconds(cfg, 1000) == pytest.approx(1000 / CPU_IMAGES_PER_S["wrn16_2"])


def test_dry_run_distillation_estimate_prices_the_generator_only_where_a_method_has_one():
    """The generator's cost grows with its width for DFAD (fresh images every student step and a generator in
    synthesis) but not for DeepInversion (pixels optimised, no generator); evaluation counts once per eval_every."""
    import strategies.dfkd  # noqa: F401
    from benchmark.dfkd_estimates import generator_images_per_s, predicted_dfkd_seconds
    from benchmark.cil_estimates import CPU_IMAGES_PER_S

    def cfg(method, params, **distill):
        d = {"epochs": 10, "ep_steps": 100, "synthesis_batch": 128, "ngf": 32, "eval_every": 1, **distill}
        return {"method": method, "teacher": "wrn16_2", "student": "wrn16_1", "distill": d, "method_params": params}

    di = {"g_steps": 200, "kd_steps": 0, "student_batch": 128}
    assert predicted_dfkd_seconds(cfg("deepinversion", di, ngf=64)) == predicted_dfkd_seconds(cfg("deepinversion", di))
    dfad = {"g_steps": 1, "kd_steps": 5, "student_batch": 128}
    wider = predicted_dfkd_seconds(cfg("dfad", dfad, ngf=64)) - predicted_dfkd_seconds(cfg("dfad", dfad))
    images = 10 * 100 * 128 + 10 * 20 * 128 * 3  # student-step forwards + synthesis forward and backward
    assert wider == pytest.approx(images * (1 / generator_images_per_s(64) - 1 / generator_images_per_s(32)))
    every5 = predicted_dfkd_seconds(cfg("kd-real", {"student_batch": 128}, eval_every=5))
    every1 = predicted_dfkd_seconds(cfg("kd-real", {"student_batch": 128}))
    assert every1 - every5 == pytest.approx((10 - 2) * 10000 / (2.5 * CPU_IMAGES_PER_S["wrn16_1"]))


def test_g_student_mode_is_key_neutral_at_its_default():
    """Cells made before the option existed keep their keys: the default is left out of a cell's parameters (and
    put back for the method), a non-default value is recorded."""
    from benchmark.methods import full_params
    from strategies.dfkd import DFKD_METHODS

    default, = _cells(["dfad"])
    train, = _cells(["dfad"], g_student_mode="train")
    assert "g_student_mode" not in default.config["method_params"]
    assert train.config["method_params"]["g_student_mode"] == "train" and train.key != default.key
    assert full_params("dfad", default.config["method_params"], DFKD_METHODS)["g_student_mode"] == "eval"


def test_a_profile_gives_a_method_its_own_epochs_unless_the_user_sets_them(monkeypatch):
    """``method_epochs`` (the ``cpu`` CIFAR profiles fill each method's time budget): a listed method's cells get its
    epoch count, the others the profile's; ``--epochs`` is every method's."""
    from dataclasses import replace

    from benchmark import dfkd_profiles

    prof = dfkd_profiles.dfkd_profile("smoke", "mnist")
    monkeypatch.setitem(dfkd_profiles._PROFILES, ("smoke", "mnist"), replace(prof, method_epochs={"dfad": 5}))
    cells = {c.config["method"]: c.config["distill"]["epochs"] for c in _cells(["dfad", "dafl"])}
    assert cells == {"dfad": 5, "dafl": prof.distill.epochs} and prof.distill.epochs != 5
    overridden = make_dfkd_cells(scenarios=["mnist"], methods=["dfad", "dafl"], seeds=[0], profile="smoke",
                                 data_root=SHARED_DATA, epochs=3)
    assert [c.config["distill"]["epochs"] for c in overridden] == [3, 3]


@pytest.mark.parametrize("schedule", ["constant", "student"])
def test_the_generator_learning_rate_follows_the_students_decay_only_when_asked(schedule, tmp_path, cache,
                                                                               monkeypatch):
    """``g_schedule``: "student" decays the generator's Adam by the student's cosine factor after every epoch (DFAD's
    DFAD_cifar.py steps one MultiStepLR on both optimisers); "constant" (CMI's recipe, the default) never does.  The
    smoke MNIST recipe has no schedule, so the cell is given a cosine one here."""
    import math

    from strategies.dfkd.generative import DFAD

    (cell,) = _cells(["dfad"], g_schedule=schedule)
    cell.config["distill"]["schedule"] = "cosine"
    epochs, lr_g = cell.config["distill"]["epochs"], 1e-3
    seen, orig = [], DFAD.end_epoch

    def record(self, lr_factor):
        orig(self, lr_factor)
        seen.append(self.opt_g.param_groups[0]["lr"])

    monkeypatch.setattr(DFAD, "end_epoch", record)
    DFKDCellRun(cell, tmp_path, cache, torch.device("cpu"), SHARED_DATA, progress=False).run()
    cosine = [lr_g * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(1, epochs + 1)]
    assert epochs >= 2 and seen == pytest.approx(cosine if schedule == "student" else [lr_g] * epochs, abs=1e-12)


@pytest.mark.parametrize("order", ["synthesis_first", "student_first"])
def test_round_order_follows_step_order(order, tmp_path, cache, monkeypatch):
    """A round synthesises first (CMI's datafree_kd.py), or, with DFAD's ``step_order=student_first``, takes its
    student steps first (DFAD's train()); the default leaves the cell's key as it was."""
    from strategies.dfkd.generative import DFAD

    calls = []
    orig_synth, orig_loss = DFAD.synthesize, DFAD.student_loss
    monkeypatch.setattr(DFAD, "synthesize", lambda self: calls.append("g") or orig_synth(self))
    monkeypatch.setattr(DFAD, "student_loss", lambda self: calls.append("s") or orig_loss(self))
    (cell,) = _cells(["dfad"], step_order=order)
    DFKDCellRun(cell, tmp_path, cache, torch.device("cpu"), SHARED_DATA, progress=False).run()
    from benchmark.dfkd_methods import DFKD_METHODS
    from benchmark.methods import full_params

    kd = int(full_params("dfad", cell.config["method_params"], DFKD_METHODS)["kd_steps"])
    assert kd > 1 and len(calls) >= 2 * (kd + 1)
    one_round = ["g"] + ["s"] * kd if order == "synthesis_first" else ["s"] * kd + ["g"]
    assert calls[: 2 * (kd + 1)] == one_round * 2
    assert ("step_order" in cell.config["method_params"]) == (order != "synthesis_first")


def test_teacher_source_follows_checkpoint_cache_carried_train_in_that_order(tmp_path):
    from benchmark.teachers import teacher_source

    cache = tmp_path / "cache" / "teacher-abc.pt"
    other, mine = tmp_path / "a" / "teacher.pt", tmp_path / "b" / "teacher.pt"
    for path, key in ((other, "teacher-xyz"), (mine, "teacher-abc")):
        path.parent.mkdir(parents=True)
        torch.save({"key": key, "model": {}}, path)
    asked = []

    def carried():
        asked.append(1)
        return [other, mine]

    assert teacher_source(None, cache, carried) == ("carried", mine)  # the copy whose key matches, not the first
    assert teacher_source(None, cache, lambda: [other]) == ("train", None)
    cache.parent.mkdir()
    torch.save({"key": "teacher-abc"}, cache)
    asked.clear()
    assert teacher_source(None, cache, carried) == ("cache", cache) and not asked  # carried copies not even listed
    assert teacher_source("mine.pt", cache, carried)[0] == "checkpoint"
