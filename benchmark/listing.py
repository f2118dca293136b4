"""``--list``: every scenario, method, model and profile the suite knows (``print_list``), or one of them in full
(``print_one NAME``: a method's declared hyper-parameters a line each, with type, default, help and source, and
what each profile sets instead).  Reads the registries it is given; the CLI fills them first.
"""
from __future__ import annotations


def _wrapped(text: str, indent: int = 19, width: int = 118) -> str:
    import textwrap

    return textwrap.fill(text, width, initial_indent=" " * indent, subsequent_indent=" " * indent,
                         break_on_hyphens=False)


def _set_line(defaults: dict) -> str:
    """The ``--list`` lines showing a method's parameters as ``--set`` would take them (defaults as JSON values),
    wrapped to the terminal's usual width."""
    import json

    return _wrapped("--set " + " ".join(f"{k}={json.dumps(v)}" for k, v in defaults.items()))


def print_one(name: str, registries: dict) -> None:
    """``--list NAME``: everything the suite knows of one scenario, method, model or profile, a parameter a line."""
    from benchmark.errors import BenchError

    found = [(kind, reg.entry(name)) for kind, reg in registries.items() if name in reg]
    if not found:
        raise BenchError(f"--list {name}: no scenario, method, model or profile of that name; `--list` shows them "
                         f"all")
    for kind, e in found:
        print(f"{name} ({kind})")
        print(_wrapped(e.description, 2))
        extra = e.extra
        if "published" in extra:
            pub = extra["published"]
            pub = ", ".join(f"{k}: {v}" for k, v in pub.items() if v) if isinstance(pub, dict) else pub
            print(f"  published as: {pub or '- (no published row)'}")
        if "rows" in extra:
            print(f"  rows: {', '.join(extra['rows'])}; memory: {extra['memory']}")
        if extra.get("params"):
            print(f"  hyper-parameters (--set {name}.KEY=VALUE, JSON values): default, help [source]:")
            for spec in extra["params"].values():
                print(_param_line(spec))
            if kind == "method (cil)":
                _print_profile_overrides(name, extra["defaults"])


def _param_line(spec) -> str:
    """One ``--list NAME`` entry: a parameter's name, default, type, allowed values, help and source."""
    import json

    facts = [spec.type]
    if spec.choices:
        facts.append("one of " + "/".join(map(str, spec.choices)))
    elif spec.type in ("int", "float") and spec.high is not None:
        facts.append(f"in [{'-inf' if spec.low is None else f'{spec.low:g}'}, {spec.high:g}]")
    if spec.key_name != spec.name:
        facts.append(f"old name {spec.key_name}")
    if spec.key_neutral:
        facts.append("key-neutral")
    source = f" [{spec.source}]" if spec.source else ""
    return _wrapped(f"{spec.name} = {json.dumps(spec.recorded(spec.default))} ({'; '.join(facts)}): {spec.help}"
                    f"{source}", 4)


def _print_profile_overrides(name: str, defaults: dict) -> None:
    """The values the class-incremental profiles set instead of the defaults (``Profile.method_params``)."""
    import json

    from benchmark.profiles import PROFILES

    for e in PROFILES.entries():
        prof = PROFILES.get(e.name)
        over = {k: v for k, v in prof.method_params.get("*", {}).items() if k in defaults}
        over.update(prof.method_params.get(name, {}))
        if over:
            print(f"  profile {e.name} sets: " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in over.items()))


def print_list(registries: dict):
    from benchmark.dfkd_profiles import dfkd_profile, dfkd_scenarios

    regs = registries
    print("scenarios:")
    for e in regs["scenario"].entries():
        print(f"  {e.name:16s} {e.description}")
    print("methods (cil):               [name in published.csv] rows / memory   (--list NAME: one of them in full)")
    for e in regs["method (cil)"].entries():
        pub = e.extra["published"]
        pub = ", ".join(v for v in pub.values() if v) if isinstance(pub, dict) else pub  # rows without one: none
        print(f"  {e.name:16s} [{pub or '-'}] rows {', '.join(e.extra['rows'])}; memory {e.extra['memory']}")
        print(_wrapped(e.description))
        if e.extra["defaults"]:
            print(_set_line(e.extra["defaults"]))
    print("methods (dfkd, --task dfkd):  [name in published.csv]")
    for e in regs["method (dfkd, --task dfkd)"].entries():
        print(f"  {e.name:16s} [{e.extra['published'] or '-'}]{' reference row' if e.extra['reference'] else ''}")
        print(_wrapped(e.description))
        if e.extra["defaults"]:
            print(_set_line(e.extra["defaults"]))
    print("dfkd default pairs (teacher -> student) per profile:")
    for sc in dfkd_scenarios():
        pairs = []
        for prof in ("paper", "cpu", "mini", "smoke"):
            try:
                pr = dfkd_profile(prof, sc)
                pairs.append(f"{prof} {pr.teacher} -> {pr.student}")
            except Exception:  # noqa: BLE001 - a profile without this scenario
                pass
        print(f"  {sc}")
        print(_wrapped("; ".join(pairs)))
    print("methods (dfq, --task dfq):    [name in published.csv] schedule family")
    for e in regs["method (dfq, --task dfq)"].entries():
        print(f"  {e.name:16s} [{e.extra['published'] or '-'}] {e.extra['family']}")
        print(_wrapped(e.description))
        if e.extra["defaults"]:
            print(_set_line(e.extra["defaults"]))
    print("dfq teachers per profile (the student is the teacher quantized, --bits W[xA]):")
    from benchmark.dfq_profiles import dfq_profile, dfq_profiles_of, dfq_scenarios

    for sc in dfq_scenarios():
        print(f"  {sc}")
        print(_wrapped("; ".join(f"{prof} {dfq_profile(prof, sc).teacher}" for prof in dfq_profiles_of(sc))))
    print("models:")
    for e in regs["model"].entries():
        print(f"  {e.name:16s} {e.description}")
    print("profiles:")
    for e in regs["profile"].entries():
        print(f"  {e.name}")
        print(_wrapped(e.description))
