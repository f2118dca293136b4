"""Declared hyper-parameters (``benchmark.hparams``): the one check ``--set`` applies, the declarations of every
registered method, and the key names that keep committed cells finished after the common renames."""
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmark.errors import BenchError
from benchmark.hparams import complete, hp, param_specs, record, resolve_name
from benchmark.methods import METHODS
from benchmark.dfkd_methods import DFKD_METHODS
from benchmark.dfq_methods import DFQ_METHODS

RESULTS = Path(__file__).resolve().parents[1] / "results"


@dataclass(frozen=True)
class _Toy:
    weight: float = hp(1.0, "a weight", "toy")
    steps: int = hp(10, "steps", "toy", low=1)
    kind: str = hp("a", "a choice", "toy", choices=("a", "b"))
    flag: bool = hp(False, "a switch", "toy")
    size: int | None = hp(None, "an optional count", "toy")
    share: float = hp(0.5, "a fraction", "toy", high=1.0)
    betas: tuple[float, float] = hp([0.5, 0.9], "two numbers", "toy")
    temperature: float = hp(2.0, "a renamed one", "toy", key_name="T")
    late: float = hp(0.0, "added later", "toy", key_neutral=True)


SPECS = param_specs(_Toy)


@pytest.mark.parametrize("name,value,expected", [
    ("weight", 1, 1.0), ("weight", 0.25, 0.25), ("steps", 3, 3), ("steps", 4.0, 4), ("kind", "b", "b"),
    ("flag", True, True), ("size", None, None), ("size", 64, 64), ("share", 1, 1.0),
    ("betas", [0.9, 0.99], [0.9, 0.99]),
])
def test_a_value_is_taken_as_its_declared_type(name, value, expected):
    got = SPECS[name].check(value, f"{name}=...")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("name,value,message", [
    ("weight", "high", "weight takes a number like 1.0"),
    ("weight", True, "weight takes a number"),
    ("weight", -1.0, "weight must be a finite number >= 0, like 1.0"),
    ("weight", float("nan"), "finite number >= 0"),
    ("steps", 2.5, "steps takes an integer like 10"),
    ("steps", 0, "steps must be a finite number >= 1"),
    ("kind", "c", "kind must be one of a, b"),
    ("flag", 1, "flag takes true or false like false"),
    ("size", 0, "size takes null (the method's own choice) or a whole number >= 1"),
    ("size", 2.5, "size takes null"),
    ("share", 1.5, "share must be a finite number within [0, 1]"),
    ("betas", [0.5, "x"], "betas takes a list of numbers like [0.5, 0.9]"),
    ("betas", [0.5, -0.1], "betas must be a finite number >= 0"),
])
def test_a_bad_value_is_a_one_line_error_naming_the_parameter(name, value, message):
    with pytest.raises(BenchError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        SPECS[name].check(value, f"{name}=...")


def test_a_cell_records_key_names_and_leaves_out_key_neutral_defaults():
    params = {n: s.recorded(s.default) for n, s in SPECS.items()}
    rec = record(SPECS, params)
    assert "T" in rec and "temperature" not in rec and "late" not in rec and rec["betas"] == [0.5, 0.9]
    assert complete(SPECS, rec) == params
    assert record(SPECS, {**params, "late": 0.5})["late"] == 0.5
    assert resolve_name(SPECS, "T") == resolve_name(SPECS, "temperature") == "temperature"
    assert resolve_name(SPECS, "nope") is None


def test_declarations_are_refused_when_incomplete():
    @dataclass(frozen=True)
    class NoHelp:
        x: float = 1.0

    with pytest.raises(TypeError, match="must be declared with hp"):
        param_specs(NoHelp)
    with pytest.raises(TypeError, match="declared twice"):
        param_specs(_Toy, _Toy)
    with pytest.raises(TypeError, match="not a declared hyper-parameter"):
        param_specs(_Toy, defaults={"nope": 1})


REGISTRIES = {"cil": METHODS, "dfkd": DFKD_METHODS, "dfq": DFQ_METHODS}


@pytest.mark.parametrize("task,name", [(t, e.name) for t, reg in REGISTRIES.items() for e in reg.entries()])
def test_every_registered_parameter_is_declared_with_help_source_and_a_default_it_accepts(task, name):
    for spec in REGISTRIES[task].entry(name).extra["params"].values():
        assert spec.help and spec.source, f"{name}.{spec.name}: help and source are required"
        value = spec.recorded(spec.default)
        assert spec.check(value, f"{name}.{spec.name}") == value  # the default passes its own check


def _committed():
    for path in sorted(RESULTS.rglob("result.json")):
        res = json.loads(path.read_text())
        cell = res.get("cell", {})
        if "method_params" in cell and cell.get("method") in REGISTRIES[cell.get("task", "cil")]:
            yield path, cell


@pytest.mark.parametrize("path,cell", list(_committed()), ids=lambda v: v.parent.name if isinstance(v, Path) else "")
def test_every_committed_cell_keeps_its_recorded_parameters_and_so_its_key(path, cell):
    """A renamed parameter is recorded under its old (key) name: the recorded dict of a committed cell goes through
    the declared names and back unchanged, and ``--set`` with each recorded name gives back the recorded value."""
    from benchmark.hparams import parse_settings

    reg = REGISTRIES[cell.get("task", "cil")]
    specs = reg.entry(cell["method"]).extra["params"]
    recorded = cell["method_params"]
    assert all(resolve_name(specs, k) for k in recorded), f"{path}: undeclared {set(recorded) - set(specs)}"
    assert record(specs, complete(specs, recorded)) == recorded
    sets = [f"{cell['method']}.{k}={json.dumps(v)}" for k, v in recorded.items()]
    parsed = parse_settings(sets, [cell["method"]], reg).get(cell["method"], {})
    assert record(specs, {**complete(specs, {}), **parsed}) == recorded


def test_old_and_new_names_make_the_same_cell():
    from benchmark.runner import make_cells
    from benchmark.hparams import parse_settings

    def key(*sets):
        mp = parse_settings(list(sets), ["lwm", "lwf"])
        return [c.key for c in make_cells(scenarios=["cifar100-mini"], phases=[2], methods=["lwm", "lwf"],
                                          seeds=[0], profile="smoke", method_params=mp)]

    assert key("lwm.T=3", "lwf.alpha=0.5") == key("lwm.temperature=3", "lwf.kd_weight=0.5")
    assert key("lwm.T=3") != key()


def test_the_readme_names_every_renamed_parameter_with_its_old_name():
    from benchmark.hparams import alias_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    pairs = alias_table(REGISTRIES.values())
    assert len(pairs) >= 20  # T alone is renamed in 12 methods
    for method, old, new in pairs:
        assert f"`{old}`" in readme and f"`{new}`" in readme, (method, old, new)
