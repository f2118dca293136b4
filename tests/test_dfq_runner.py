"""The data-free quantization task end to end on a tiny real CIFAR-10 (smoke profile): cells per method x bit-width
carrying the teacher's identity, the warm-up (ranges tracked, student untouched, then frozen), the multi-step
schedule counting the warm-up, resume to the same numbers, IntraQ's image set shared across bit-widths, the Table 12
report beside the published numbers with paired RGAL gains, and one-line errors for bad input."""
import json

import pytest
import torch

from benchmark.dfq_runner import DFQCellRun, make_dfq_cells
from benchmark.models import build_model
from benchmark.quantization import QuantAct, quantize_model
from conftest import run_main as in_process
from test_cli import _one_line_error


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dfq-cache")


def _cells(tiny_data, methods, bits=((4, 4),), **params):
    return make_dfq_cells(scenarios=["cifar10"], methods=methods, seeds=[0], profile="smoke", bits=list(bits),
                          data_root=tiny_data, method_params={m: dict(params) for m in methods})


def _run(cell, out, cache, tiny_data):
    return DFQCellRun(cell, out, cache, torch.device("cpu"), tiny_data, progress=False)


def test_cells_name_method_bits_and_teacher_and_the_teacher_cell_once(tiny_data):
    cells = _cells(tiny_data, ["teacher", "gdfq", "intraq+rgal"], bits=((4, 4), (3, 3)))
    got = [(c.config["method"], c.config["bits"] and c.config["bits"]["weights"]) for c in cells]
    assert got == [("teacher", None), ("gdfq", 4), ("gdfq", 3), ("intraq+rgal", 4), ("intraq+rgal", 3)]
    assert len({c.key for c in cells}) == 5
    assert all(c.config["teacher_key"] == cells[0].config["teacher_key"] for c in cells)
    # the two families keep their own official schedules
    assert cells[1].config["quant"]["milestones"] != make_dfq_cells(
        scenarios=["cifar10"], methods=["intraq"], seeds=[0], profile="paper", bits=[(4, 4)],
        data_root=tiny_data)[0].config["quant"]["milestones"]


def test_warm_up_tracks_ranges_without_training_then_freezes_them(tiny_data, tmp_path, cache):
    (cell,) = make_dfq_cells(scenarios=["cifar10"], methods=["gdfq"], seeds=[0], profile="smoke", bits=[(4, 4)],
                             data_root=tiny_data, epochs=1)  # --epochs 1: the warm-up epoch only
    run = _run(cell, tmp_path, cache, tiny_data)
    calls = {}
    orig = QuantAct.forward

    def spy(self, x):
        calls.setdefault(self.tracking, 0)
        calls[self.tracking] += 1
        return orig(self, x)

    QuantAct.forward = spy
    try:
        res = run.run()
    finally:
        QuantAct.forward = orig
    assert calls.get(True, 0) > 0 and calls.get(False, 0) > 0  # tracked in the warm-up, frozen for the tests
    assert res["timings"]["student_seconds"] == 0.0
    assert res["extra"]["calibration"]["images"] == cell.config["quant"]["ep_steps"] * \
        cell.config["quant"]["synthesis_batch"]
    assert res["extra"]["calibrated_top1"] == res["rows"]["gdfq"]["top1"]  # nothing trained after the warm-up


def test_ranges_track_in_their_own_epochs_of_a_longer_warm_up(tiny_data, tmp_path, cache, monkeypatch):
    """GDFQ's ImageNet recipe: 50 warm-up epochs (generator only), ranges tracked in the first 4; here 2 and 1."""
    from benchmark.cells import Cell

    (cell,) = _cells(tiny_data, ["gdfq"])
    cfg = cell.config
    cell = Cell({**cfg, "quant": {**cfg["quant"], "warmup_epochs": 2, "range_epochs": 1}})
    tracked, opt_steps = [], []
    orig = QuantAct.forward

    def spy(self, x):
        tracked.append(self.tracking)
        return orig(self, x)

    monkeypatch.setattr(QuantAct, "forward", spy)
    orig_step = torch.optim.Adam.step

    def adam_step(self, *a, **k):  # the generator's optimiser (the student's is SGD)
        opt_steps.append(1)
        return orig_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", adam_step)
    res = _run(cell, tmp_path, cache, tiny_data).run()
    q = cell.config["quant"]
    probe = build_model("resnet20", 10, 3, (0.5,) * 3, (0.5,) * 3)
    n_acts = sum(isinstance(m, QuantAct) for m in quantize_model(probe, 4, 4, torch.rand(2, 3, 32, 32)).modules())
    # the first epoch's iterations tracked, in the student and in the 8-bit copy; none after
    assert sum(tracked) == 2 * n_acts * q["ep_steps"]
    assert res["extra"]["calibration"]["images"] == q["ep_steps"] * q["synthesis_batch"]  # the tracking epoch's
    assert len(opt_steps) == 3 * q["ep_steps"]  # the generator trains in every epoch, warm-up included
    assert res["timings"]["student_seconds"] > 0  # and the student in the last


def test_the_student_is_not_trained_in_the_warm_up_and_the_schedule_counts_it(tiny_data, tmp_path, cache,
                                                                               monkeypatch):
    (cell,) = _cells(tiny_data, ["gdfq"])  # smoke: 3 epochs, 1 warm-up, lr x0.1 at epoch 2
    run = _run(cell, tmp_path, cache, tiny_data)
    seen = []
    orig = torch.optim.SGD.step

    def step(self, *a, **k):
        if self.defaults.get("nesterov"):  # the student's (the teacher's SGD, if trained here, has none)
            seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    run.run()
    q, lr = cell.config["quant"], cell.config["quant"]["lr"]
    # epoch 1 (warm-up): no student step; epoch 2 at lr (the milestone 2 is after it); epoch 3 at lr * gamma
    assert seen == [lr] * q["ep_steps"] + [pytest.approx(lr * q["gamma"])] * q["ep_steps"]


@pytest.mark.parametrize("method", ["gdfq+rgal", "intraq", "intraq+rgal"])
def test_interrupted_run_resumes_to_the_same_numbers(method, tiny_data, tmp_path, cache, monkeypatch):
    (cell,) = _cells(tiny_data, [method])
    ref = _run(cell, tmp_path / "a", cache / "a", tiny_data).run()
    import importlib

    mod = importlib.import_module("strategies.dfq." + method.split("+")[0])
    cls = getattr(mod, {"gdfq+rgal": "GDFQ", "intraq": "IntraQ", "intraq+rgal": "IntraQ"}[method])
    orig, calls = cls.student_loss, []

    def flaky(self):
        calls.append(1)
        if len(calls) == 2:  # the second student step: inside the first training epoch
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(DFQCellRun, "checkpoint_seconds", -1.0)
    monkeypatch.setattr(cls, "student_loss", flaky)
    run = _run(cell, tmp_path / "b", cache / "b", tiny_data)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert run.status() == "partial"
    if method.startswith("intraq"):  # the set lives in its file, not in the checkpoints (nor the warm-up generator)
        state = torch.load(run.ckpt_path, weights_only=False)["method"]
        assert state["made"] == [] and state["g"] is None
    monkeypatch.setattr(cls, "student_loss", orig)
    res = _run(cell, tmp_path / "b", cache / "b", tiny_data).run()
    for k in ("top1", "best_top1"):
        assert res["rows"][method][k] == ref["rows"][method][k]
    assert [c["top1"] for c in res["rows"][method]["curve"]] == [c["top1"] for c in ref["rows"][method]["curve"]]
    assert res["extra"]["calibrated_top1"] == ref["extra"]["calibrated_top1"]
    if method.startswith("intraq"):  # the resumed cell made its set (not "cache ...")
        assert [res["extra"]["synthesis"][k] for k in ("source", "images")] == ["made", 32]


def test_intraq_images_are_made_once_and_shared_by_the_other_bit_width(tiny_data, tmp_path, cache):
    four, three = _cells(tiny_data, ["intraq"], bits=((4, 4), (3, 3)))
    r4 = _run(four, tmp_path, cache / "share", tiny_data)
    r3 = _run(three, tmp_path, cache / "share", tiny_data)
    assert r4.artefact_path() == r3.artefact_path()
    assert r4.shared_model_key() == r3.shared_model_key()  # one unit of work: the first makes, the second loads
    # --dry-run counts the synthesis once: in the first cell of the sweep, not in the one that will load the set
    from benchmark.dfq_estimates import predicted_dfq_seconds, synthesis_seconds
    from benchmark.dry_run import dfq_plans

    n = r4.test_images()
    made, loaded = (predicted_dfq_seconds(c.config, n, set_ready=ready) for c, ready in ((four, False), (three, True)))
    assert made - loaded == pytest.approx(synthesis_seconds(four.config)) and synthesis_seconds(four.config) > 0
    p4, p3 = dfq_plans([four, three], {four.key: r4, three.key: r3})
    assert p3.seconds == pytest.approx(loaded) and p4.seconds >= made  # (p4 also trains the teacher)
    a = r4.run()
    assert a["extra"]["synthesis"]["source"] == "made"
    (p3,) = dfq_plans([three], {three.key: r3})  # the set is in the cache now
    assert p3.seconds == pytest.approx(loaded)
    b = r3.run()
    assert b["extra"]["synthesis"]["source"].startswith("cache")
    assert b["extra"]["synthesis"]["images"] == a["extra"]["synthesis"]["images"] == 32
    # RGAL's set depends on the quantized student: not shared
    (rg,) = _cells(tiny_data, ["intraq+rgal"])
    assert _run(rg, tmp_path, cache / "share", tiny_data).artefact_path() is None


def test_cli_report_puts_table12_beside_the_published_numbers(tiny_data, tmp_path, cache):
    out = tmp_path / "o"
    p = in_process("--task", "dfq", "--scenario", "cifar10", "--profile", "smoke", "--bits", "4", "--methods",
                   "teacher", "gdfq", "gdfq+rgal", "--data-root", str(tiny_data), "--out", str(out),
                   "--cache-dir", str(cache / "cli"), "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "W4A4" in p.stdout and "gdfq+rgal" in p.stdout
    md = (out / "report" / "dfq_tables.md").read_text()
    assert "teacher (float)" in md and "8-bit bound" in md and "RGAL's effect, paired by seed" in md
    folders = sorted(d.name for d in out.iterdir() if d.is_dir() and d.name != "report")
    assert any(f.startswith("cifar10-gdfq-w4a4-s0-") for f in folders)
    assert any(f.startswith("cifar10-teacher-s0-") for f in folders)
    res = json.loads(next(out.glob("cifar10-gdfq-w4a4-*/result.json")).read_text())
    assert res["cell"]["teacher_key"] and res["cell"]["bits"] == {"weights": 4, "activations": 4}
    dry = in_process("--task", "dfq", "--scenario", "cifar10", "--profile", "smoke", "--bits", "4", "3",
                     "--methods", "gdfq", "--data-root", str(tiny_data), "--out", str(out), "--cache-dir",
                     str(cache / "cli"), "--dry-run")
    assert dry.returncode == 0 and "finished" in dry.stdout and "W3A3" in dry.stdout, dry.stdout


def test_table12_and_paired_gain_from_results():
    from benchmark.dfq_reports import dfq_frame, rgal_gain_table, table12

    def res(method, bits, seed, top1):
        return {"cell": {"scenario": "cifar100", "teacher": "resnet20", "method": method, "seed": seed,
                         "profile": "paper", "bits": {"weights": bits, "activations": bits}, "method_params": {}},
                "rows": {method: {"top1": top1, "best_top1": top1 + 0.01}},
                "extra": {"calibrated_top1": 0.02, "w8a8_top1": 0.69}, "teacher": {"test_accuracy": 0.70},
                "timings": {}}

    rs = [res("gdfq", 3, 0, 0.40), res("gdfq+rgal", 3, 0, 0.43), res("gdfq", 3, 1, 0.42), res("gdfq+rgal", 3, 1, 0.43)]
    rs[1]["extra"] = {"calibrated_top1": 0.02, "w8a8_top1": 0.67}  # its own warm-up images: its own 8-bit copy
    df = dfq_frame(rs)
    t = table12(df)
    assert t.loc[("CIFAR-100", "W3A3", "gdfq"), "published"] == 43.87
    assert t.loc[("CIFAR-100", "W3A3", "gdfq+rgal"), "published"] == 47.53
    assert t.loc[("CIFAR-100", "W3A3", "gdfq"), "measured"].startswith("41.00 ± 1.41")
    bound = t.loc[("CIFAR-100", "W8A8", "8-bit bound (W8A8, no fine-tuning)"), "measured"]
    assert bound.startswith("68.50 ± 1.00 (n=4)")  # the mean over every cell (69, 67, 69, 69)
    g = rgal_gain_table(df)
    # per seed: +3 and +1 points -> mean 2, std sqrt(2); published 47.53 - 43.87
    assert g.loc[("CIFAR-100", "W3A3", "gdfq+rgal"), "gain (points)"].startswith("2.00 ± 1.41")
    assert g.loc[("CIFAR-100", "W3A3", "gdfq+rgal"), "published gain"] == 3.66
    assert t.loc[("CIFAR-100", "W3A3", "gdfq"), "collapsed"] == 0
    # the teacher row counts teachers, not seeds: the seeds here share one (no key recorded: one teacher)
    assert t.loc[("CIFAR-100", "float", "teacher (float)"), "seeds"] == 1
    two = [dict(r, cell={**r["cell"], "teacher_key": f"t{r['cell']['seed']}"}) for r in rs]
    assert table12(dfq_frame(two)).loc[("CIFAR-100", "float", "teacher (float)"), "seeds"] == 2
    diverged = res("gdfq", 3, 2, 0.008)
    diverged["rows"]["gdfq"]["best_top1"] = 0.3864  # a diverged run: best 38.64 %, last 0.8 %
    t = table12(dfq_frame(rs + [diverged, res("gdfq", 3, 3, 0.20)]))  # 20 % of a 21 % best: not a collapse
    assert t.loc[("CIFAR-100", "W3A3", "gdfq"), "collapsed"] == 1
    assert t.loc[("CIFAR-100", "W3A3", "gdfq+rgal"), "collapsed"] == 0


@pytest.mark.parametrize("args,words", [
    (["--bits", "9"], ["--bits '9'", "2 to 8"]),
    (["--bits", "4x"], ["--bits", "WxA"]),
    (["--teacher", "lenet5", "--scenario", "cifar10"], ["no BatchNorm", "resnet20"]),
    (["--teacher", "resnet99"], ["unknown model", "resnet99"]),
    (["--methods", "gdfqq"], ["unknown dfq method", "gdfq"]),
    (["--student", "resnet20"], ["--student", "--task dfkd"]),
    (["--scenario", "mnist"], ["no data-free quantization setting", "cifar100"]),
])
def test_dfq_bad_input_gives_one_line_error(args, words, tiny_data, tmp_path):
    _one_line_error(in_process("--task", "dfq", "--scenario", "cifar10", "--profile", "smoke", "--data-root",
                               str(tiny_data), "--out", str(tmp_path / "o"), "--dry-run", *args), *words)


def test_bits_without_the_task_is_refused():
    _one_line_error(in_process("--bits", "4", "--dry-run"), "--bits", "--task dfq")
