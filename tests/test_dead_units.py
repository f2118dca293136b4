"""The dead-unit count of benchmarks/dead_units.py: hand-made units that fire in one chunk only, units killed by
hand in LeNet-5-half, and a ReLU module applied twice in one forward."""
import importlib.util
from pathlib import Path

import torch
from torch import nn

from benchmark.models import build_model

spec = importlib.util.spec_from_file_location("dead_units", Path(__file__).parents[1] / "benchmarks" / "dead_units.py")
dead_units_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dead_units_mod)
dead_units = dead_units_mod.dead_units


class _Toy(nn.Module):
    """backbone: Linear(1 -> 2) with weights (+1, -1), then one ReLU applied twice; unit 0 fires for x > 0 and unit 1
    for x < 0."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.lin = nn.Linear(1, 2)
        self.backbone.relu = nn.ReLU()
        with torch.no_grad():
            self.backbone.lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.backbone.lin.bias.zero_()

    def forward(self, x):
        h = self.backbone.relu(self.backbone.lin(x))
        return self.backbone.relu(h - 1.5)  # the second call: a unit fires only where the first gave more than 1.5


def test_a_unit_firing_in_one_chunk_only_is_alive_and_each_call_of_a_reused_relu_counts_on_its_own():
    net = _Toy()
    x = torch.tensor([[1.0], [-1.0], [2.0]])
    # chunk 1: x = 1 fires unit 0 only; chunk 2: x = -1 fires unit 1 only; chunk 3: x = 2 fires unit 0 (2 > 1.5)
    assert dead_units(net, x, chunk=1) == {"relu#0": "0/2", "relu#1": "1/2"}
    assert dead_units(net, x[:1], chunk=1) == {"relu#0": "1/2", "relu#1": "2/2"}


def test_units_killed_by_hand_in_lenet5_half_are_counted_exactly():
    torch.manual_seed(0)
    net = build_model("lenet5_half", 10, 1, (0.1307,), (0.3081,))
    x = torch.randint(0, 256, (64, 1, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        net.backbone.conv1[0].bias[1] = -1e4  # channel 1 of conv1 can no longer fire
        net.backbone.fc[0].weight[:5].zero_()
        net.backbone.fc[0].bias[:5] = -1.0  # these 5 hidden units output ReLU(-1) = 0 for every input
        net.backbone.fc[0].bias[5:] = 1e4  # and the other 37 fire for every input
    assert dead_units(net, x, chunk=16) == {"conv1.1": "1/3", "conv2.1": dead_units(net, x)["conv2.1"],
                                            "conv3.1": dead_units(net, x)["conv3.1"], "fc.1": "5/42"}
