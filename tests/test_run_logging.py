"""Experiment loggers (``--log tensorboard wandb csv``) and the per-term loss recorder behind them: each plugin's
contribution booked under its name against hand-computed values, real cells logging every term to all three
back-ends, numbers unchanged by logging, a logger that raises never stopping a cell, and one-line errors for an
unknown logger or a missing library."""
import csv
import json
from pathlib import Path

import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmark.loss_terms import LossTermRecorder, default_loss_name, record_term
from conftest import SHARED_DATA, run_main
from test_cli import SMOKE, _one_line_error


class _Add(SupervisedPlugin):
    def __init__(self, value, name=None):
        super().__init__()
        self.value = value
        if name:
            self.loss_name = name

    def before_backward(self, strategy, **kwargs):
        strategy.loss = strategy.loss + self.value


class _InPlace(SupervisedPlugin):  # Avalanche's LwF / EWC write ``strategy.loss += penalty``
    def before_backward(self, strategy, **kwargs):
        strategy.loss += 0.5
        record_term(strategy, "inner", 7.0)


class _Silent(SupervisedPlugin):  # no before_backward of its own
    pass


class _Last(SupervisedPlugin):  # the suite's training plugin: books the total
    def before_backward(self, strategy, **kwargs):
        strategy.loss_terms.end_step(strategy)


class _Strategy:
    def __init__(self, plugins):
        self.plugins, self.loss = plugins, None
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.25)

    def step(self, criterion: float):
        self.loss = torch.tensor(criterion)
        for p in self.plugins:
            p.before_backward(self)


def test_recorder_books_every_plugin_contribution_per_epoch():
    last = _Last()
    s = _Strategy([_Silent(), _Add(2.0, "proto_aug"), _InPlace(), _Add(0.0, "unused"), last])
    rec = LossTermRecorder.attach(s, skip=(last,))
    s.step(1.0)
    s.step(3.0)
    # criterion: mean of 1 and 3; each plugin its own addition; total = criterion + 2 + 0.5; "unused" added 0 at
    # every step, so it is not booked; record_term's value beside the plugin terms; the step's learning rate
    assert rec.epoch_means() == pytest.approx({"criterion": 2.0, "proto_aug": 2.0, "in_place": 0.5, "inner": 7.0,
                                               "total": 4.5, "lr": 0.25})
    s.step(5.0)  # the next epoch starts from zero
    assert rec.epoch_means()["criterion"] == 5.0


def test_loss_names():
    from avalanche.training.plugins import EWCPlugin

    from strategies.rgal.triplet_plugin import TripletLossPlugin

    assert default_loss_name(EWCPlugin(1.0)) == "ewc"
    assert default_loss_name(_InPlace()) == "in_place"
    assert TripletLossPlugin.loss_name == "rgal_tri"
    assert default_loss_name(_Add(1.0, "x")) == "x"


def test_record_term_without_recorder_does_nothing():
    s = _Strategy([])
    record_term(s, "x", 1.0)
    assert not hasattr(s, "loss_terms")


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _matrices(out: Path) -> dict:
    return {json.loads(p.read_text())["cell"]["method"]: json.loads(p.read_text())["rows"]
            for p in out.rglob("result.json")}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """pass+rgal and ucir on the tiny data root: once with every logger, once without."""
    base = tmp_path_factory.mktemp("logged")
    args = [*SMOKE, "--methods", "pass+rgal", "ucir"]
    p = run_main(*args, "--out", str(base / "logged"), "--cache-dir", str(base / "cache"), "--log", "csv",
                 "tensorboard", "--log", "wandb")
    assert p.returncode == 0, p.stderr[-2000:]
    # its own cache: phase 0 is trained again, without loggers, so the comparison covers it too
    plain = run_main(*args, "--out", str(base / "plain"), "--cache-dir", str(base / "plain-cache"))
    assert plain.returncode == 0, plain.stderr[-2000:]
    return base, p


def test_logging_changes_no_number_and_no_key(logged):
    base, _ = logged
    plain, with_log = _matrices(base / "plain"), _matrices(base / "logged")
    assert plain == with_log and set(plain) == {"pass+rgal", "ucir"}
    assert sorted(p.parent.name for p in (base / "plain").rglob("result.json")) == \
        sorted(p.parent.name for p in (base / "logged").rglob("result.json"))


def test_csv_log_holds_every_loss_term_and_the_evaluation(logged):
    base, _ = logged
    (cell,) = [p.parent for p in (base / "logged").rglob("log.csv") if "pass+rgal" in p.parent.name]
    rows = _rows(cell / "log.csv")
    by_step: dict[int, dict] = {}
    for r in rows:
        if r["name"].startswith("train/"):
            by_step.setdefault(int(r["step"]), {})[r["name"][6:]] = float(r["value"])
    res = json.loads((cell / "result.json").read_text())
    recipe = res["cell"]["recipe"]
    epochs = recipe["base"]["epochs"] + 2 * recipe["inc"]["epochs"]
    assert sorted(by_step) == list(range(1, epochs + 1))  # one point per epoch of the cell, phases one after another
    assert "rgal_tri" not in by_step[1] and "feature_kd" not in by_step[1]  # phase 0: no old model
    later = by_step[epochs]  # a phase with an old model: PASS's terms, RGAL's L_tri and its prototype optimisation
    for term in ("criterion", "proto_aug", "feature_kd", "rgal_tri", "rgal_proto_ntri", "rgal_proto_adv",
                 "rgal_proto_oh", "rgal_proto_movement", "total", "lr"):
        assert term in later, sorted(later)
    # the back-propagated loss is the criterion plus the plugins' terms (the prototype optimisation moves samples,
    # its terms are not in the total)
    assert later["total"] == pytest.approx(later["criterion"] + later["proto_aug"] + later["feature_kd"]
                                           + later["rgal_tri"], rel=1e-6)
    assert later["lr"] == pytest.approx(recipe["inc"]["lr"])
    # after each phase: the accuracy matrix row and the seen accuracy, in %, as result.json has them
    evals = {(int(r["step"]), r["name"]): float(r["value"]) for r in rows if r["name"].startswith("eval/")}
    acc = res["rows"]["pass+rgal"]["acc"]
    for k, row in enumerate(acc):
        for j, v in enumerate(row[: k + 1]):
            assert evals[(k, f"eval/pass+rgal/acc_g{j}")] == pytest.approx(100 * v)
        assert evals[(k, "eval/pass+rgal/seen_acc")] == pytest.approx(100 * res["rows"]["pass+rgal"]["seen_acc"][k])
    assert (2, "eval/pass+rgal/forgetting_max") in evals
    ucir = [p.parent for p in (base / "logged").rglob("log.csv") if "ucir" in p.parent.name][0]
    names = {r["name"] for r in _rows(ucir / "log.csv")}
    assert {"train/ucir_less_forget", "train/ucir_margin_ranking"} <= names


def test_tensorboard_and_wandb_files(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base, _ = logged
    (cell,) = [p for p in (base / "logged").iterdir() if p.name.startswith("cifar10-p2-pass+rgal")]
    ea = EventAccumulator(str(cell / "tb"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train/rgal_tri", "train/total", "eval/pass+rgal/seen_acc"} <= tags
    csv_total = [float(r["value"]) for r in _rows(cell / "log.csv") if r["name"] == "train/total"]
    assert [e.value for e in ea.Scalars("train/total")] == pytest.approx(csv_total, rel=1e-6)
    (run_file,) = (cell / "wandb").glob("offline-run-*/run-*.wandb")  # offline: no network, no API key
    assert b"train/rgal_tri" in run_file.read_bytes()


def test_a_failing_logger_never_stops_a_cell(logged, tmp_path, monkeypatch):
    import benchmark.run_logging as rl

    class Broken:
        def log(self, scalars, step):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(rl, "_open", lambda *a, **k: Broken())
    base, _ = logged
    p = run_main(*SMOKE, "--methods", "pass+rgal", "--cache-dir", str(base / "plain-cache"),
                 "--out", str(tmp_path / "o"), "--log", "csv")
    assert p.returncode == 0, p.stderr[-2000:]
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning: the csv logger failed")]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], p.stderr
    assert _matrices(tmp_path / "o")["pass+rgal"] == _matrices(base / "plain")["pass+rgal"]


def test_unknown_logger_and_missing_library_are_one_line_errors(tmp_path, monkeypatch):
    import builtins

    p = run_main(*SMOKE, "--methods", "finetune", "--out", str(tmp_path / "o"), "--log", "mlflow")
    _one_line_error(p, "unknown logger 'mlflow'", "tensorboard, wandb, csv")
    real_import = builtins.__import__

    def no_wandb(name, *a, **k):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    p = run_main(*SMOKE, "--methods", "finetune", "--out", str(tmp_path / "o"), "--log", "wandb")
    _one_line_error(p, "--log wandb", "pip install -e .[wandb]")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not (SHARED_DATA / "mnist.npz").is_file(), reason="needs ../shared/data/mnist.npz")
def test_distillation_cell_logs_synthesis_student_and_accuracy(tmp_path):
    args = ["--task", "dfkd", "--scenario", "mnist", "--profile", "smoke", "--methods", "rgal", "--data-root",
            str(SHARED_DATA), "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    p = run_main(*args, "--out", str(tmp_path / "o"), "--log", "csv")
    assert p.returncode == 0, p.stderr[-2000:]
    plain = run_main(*args, "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr[-2000:]
    def numbers(out):  # accuracies, not the wall times beside them
        return {m: {r: [c["top1"] for c in v["curve"]] for r, v in rows.items()} for m, rows in _matrices(out).items()}

    assert numbers(tmp_path / "o") == numbers(tmp_path / "plain")  # logging changes no number
    (log,) = (tmp_path / "o").glob("mnist-rgal-*/log.csv")
    rows = _rows(log)
    res = json.loads((log.parent / "result.json").read_text())
    names = {r["name"] for r in rows}
    assert {"student/loss", "student/kd", "student/tri", "student/lr", "synthesis/loss_g",
            "throughput/synthesis_images_per_s", "throughput/student_images_per_s", "eval/top1"} <= names, names
    top1 = {int(r["step"]): float(r["value"]) for r in rows if r["name"] == "eval/top1"}
    assert top1 == {c["epoch"]: pytest.approx(100 * c["top1"]) for c in res["rows"]["rgal"]["curve"]}
    grad = [float(r["value"]) for r in rows if r["name"] == "student/grad_norm"]
    assert len(grad) == len(top1) and all(0 < g < float("inf") for g in grad)  # one epoch mean per epoch
