"""Sweeps kept in a file: ``--config FILE`` (YAML or JSON) holds any command-line flag and any ``--set`` value, and
``--dump-config`` prints a command's resolved configuration as such a file.

A file is turned into the command-line arguments it stands for, placed before the ones typed, so a flag on the
command line overrides the file (argparse keeps the last value of an option; ``--set`` values of the command line
come after the file's and win for the same key).  The cells are then planned from the parsed arguments exactly as
without a file: the same sweep through a file or through flags gives the same cells and keys.

    scenario: cifar100
    phases: [5, 10, 20]
    methods: [pass, pass+rgal]
    seeds: [0, 1, 2]
    set: {pass+rgal.rgal_steps: 20}
"""
from __future__ import annotations

import json
from pathlib import Path

from benchmark.errors import BenchError

# options that are not part of a sweep's configuration (what to do, not what to compute)
NOT_CONFIG = ("config", "dump_config", "dry_run", "list", "no_progress", "defaults", "help")


def read_config(path: str | Path) -> dict:
    """The mapping in ``path`` (YAML, of which JSON is a subset), or a one-line ``BenchError``."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as e:
        raise BenchError(f"--config {p}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise BenchError(f"--config {p}: not valid YAML or JSON{at}; fix the file (e.g. `methods: [pass, pass+rgal]`)"
                         ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"--config {p}: expected a mapping of flags (e.g. `scenario: cifar100`), got a "
                         f"{type(data).__name__}")
    return data


def config_to_argv(data: dict, options: dict[str, object], source: str) -> list[str]:
    """Command-line tokens for ``data``; ``options``: dest -> the parser's action, to refuse unknown keys and to
    write flags (``store_true``) and lists (``nargs``) as the parser takes them."""
    argv = []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest in ("set", "settings"):
            if not isinstance(value, dict):
                raise BenchError(f"--config {source}: `set` must map [METHOD.]KEY to a value, e.g. "
                                 f"`set: {{pass+rgal.rgal_steps: 20}}`")
            for k, v in value.items():
                argv += ["--set", f"{k}={json.dumps(v)}"]
            continue
        if dest not in options or dest in NOT_CONFIG:
            known = ", ".join(sorted(d.replace("_", "-") for d in options if d not in NOT_CONFIG))
            raise BenchError(f"--config {source}: unknown key {key!r}; known: {known}, set")
        flag, action = "--" + dest.replace("_", "-"), options[dest]
        if getattr(action, "nargs", None) == 0:  # store_true
            if value is True:
                argv.append(flag)
            elif value not in (False, None):
                raise BenchError(f"--config {source}: {key} is a switch; write true or false, not {value!r}")
            continue
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        argv += [flag, *(str(v) for v in values)]
    return argv


def expand_config(argv: list[str], options: dict[str, object]) -> list[str]:
    """``argv`` with every ``--config FILE`` replaced by the file's arguments, moved in front of the typed ones."""
    files, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--config" or a.startswith("--config="):
            if a == "--config":
                if i + 1 >= len(argv):
                    raise BenchError("--config needs a file: --config sweep.yaml")
                files.append(argv[i + 1])
                i += 2
                continue
            files.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    out = []
    for f in files:
        out += config_to_argv(read_config(f), options, f)
    return out + rest


def dump_config(args, parser_defaults: dict) -> str:
    """The resolved configuration of parsed ``args`` as YAML: every option that differs from its default, and the
    ``--set`` values as ``set``."""
    import yaml

    out: dict[str, object] = {}
    for dest, value in vars(args).items():
        if dest in NOT_CONFIG or dest == "settings" or value == parser_defaults.get(dest):
            continue
        if dest == "per_class" and isinstance(value, tuple):  # --per-class takes TRAIN/TEST as one word
            value = f"{value[0]}/{value[1]}"
        out[dest.replace("_", "-")] = list(value) if isinstance(value, tuple) else value
    if args.settings:
        sets = {}
        for item in args.settings:
            k, _, raw = item.partition("=")
            try:
                sets[k] = json.loads(raw)
            except ValueError:
                sets[k] = raw
        out["set"] = sets
    return yaml.safe_dump(out, sort_keys=False, default_flow_style=None)
