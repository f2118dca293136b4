"""The command line end to end: bad input, reports, phase-0 cache, kill and resume.  Runs train on a tiny real data
root (``conftest.write_tiny_datasets``: CIFAR-10, 8 images per class, 4 classes in phase 0 and 3 in each of two
later phases), which exercises the same code as the embedded scenario in a tenth of the time; errors that need no
training are checked in-process (``run_main``) rather than in a new interpreter."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, cli, run_main, write_tiny_datasets

TINY = write_tiny_datasets(Path(__import__("tempfile").mkdtemp(prefix="tiny-cli-")))
ON_TINY = ["--scenario", "cifar10", "--data-root", str(TINY), "--base-classes", "4"]
SMOKE = ["--profile", "smoke", "--phases", "2", "--no-progress", *ON_TINY]


def _one_line_error(p, *words):
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("args,words", [
    (["--scenario", "cifar1000"], ["unknown scenario", "cifar100-mini"]),
    (["--methods", "lwf", "nope"], ["unknown method", "'nope'"]),
    (["--profile", "gpu"], ["unknown profile", "paper"]),
    (["--phases", "60"], ["do not fit", "at most 50"]),
    (["--scenario", "mnist", "--phases", "3"], ["do not split"]),
    (["--epochs", "0"], ["--epochs", "below 1"]),
    (["--lr", "-1"], ["--lr", "positive finite"]),
    (["--seeds", "abc"], ["--seeds", "not an integer"]),
    (["--set", ".temperature=3"], ["method before '.'"]),
    (["--methods", "pass", "--set", "pass.temperature=NaN"], ["temperature", "finite number >= 0"]),
    (["--methods", "pass", "--set", "pass.proto_samples=-3"], ["proto_samples", "whole number >= 1"]),  # default null
    (["--methods", "pass", "--set", "pass.foo=1"], ["pass has no parameter 'foo'", "temperature"]),
    (["--methods", "finetune", "--memory-total", "500"], ["--memory-total", "none of --methods"]),
    (["--phases", "10", "--base-classes", "100"], ["leaves no class", "at most 90 base classes"]),
    (["--task", "dfkd", "--methods", "dfad", "--rgal-variant", "released"], ["--rgal-variant", "add rgal"]),
    (["--task", "dfkd", "--methods", "nosuch", "--rgal-variant", "released"], ["unknown", "'nosuch'"]),
    (["reprot", "results"], ["unknown command 'reprot'", "did you mean 'report'"]),
])
def test_bad_input_gives_one_line_error(args, words, tmp_path):
    _one_line_error(run_main(*args, "--out", str(tmp_path / "o"), "--dry-run"), *words)


def test_bad_class_order_seed_is_a_usage_error():
    p = cli("--class-order-seed", "abc", "--dry-run")  # argparse's own exit: a new interpreter
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--class-order-seed: 'abc' is neither an integer seed nor 'natural'" in p.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("scenario,layout", [("cifar100", "cifar-100-python/"),
                                             ("tinyimagenet", "tiny-imagenet-200/ (wnids.txt")])
def test_missing_dataset_without_network_names_both_fixes(scenario, layout, tmp_path):
    p = run_main("--scenario", scenario, "--data-root", str(tmp_path / "empty"), "--dry-run")  # offline: conftest
    _one_line_error(p, scenario, "--data-root", "BENCH_DATA", layout, "not downloaded (BENCH_OFFLINE is set)",
                    "unset BENCH_OFFLINE")


def test_unwritable_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions: use a path below a file instead
        (tmp_path / "file").write_text("x")
        ro = tmp_path / "file" / "sub"
    _one_line_error(run_main(*SMOKE, "--methods", "finetune", "--out", str(ro)), "not writable", "--out")


def _results(folder: Path) -> dict:
    out = {}
    for p in folder.rglob("result.json"):
        r = json.loads(p.read_text())
        out[r["cell"]["method"]] = r
    return out


def _run(out: Path, cache: Path, *args) -> dict:
    """``run_benchmark.py *args`` into ``out`` with the phase-0 cache ``cache``, offline; its results by method."""
    p = run_main(*args, "--out", str(out), "--cache-dir", str(cache))
    assert p.returncode == 0, p.stderr[-2000:]
    return _results(out)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    # a new interpreter: the results record the command line that made them
    p = cli(*SMOKE, "--methods", "finetune", "lwf", "ewc", "pass", "pass+rgal", "ssre", "--out", str(out / "run"),
            "--cache-dir", str(out / "cache"))
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_run_writes_complete_results_and_reports(smoke_run):
    out, p = smoke_run
    res = _results(out / "run")
    assert set(res) == {"finetune", "lwf", "ewc", "pass", "pass+rgal", "ssre"}
    r = res["lwf"]
    assert len(r["rows"]["lwf"]["acc"]) == 3 and r["rows"]["lwf"]["acc"][0][1] is None
    assert r["group_counts"] == [8, 6, 6]  # test images of each group: 2 per class, 4, 3 and 3 classes
    for k in ("torch", "avalanche-lib", "python", "machine"):
        assert r["versions"][k]
    assert "cores" in r["versions"]["machine"]
    assert "run_benchmark.py" in r["command"] and r["cell"]["recipe"]["base"]["epochs"] == 1
    md = (out / "run" / "report" / "tables.md").read_text()
    assert "average accuracy" in md and "stand-in" not in md and "profile smoke" in md
    assert (out / "run" / "report" / "seen_accuracy.png").stat().st_size > 1000
    assert "avg acc % \u2191" in p.stdout and "profile smoke: a pipeline demo" in p.stdout  # summary table
    prov = (out / "run" / "report" / "provenance.md").read_text()  # command, commit, wall time, machine per cell
    assert prov.count("run_benchmark.py") == 6 and r["versions"]["machine"] in prov
    assert not list((out / "run").rglob("checkpoint.pt"))  # finished cells keep result.json, not checkpoints


def test_phase0_is_shared_within_a_family(smoke_run):
    out, p = smoke_run
    assert p.stdout.count("phase-0 cache hit") == 4 and p.stdout.count("phase-0 cache miss") == 2  # the run says so
    res = _results(out / "run")
    caches = {m: r["timings"]["phase0_cache"] for m, r in res.items()}
    assert caches["finetune"].startswith("miss") and caches["lwf"].startswith("hit")
    assert caches["ewc"].startswith("hit")
    # same phase-0 model, so the same phase-0 accuracy row
    assert res["lwf"]["rows"]["lwf"]["acc"][0] == res["finetune"]["rows"]["finetune"]["acc"][0]
    # the PASS family shares PASS's phase 0: RGAL and SSRE load it (SSRE evaluates it after folding BatchNorm,
    # which computes the same function up to float rounding)
    assert caches["pass"].startswith("miss")
    assert caches["pass+rgal"].startswith("hit") and caches["ssre"].startswith("hit")
    assert res["pass+rgal"]["rows"]["pass+rgal"]["acc"][0] == res["pass"]["rows"]["pass"]["acc"][0]
    assert res["ssre"]["rows"]["ssre"]["acc"][0][0] == pytest.approx(res["pass"]["rows"]["pass"]["acc"][0][0], abs=0.01)
    assert len(res["pass+rgal"]["extra"]["prototype_movement_per_phase"]) == 2
    md = (out / "run" / "report" / "tables.md").read_text()
    assert "Table 17" in md and "prototype movement" in md


def test_cached_phase0_gives_the_same_numbers_as_training_it(smoke_run, tmp_path):
    out, _ = smoke_run
    # warm: lwf loaded finetune's phase 0; pass trained its own.  Cold run: lwf trains phase 0, pass loads a
    # phase 0 cached by a first pass run (prototypes come from a seeded generator of their own)
    cold = _run(tmp_path / "cold_run", tmp_path / "cold", *SMOKE, "--methods", "lwf")["lwf"]
    warm = _results(out / "run")["lwf"]
    assert cold["timings"]["phase0_cache"].startswith("miss")
    assert cold["rows"]["lwf"]["acc"] == warm["rows"]["lwf"]["acc"]
    shutil.copytree(out / "cache", tmp_path / "cache2")
    hit = _run(tmp_path / "warm_pass", tmp_path / "cache2", *SMOKE, "--methods", "pass")["pass"]
    trained = _results(out / "run")["pass"]
    assert hit["timings"]["phase0_cache"].startswith("hit") and trained["timings"]["phase0_cache"].startswith("miss")
    assert hit["rows"]["pass"]["acc"] == trained["rows"]["pass"]["acc"]


def test_rgal_plugins_leave_phase0_alone(smoke_run, tmp_path):
    """pass+rgal training phase 0 itself (empty cache) gives PASS's phase 0: the triplet loss and the paired batches
    act from phase 1 on, so whichever method of the family fills the shared cache, it holds the same model."""
    out, _ = smoke_run
    # one incremental phase is enough: phase 0 (4 classes) does not depend on how the rest is split
    cold = _run(tmp_path / "cold_rgal", tmp_path / "cold", "--profile", "smoke", "--phases", "1", "--no-progress",
                *ON_TINY, "--methods", "pass+rgal")["pass+rgal"]
    trained = _results(out / "run")["pass"]
    assert cold["timings"]["phase0_cache"].startswith("miss") and trained["timings"]["phase0_cache"].startswith("miss")
    assert cold["rows"]["pass+rgal"]["acc"][0][0] == trained["rows"]["pass"]["acc"][0][0]


def test_a_results_folder_carries_its_phase0_and_a_fresh_cache_restores_it(smoke_run, tmp_path):
    """The first cell of a family to train (or load) phase 0 keeps a copy of the cache entry, ``phase0.pt``; on a
    machine without the cache the cells of the same --out folder restore it instead of retraining, to the same
    numbers; a corrupt copy is a one-line error.  The restoring cell has 6 later phases instead of 2: phase 0 is
    still the one of the 2-phase cells."""
    out, _ = smoke_run
    carried = sorted((out / "run").glob("*/phase0.pt"))
    # one copy per family (finetune's, shared by lwf and ewc; pass's, shared by pass+rgal and ssre), in the cell
    # that trained it, byte-identical to the cache entry
    assert sorted(p.parent.name.split("-p2-")[1].split("-s0-")[0] for p in carried) == ["finetune", "pass"], carried
    cached = {p.read_bytes() for p in (out / "cache" / "phase0").glob("*.pt")}
    assert {p.read_bytes() for p in carried} == cached
    folder = tmp_path / "run"
    shutil.copytree(out / "run", folder)
    args = ("--profile", "smoke", "--phases", "6", "--methods", "finetune", "--no-progress", *ON_TINY)
    dry = run_main(*args, "--out", str(folder), "--dry-run", "--cache-dir", str(tmp_path / "empty"))
    assert dry.returncode == 0 and "restored from" in dry.stdout and "no training" in dry.stdout, dry.stdout
    _run(folder, tmp_path / "empty", *args)
    (res,) = folder.glob("*-p6-finetune-*/result.json")
    r = json.loads(res.read_text())
    src = next(p for p in carried if "finetune" in p.parent.name)
    assert r["timings"]["phase0_cache"] == f"miss, restored from {src.parent.name}/phase0.pt"
    assert r["rows"]["finetune"]["acc"][0][0] == _results(out / "run")["finetune"]["rows"]["finetune"]["acc"][0][0]
    assert [p.read_bytes() for p in (tmp_path / "empty" / "phase0").glob("*.pt")] == [src.read_bytes()]
    assert len(list(folder.glob("*/phase0.pt"))) == 2  # the restoring cell adds no third copy
    bad = tmp_path / "bad"
    shutil.copytree(out / "run", bad)
    (bad / src.parent.name / "phase0.pt").write_bytes(b"not a checkpoint")
    one = ("--profile", "smoke", "--phases", "1", "--methods", "finetune", "--no-progress", *ON_TINY)  # same phase 0
    p = run_main(*one, "--out", str(bad), "--cache-dir", str(tmp_path / "empty2"))
    _one_line_error(p, "phase-0 weights", "corrupt", "delete the file")
    # with the cache at hand the corrupt copy is not needed: the run goes on, and the cell that loads phase 0 from
    # the cache writes a good copy, since no readable one is carried
    _run(bad, tmp_path / "empty", *one)
    (fresh,) = bad.glob("*-p1-finetune-*/phase0.pt")
    assert fresh.read_bytes() == src.read_bytes()


def test_a_shared_results_folder_gives_its_phase0_to_a_run_in_any_other_folder(smoke_run, tmp_path, monkeypatch):
    """A phase 0 carried by a cell of a shared results folder (the committed ``results/`` or one named in
    $BENCH_SHARED_MODELS) is found by its key from a run into an unrelated --out with an empty cache: restored, not
    trained, to the same numbers; the new folder carries its own copy; a folder named there without the entry changes
    nothing, nor does a damaged file there."""
    import os

    from benchmark import store

    out, _ = smoke_run
    assert store.REPOSITORY / "results" in store.shared_model_roots()  # the committed results are always searched
    src = next(p for p in sorted((out / "run").glob("*/phase0.pt")) if "finetune" in p.parent.name)
    args = ("--profile", "smoke", "--phases", "1", "--methods", "finetune", "--no-progress", *ON_TINY)  # same phase 0
    monkeypatch.setenv(store.SHARED_MODELS_ENV, str(tmp_path / "nothing-here"))
    dry = run_main(*args, "--out", str(tmp_path / "a"), "--dry-run", "--cache-dir", str(tmp_path / "c0"))
    assert dry.returncode == 0 and "phase-0 cache: miss (ce)" in dry.stdout, dry.stdout
    damaged = tmp_path / "damaged" / "some-cell"  # a damaged copy in a shared folder is passed over, not an error
    damaged.mkdir(parents=True)
    (damaged / "phase0.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setenv(store.SHARED_MODELS_ENV, os.pathsep.join([str(damaged.parent), str(out / "run")]))
    dry = run_main(*args, "--out", str(tmp_path / "a"), "--dry-run", "--cache-dir", str(tmp_path / "c1"))
    assert f"restored from run/{src.parent.name}/phase0.pt, no training" in dry.stdout, dry.stdout
    r = _run(tmp_path / "a", tmp_path / "c1", *args)["finetune"]
    assert r["timings"]["phase0_cache"] == f"miss, restored from run/{src.parent.name}/phase0.pt"
    assert r["rows"]["finetune"]["acc"][0][0] == _results(out / "run")["finetune"]["rows"]["finetune"]["acc"][0][0]
    assert [p.read_bytes() for p in (tmp_path / "a").glob("*/phase0.pt")] == [src.read_bytes()]


def test_finished_cells_are_skipped_and_dry_run_reports_them(smoke_run):
    out, _ = smoke_run
    p = run_main(*SMOKE, "--methods", "finetune", "lwf", "--out", str(out / "run"), "--dry-run", "--cache-dir",
                 str(out / "cache"))
    assert p.returncode == 0 and p.stdout.count("finished") == 2


def test_report_action_rebuilds_tables_from_results_alone(smoke_run, tmp_path):
    out, _ = smoke_run
    shutil.copytree(out / "run", tmp_path / "copy", ignore=shutil.ignore_patterns("checkpoint.pt", "report"))
    p = run_main("report", str(tmp_path / "copy"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "copy" / "report" / "table15_forgetting_max.tex").is_file()


def test_report_merges_several_folders_counting_a_shared_cell_once(smoke_run, tmp_path):
    out, _ = smoke_run
    cells = sorted(p.parent for p in (out / "run").rglob("result.json"))
    a, b = tmp_path / "a", tmp_path / "b"
    for i, cell in enumerate(cells):  # first cell in both folders, the others split between them
        for dest in ([a, b] if i == 0 else [a if i % 2 else b]):
            shutil.copytree(cell, dest / cell.name, ignore=shutil.ignore_patterns("checkpoint.pt"))
    p = run_main("report", str(a), str(b))
    assert p.returncode != 0 and "--out" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_main("report", str(a), str(b), "--out", str(tmp_path / "merged"))
    assert p.returncode == 0, p.stderr
    import pandas as pd

    df = pd.read_csv(tmp_path / "merged" / "results_long.csv")
    one = pd.read_csv(out / "run" / "report" / "results_long.csv")
    assert len(df) == len(one) and sorted(df["method"]) == sorted(one["method"])


def test_corrupt_checkpoint_gives_one_line_error_and_keeps_results(smoke_run, tmp_path):
    out, _ = smoke_run
    shutil.copytree(out / "run", tmp_path / "r")
    n_results = len(list((tmp_path / "r").rglob("result.json")))
    res_dir = next(p.parent for p in (tmp_path / "r").rglob("result.json") if "lwf" in p.parent.name)
    (res_dir / "result.json").unlink()
    (res_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    p = run_main(*SMOKE, "--methods", "finetune", "lwf", "--out", str(tmp_path / "r"), "--cache-dir",
                 str(out / "cache"))
    _one_line_error(p, "corrupt", "checkpoint.pt", "delete")
    assert len(list((tmp_path / "r").rglob("result.json"))) == n_results - 1  # the other cells' results are intact


def test_phase0_cache_of_another_shape_gives_one_line_error(smoke_run, tmp_path):
    out, _ = smoke_run
    import torch

    shutil.copytree(out / "cache", tmp_path / "cache")
    for f in (tmp_path / "cache" / "phase0").glob("*.pt"):  # right key, wrong tensors (a head for other classes)
        obj = torch.load(f, weights_only=True)
        obj["model"]["head.weight"] = obj["model"]["head.weight"][:3]
        torch.save(obj, f)
    p = run_main(*SMOKE, "--methods", "finetune", "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache"))
    _one_line_error(p, "phase-0 cache", "does not fit", "head.weight", "delete it")


def test_killed_run_resumes_to_the_same_numbers(tmp_path):
    # 10 epochs of one batch (~0.5 s each): long enough to be killed inside phase 0
    args = ["--profile", "smoke", "--phases", "1", "--epochs", "10", "--methods", "lwf", "--no-progress", *ON_TINY]
    env = dict(os.environ, BENCH_CACHE=str(tmp_path / "c1"), BENCH_OFFLINE="1")
    ref = cli(*args, "--out", str(tmp_path / "ref"), env={"BENCH_CACHE": str(tmp_path / "c0")})
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_benchmark.py"), *args, "--out", str(run)], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(run.rglob("checkpoint.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)  # mid-phase: the first checkpoint is written after epoch 1 of phase 0
    proc.wait()
    ck = __import__("torch").load(next(run.rglob("checkpoint.pt")), weights_only=True)
    assert ck["training"] is not None and ck["state"]["phases_done"] == 0
    dry = cli(*args, "--out", str(run), "--dry-run", env={"BENCH_CACHE": str(tmp_path / "c1")})
    assert "partial 0/2 phases" in dry.stdout, dry.stdout  # --dry-run says how far a partial cell got
    again = cli(*args, "--out", str(run), env={"BENCH_CACHE": str(tmp_path / "c1")})
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = _results(tmp_path / "ref")["lwf"], _results(run)["lwf"]
    assert a["rows"] == b["rows"]


def test_ssre_killed_mid_phase_after_reparameterisation_resumes_to_the_same_numbers(tmp_path):
    """SSRE changes the network's structure after phase 0: a checkpoint taken inside phase 1 must restore it."""
    import torch

    args = ["--profile", "smoke", "--phases", "1", "--epochs", "10", "--methods", "ssre", "--no-progress", *ON_TINY]
    env = {"BENCH_CACHE": str(tmp_path / "c"), "BENCH_OFFLINE": "1"}
    ref = cli(*args, "--out", str(tmp_path / "ref"), env=env)  # trains and caches phase 0
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_benchmark.py"), *args, "--out", str(run)],
                            env=dict(os.environ, **env), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, ck = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        f = next(run.rglob("checkpoint.pt"), None)
        if f is not None:
            try:
                ck = torch.load(f, weights_only=True)
            except Exception:  # noqa: BLE001 - being replaced right now
                ck = None
            if ck and ck["state"]["phases_done"] == 1 and ck["training"] is not None:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ck["method"]["converted"] and any("adapter" in k for k in ck["model"])
    again = cli(*args, "--out", str(run), env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _results(tmp_path / "ref")["ssre"]["rows"] == _results(run)["ssre"]["rows"]


def test_a_method_or_seed_given_twice_is_one_cell(tmp_path):
    p = run_main("--methods", "finetune", "finetune", "--seeds", "0", "0", "--out", str(tmp_path / "o"), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "1 cell, predicted" in p.stdout
    header, row = p.stdout.splitlines()[:2]  # the plan has column headers over its rows
    assert header.split()[:4] == ["cell", "folder", "status", "time"] and row.startswith("finetune cifar100-mini 10 "
                                                                                          "phases seed 0")


def test_list_shows_one_method_in_full_and_every_line_fits_a_terminal():
    one = run_main("--list", "pass+rgal")
    assert one.returncode == 0, one.stderr
    assert "rgal_margin = 0.2" in one.stdout and "published as: PASS+RGAL" in one.stdout
    assert "profile cpu sets: paired_anchor_fraction = 0.5" in one.stdout  # what the profile changes, too
    assert "method (dfkd" in run_main("--list", "rgal").stdout
    full = run_main("--list")
    assert max(map(len, full.stdout.splitlines())) <= 118 and " rgal_steps=10 " in full.stdout
    _one_line_error(run_main("--list", "pass-rgal"), "no scenario, method, model or profile", "--list")


def test_report_names_unreadable_results_and_an_unwritable_out(tmp_path):
    good = next((ROOT / "results").glob("cil-baselines-cpu/*/result.json"))
    (tmp_path / "d" / "good").mkdir(parents=True)
    (tmp_path / "d" / "good" / "result.json").write_text(good.read_text())
    (tmp_path / "d" / "cut").mkdir()
    (tmp_path / "d" / "cut" / "result.json").write_text('{"cell": {"task": ')  # a truncated write
    p = run_main("report", str(tmp_path / "d"))
    assert p.returncode == 0, p.stderr  # the readable cell is reported ...
    warn = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "cut/result.json" in warn[0] and "run its cell again" in warn[0]  # ... the other named
    (tmp_path / "file").write_text("x")
    _one_line_error(run_main("report", str(tmp_path / "d"), "--out", str(tmp_path / "file" / "rep")), "not writable",
                    "--out")
    (tmp_path / "d" / "good" / "result.json").unlink()
    _one_line_error(run_main("report", str(tmp_path / "d")), "none readable", "cut/result.json")


def test_help_shows_the_report_command_and_points_inside_the_repository(tmp_path):
    p = run_main("--help")
    assert p.returncode == 0
    assert "run_benchmark.py report DIR" in p.stdout and "report --help" in p.stdout and "README.md" in p.stdout
    assert "CONVENTIONS.md" not in p.stdout  # a file outside the repository
    two = run_main("--methods", "finetune", "lwf", "--out", str(tmp_path / "o"), "--dry-run")
    assert "2 cells, predicted" in two.stdout


def _planned(out):
    """The cell folders a --dry-run output lists (the key is in each name)."""
    return sorted(next(w for w in ln.split() if w.count("-") >= 3) for ln in out.splitlines() if "phase-0 cache" in ln)


def test_a_config_file_plans_the_same_cells_as_the_flags_and_typed_flags_override_it(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"scenario: cifar10\ndata-root: {TINY}\nbase-classes: 4\nphases: [1, 2]\nprofile: smoke\n"
                   "methods: [pass, pass+rgal]\nseeds: [0, 1]\nset: {pass+rgal.rgal_steps: 20, temperature: 0.2}\n")
    base = ("--scenario", "cifar10", *ON_TINY[2:], "--phases", "1", "2", "--profile", "smoke", "--methods", "pass",
            "pass+rgal")
    flags = (*base, "--seeds", "0", "1", "--set", "pass+rgal.rgal_steps=20", "--set", "temperature=0.2")
    out = ("--out", str(tmp_path / "o"), "--dry-run")
    by_file, by_flags = run_main("--config", str(cfg), *out), run_main(*flags, *out)
    assert by_file.returncode == 0 and by_flags.returncode == 0, by_file.stderr + by_flags.stderr
    assert _planned(by_file.stdout) == _planned(by_flags.stdout) and len(_planned(by_file.stdout)) == 8
    # a typed flag wins over the file; a typed --set over the file's value of the same key
    one = run_main("--config", str(cfg), "--seeds", "1", "--set", "pass+rgal.rgal_steps=5", *out)
    same = run_main(*base, "--seeds", "1", "--set", "pass+rgal.rgal_steps=5", "--set", "temperature=0.2", *out)
    assert _planned(one.stdout) == _planned(same.stdout) and len(_planned(one.stdout)) == 4
    # --dump-config prints the resolved configuration as a file that plans the same cells again
    dumped = run_main("--config", str(cfg), "--seeds", "1", "--dump-config")
    assert dumped.returncode == 0 and "rgal_steps: 20" in dumped.stdout and "seeds: [1]" in dumped.stdout
    (tmp_path / "dumped.yaml").write_text(dumped.stdout)
    again = run_main("--config", str(tmp_path / "dumped.yaml"), *out)
    assert _planned(again.stdout) == _planned(run_main("--config", str(cfg), "--seeds", "1", *out).stdout)


def test_a_bad_config_file_is_one_line(tmp_path):
    (tmp_path / "k.yaml").write_text("scenarios: cifar100\n")
    _one_line_error(run_main("--config", str(tmp_path / "k.yaml"), "--dry-run"), "unknown key 'scenarios'",
                    "scenario")
    (tmp_path / "y.yaml").write_text("methods: [pass, pass+rgal\n")
    _one_line_error(run_main("--config", str(tmp_path / "y.yaml"), "--dry-run"), "not valid YAML or JSON")
    _one_line_error(run_main("--config", str(tmp_path / "none.yaml"), "--dry-run"), "cannot read it")
    (tmp_path / "l.yaml").write_text("- pass\n")
    _one_line_error(run_main("--config", str(tmp_path / "l.yaml"), "--dry-run"), "expected a mapping")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_sweep_configs_parse_and_write_into_their_results_folder(path):
    import run_benchmark

    args = run_benchmark.parse_args(["--config", str(path)])
    assert args.out == f"results/{path.stem}" and (ROOT / args.out).is_dir() and args.methods and args.seeds
