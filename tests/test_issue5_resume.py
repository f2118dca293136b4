"""UCIR, LwM, MUC and EEIL carry state between phases (exemplar memory, previous model, class means, frozen classifier
rows; EEIL's balanced fine-tuning after the phase): a run interrupted inside a later phase resumes from its
checkpoint to the same numbers as an uninterrupted run (embedded cifar100-mini, ResNet-20 so that UCIR's last-ReLU
removal and LwM's Grad-CAM layer are exercised; MUC's side classifiers live in the network but not in the shared
phase-0 cache, which the second run loads)."""
import pytest
import torch

import baselines  # noqa: F401  (registers the methods)
from benchmark.runner import CellRun, make_cells
from benchmark.training import SuiteTrainingPlugin


@pytest.mark.parametrize("method", ["ucir", "lwm", "muc", "eeil"])
def test_interrupted_in_a_later_phase_resumes_to_the_same_numbers(method, tmp_path, monkeypatch):
    memory = {method: {"memory_per_class": 3}} if method in ("ucir", "eeil") else {}
    (cell,) = make_cells(scenarios=["cifar100-mini"], phases=[1], methods=[method], seeds=[0], profile="smoke",
                         epochs=2, method_params=memory)
    cpu, cache = torch.device("cpu"), tmp_path / "cache"  # phase 0 trained once, then loaded (tested elsewhere)
    ref = CellRun(cell, tmp_path / "a", cache, cpu, progress=False).run()
    assert ref["timings"]["phase0_cache"].startswith("miss")  # UCIR: its own family; LwM: the softmax-CE family
    if method in ("ucir", "eeil"):  # the table note follows the memory actually kept
        assert ref["memory"] == "3 exemplars per class (growing)"
    if method == "ucir":
        assert set(ref["rows"]) == {"ucir-cnn", "ucir-nme"}
    if method == "muc":  # side classifiers trained after both phases, on the embedded CIFAR-10 subset
        assert [s["phase"] for s in ref["extra"]["stage3"]] == [0, 1]

    orig = SuiteTrainingPlugin.after_training_epoch

    def flaky(self, strategy, **kwargs):
        orig(self, strategy, **kwargs)  # the runner saves the checkpoint here (after epoch 1 of 2)
        if self.phase == 1 and self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(SuiteTrainingPlugin, "after_training_epoch", flaky)
    run = CellRun(cell, tmp_path / "b", cache, cpu, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    ck = torch.load(run.ckpt_path, weights_only=True)
    assert ck["state"]["phases_done"] == 1 and ck["training"]["epoch"] == 1
    monkeypatch.undo()
    res = CellRun(cell, tmp_path / "b", cache, cpu, progress=False).run()
    assert res["rows"] == ref["rows"]


def test_ucir_keeping_the_last_relu_gets_its_own_cached_phase0(tmp_path, capsys):
    """The last block's ReLU changes the phase-0 network: ``remove_last_relu=false`` must not load (or fill) the
    phase 0 cached by default UCIR cells."""
    import run_benchmark

    base = ["--methods", "ucir", "--dry-run", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert run_benchmark.main(base) == 0
    assert "phase-0 cache: miss (ucir)" in capsys.readouterr().out
    assert run_benchmark.main(base + ["--set", "ucir.remove_last_relu=false"]) == 0
    assert "phase-0 cache: miss (ucir-remove_last_relu=False)" in capsys.readouterr().out
