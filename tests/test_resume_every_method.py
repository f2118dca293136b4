"""Every registered method of both tasks, interrupted right after a checkpoint inside a later phase (incremental) or
an epoch (distillation) and run again, goes through the same states as an uninterrupted run: the sha256 of every
tensor of every checkpoint written after the resume (model, method state such as previous models and prototypes,
optimiser, random states) equals the uninterrupted run's, and so do the final numbers.

Runs on a tiny real data root (``conftest.write_tiny_datasets``: 8 images per class) so that all 27 methods fit in
the suite's budget; what is compared is the bookkeeping of resume, which does not depend on the data's size.  The
interruption is a ``KeyboardInterrupt`` raised just after the second checkpoint write (what ``kill -9`` leaves:
the checkpoint on disk and nothing after it; ``test_cli.py`` kills a real process)."""
import hashlib

import pytest
import torch

import baselines  # noqa: F401  (registers the methods)
import strategies  # noqa: F401
import strategies.dfkd  # noqa: F401
from benchmark import store
from benchmark.dfkd_runner import DFKDCellRun, make_dfkd_cells
from benchmark.methods import METHODS
from benchmark.runner import CellRun, make_cells
from strategies.dfkd import DFKD_METHODS

CPU = torch.device("cpu")


def tensor_digest(obj, h=None) -> str:
    """sha256 over every tensor in ``obj`` (nested dicts / lists), in order, with its path."""
    top = h is None
    h = h or hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        h.update(obj.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if obj.numel() else b"")
    elif isinstance(obj, dict):
        for k in obj:
            h.update(str(k).encode())
            tensor_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            tensor_digest(v, h)
    return h.hexdigest() if top else ""


class CheckpointSpy:
    """Records the digest of every ``checkpoint.pt`` written; optionally interrupts right after the ``kill_at``-th."""

    def __init__(self, monkeypatch, kill_at=None):
        self.digests, self.kill_at, self._save = [], kill_at, store.save_torch
        monkeypatch.setattr(store, "save_torch", self.save)

    def save(self, path, obj):
        self._save(path, obj)
        if path.name == "checkpoint.pt":
            self.digests.append(tensor_digest(obj))
            if self.kill_at is not None and len(self.digests) == self.kill_at:
                raise KeyboardInterrupt


def kill_and_resume(make_run, tmp_path, monkeypatch, kill_points):
    """The uninterrupted result and the digests of its checkpoints; then, for each of ``kill_points``, a run
    interrupted right after that checkpoint and run again: (its result, digests of the killed + resumed runs)."""
    with monkeypatch.context() as m:
        spy = CheckpointSpy(m)
        ref = make_run(tmp_path / "ref").run()
    # joint trains once, on every class, in the last phase: its later checkpoints are fewer
    kill_points = [k for k in kill_points if k < len(spy.digests)]
    assert kill_points, f"only {len(spy.digests)} checkpoints: nothing after the kill"
    resumed_runs = []
    for kill_at in kill_points:
        out = tmp_path / f"killed-{kill_at}"
        with monkeypatch.context() as m:
            killed = CheckpointSpy(m, kill_at)
            run = make_run(out)
            with pytest.raises(KeyboardInterrupt):
                run.run()
        assert run.status() == "partial"
        with monkeypatch.context() as m:
            resumed = CheckpointSpy(m)
            res = make_run(out).run()
        resumed_runs.append((res, killed.digests + resumed.digests))
    return ref, spy.digests, resumed_runs


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("resume-cache")  # phase-0 models and teachers, trained once per family


# exemplar methods keep 2 of the 8 images of a class; MUC's auxiliary data: noise (CIFAR-10's own classes
# would leak)
CIL_PARAMS = {"muc": {"aux": "noise"}, **{m: {"memory_per_class": 2} for m in ("icarl", "ucir", "eeil")}}


@pytest.mark.parametrize("method", METHODS.names())
def test_incremental_method_resumes_through_the_same_states(method, tiny_data, shared_cache, tmp_path, monkeypatch):
    # cifar10: 4 / 3 / 3 classes; later phases 3 epochs, so that the kill (after the checkpoint of phase 1's first
    # epoch) is followed by an epoch checkpoint, a phase boundary and a whole phase with the restored state
    (cell,) = make_cells(scenarios=["cifar10"], phases=[2], methods=[method], seeds=[0], profile="smoke",
                         inc_epochs=3, base_classes=4, data_root=tiny_data,
                         method_params={method: CIL_PARAMS[method]} if method in CIL_PARAMS else {})
    # checkpoints: 1 after phase 0, 2-3 after phase 1's first two epochs, 4 at its end, 5-6 inside phase 2.  Killed
    # after 2: the rest of a phase from its epoch checkpoint; after 4: a whole phase with the state rebuilt at the
    # boundary (previous model, prototypes, exemplars, which the next phase uses from its first step)
    ref, a, resumed = kill_and_resume(lambda out: CellRun(cell, out, shared_cache, CPU, tiny_data, progress=False),
                                      tmp_path, monkeypatch, kill_points=(2, 4))
    for res, b in resumed:
        assert b == a
        assert res["rows"] == ref["rows"] and res.get("extra") == ref.get("extra")
    if method in ("ucir", "eeil", "icarl"):  # the table note follows the memory actually kept
        assert ref["memory"] == "2 exemplars per class (growing)"
    if method == "ucir":
        assert set(ref["rows"]) == {"ucir-cnn", "ucir-nme"}
    if method == "muc":  # side classifiers trained after every phase, on the auxiliary data
        assert [s["phase"] for s in ref["extra"]["stage3"]] == [0, 1, 2]


# "teacher" evaluates the teacher and trains nothing: no checkpoint to interrupt (its cell is covered by the others,
# which train and cache the same teacher)
DFKD = [m for m in DFKD_METHODS.names() if m != "teacher"]


@pytest.mark.parametrize("method", DFKD)
def test_distillation_method_resumes_through_the_same_states(method, tiny_data, shared_cache, tmp_path,
                                                             monkeypatch):
    if not (tiny_data / "mnist.npz").is_file():
        pytest.skip("needs ../shared/data/mnist.npz")
    (cell,) = make_dfkd_cells(scenarios=["mnist"], methods=[method], seeds=[0], profile="smoke", epochs=3,
                              data_root=tiny_data)
    monkeypatch.setattr(DFKDCellRun, "checkpoint_seconds", -1.0)  # a checkpoint after every round
    ref, a, ((res, b),) = kill_and_resume(lambda out: DFKDCellRun(cell, out, shared_cache, CPU, tiny_data,
                                                                  progress=False), tmp_path, monkeypatch, (2,))
    assert b == a

    def numbers(r):  # the accuracy curves without their wall times
        return {k: [{e: v for e, v in c.items() if e != "train_seconds"} for c in row["curve"]]
                for k, row in r["rows"].items()}

    assert numbers(res) == numbers(ref) and res.get("extra") == ref.get("extra")
