"""The README's plugin example ("RGAL plugins in your own Avalanche strategy") runs as printed: the block is read
from README.md and executed, so the documentation cannot drift from the code."""
import re

import torch

from conftest import ROOT


def test_readme_plugin_example_runs_and_learns_prototypes():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### RGAL plugins in your own Avalanche strategy"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(code, "README.md (plugin example)", "exec"), ns)  # noqa: S102 - the README's own code
    bank, rgal_g, sc = ns["bank"], ns["rgal"][0], ns["sc"]
    assert len(bank) == sc.n_used_classes  # a prototype for every class of both experiences
    assert len(rgal_g.movement) == 1 and rgal_g.movement[0] > 0  # L'_g moved the old prototypes in experience 1
    assert torch.isfinite(ns["strategy"].loss).item()
