"""The dead-unit count of benchmarks/dead_units.py on a LeNet-5-half whose units are killed by hand."""
import importlib.util
from pathlib import Path

import torch

from benchmark.models import build_model

spec = importlib.util.spec_from_file_location("dead_units", Path(__file__).parents[1] / "benchmarks" / "dead_units.py")
dead_units_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dead_units_mod)


def test_dead_units_counts_channels_and_hidden_units_that_never_fire():
    torch.manual_seed(0)
    net = build_model("lenet5_half", 10, 1, (0.1307,), (0.3081,))
    x = torch.randint(0, 256, (64, 1, 32, 32), dtype=torch.uint8)
    assert dead_units_mod.dead_units(net, x)["conv1"] == "0/3"
    with torch.no_grad():
        net.backbone.conv1[0].bias[1] = -1e4  # channel 1 of conv1 can no longer fire
        net.backbone.fc[0].weight[:5].zero_()
        net.backbone.fc[0].bias[:5] = -1.0  # 5 of the 42 hidden units output ReLU(-1) = 0 for every input
    counts = dead_units_mod.dead_units(net, x)
    assert counts["conv1"] == "1/3"
    assert int(counts["fc"].split("/")[0]) >= 5 and counts["fc"].endswith("/42")
    assert set(counts) == {"conv1", "conv2", "conv3", "fc"}
