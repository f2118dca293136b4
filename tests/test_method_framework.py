"""What the framework fixes for every method: the seeds of its random streams (``benchmark.seeds``, the values the
committed cells used) and the declarations registration demands."""
import re

import pytest

from benchmark.seeds import EPOCH_STREAMS, STREAMS, derive_epoch_seed, derive_seed
from conftest import ROOT


@pytest.mark.parametrize("stream, offset", [("phase", 0), ("prototype_features", 500), ("prototype_noise", 700),
                                            ("balanced_finetuning", 800), ("class_balanced_finetuning", 900),
                                            ("side_classifiers", 900), ("rgal_prototypes", 900),
                                            ("rgal_triplets", 950)])
def test_phase_streams_keep_the_values_of_the_committed_cells(stream, offset):
    # seed 2, phase 3: 2 * 1000 + 3 + the stream's offset
    assert derive_seed(2, stream, 3) == 2003 + offset
    assert derive_seed(0, stream, 0) == offset


def test_epoch_streams_keep_the_values_of_the_committed_cells():
    # seed 1, phase 4, epoch 5: 1e6 + 4 * 1000 + 2 * 5 (+1 for the picks)
    assert derive_epoch_seed(1, "rgal_pool", 4, 5) == 1_004_010
    assert derive_epoch_seed(1, "rgal_pool_picks", 4, 5) == 1_004_011
    assert set(EPOCH_STREAMS) == {"rgal_pool", "rgal_pool_picks"} and len(STREAMS) == 8


def test_no_module_derives_a_seed_by_its_own_arithmetic():
    """A new stream goes into ``benchmark.seeds.STREAMS``: an offset written at a call site is how two streams
    ended up sharing numbers unnoticed."""
    pattern = re.compile(r"manual_seed\([^)]*\*\s*1_?000|seed_everything\([^)]*\*\s*1_?000")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for d in ("benchmark", "strategies", "baselines")
                 for p in (ROOT / d).rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert not offenders, offenders


def test_a_method_must_name_its_phase0_family():
    """No default: a method training phase 0 with another loss would otherwise load someone else's cached phase 0."""
    from benchmark.methods import METHODS, CILMethod, register_method

    with pytest.raises(TypeError, match="must set phase0_family"):
        register_method("toy-no-family")(type("Toy", (CILMethod,), {}))
    assert "toy-no-family" not in METHODS


def test_the_framework_imports_no_method_package():
    """Data flows one way: ``benchmark/`` defines the contracts and registries, ``strategies/`` and ``baselines/``
    implement and register methods; no module of ``benchmark`` imports them, not even inside a function."""
    import ast

    offenders = []
    for p in (ROOT / "benchmark").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{p.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("strategies", "baselines")]
    assert not offenders, offenders
    # the class-incremental reports do not import the distillation ones (which build on them)
    tree = ast.parse((ROOT / "benchmark" / "reports.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "benchmark.dfkd_reports"]


def test_a_method_package_is_discovered_and_a_new_module_registers_itself(tmp_path, monkeypatch):
    """``import_submodules`` imports every module of a package: adding a method is adding one file."""
    import sys

    from benchmark.methods import METHODS
    from benchmark.registry import import_submodules

    pkg = tmp_path / "toy_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "toy.py").write_text(
        "from benchmark.methods import CILMethod, register_method\n\n\n"
        "@register_method('toy-one-file', description='a method added as one file')\n"
        "class Toy(CILMethod):\n    phase0_family = 'ce'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import toy_methods

        import_submodules("toy_methods", toy_methods.__path__)
        assert "toy-one-file" in METHODS and METHODS.entry("toy-one-file").description == "a method added as one file"
    finally:
        METHODS._entries.pop("toy-one-file", None)
        for m in [m for m in sys.modules if m.startswith("toy_methods")]:
            del sys.modules[m]


def _readme_method_block() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if '@register_method("l2"' in b]
    return block


def test_the_readme_recipe_adds_a_method_that_trains_resumes_and_reports(tmp_path, monkeypatch, tiny_data):
    """The README's "Add a method" block, written as a new module of a package, registers ``l2`` and runs through
    real cells: phase 0 in finetune's family, two later phases, and killed after a checkpoint inside phase 1 and at
    its end, it resumes through the same states (its previous weights travel as method state)."""
    import sys

    import torch

    from benchmark.methods import METHODS
    from benchmark.registry import import_submodules
    from benchmark.runner import CellRun, make_cells
    from test_resume_every_method import kill_and_resume

    pkg = tmp_path / "readme_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "l2.py").write_text(_readme_method_block())
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import readme_methods

        import_submodules("readme_methods", readme_methods.__path__)
        assert METHODS.get("l2").phase0_family_for({}) == "ce"
        (cell,) = make_cells(scenarios=["cifar10"], phases=[2], methods=["l2"], seeds=[0], profile="smoke",
                             inc_epochs=3, data_root=tiny_data, base_classes=4,
                             method_params={"l2": {"l2_weight": 0.5}})
        ref, a, resumed = kill_and_resume(
            lambda out: CellRun(cell, out, tmp_path / "cache", torch.device("cpu"), tiny_data, progress=False),
            tmp_path, monkeypatch, kill_points=(2, 4))
        acc = ref["rows"]["l2"]["acc"]
        assert len(acc) == 3 and acc[2][2] is not None and ref["cell"]["method_params"]["l2_weight"] == 0.5
        for res, b in resumed:
            assert b == a and res["rows"] == ref["rows"]
    finally:
        METHODS._entries.pop("l2", None)
        for m in [m for m in sys.modules if m.startswith("readme_methods")]:
            del sys.modules[m]
