"""UCIR's own phase-0 family.  (Kill-and-resume of UCIR, LwM, MUC, EEIL and every other method:
``test_resume_every_method.py``.)"""

import baselines  # noqa: F401  (registers the methods)


def test_ucir_keeping_the_last_relu_gets_its_own_cached_phase0(tmp_path, capsys):
    """The last block's ReLU changes the phase-0 network: ``remove_last_relu=false`` must not load (or fill) the
    phase 0 cached by default UCIR cells."""
    import run_benchmark

    base = ["--methods", "ucir", "--dry-run", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert run_benchmark.main(base) == 0
    assert "phase-0 cache: miss (ucir)" in capsys.readouterr().out
    assert run_benchmark.main(base + ["--set", "ucir.remove_last_relu=false"]) == 0
    assert "phase-0 cache: miss (ucir-remove_last_relu=False)" in capsys.readouterr().out
