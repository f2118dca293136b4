"""CIFAR ResNets: ResNet-18/34 as in the official PASS code (3x3 stride-1 stem, no max-pool, 4 stages of
BasicBlocks, 512-d embedding), the "reduced ResNet-18" of GEM / Avalanche (same topology, 20 base filters,
160-d embedding), and He et al.'s CIFAR ResNet-20/32 (3 stages of 16/32/64 filters, 64-d embedding)."""
from __future__ import annotations

from torch import nn

from benchmark.models.base import Backbone


class BasicBlock(nn.Module):
    expansion = 1
    relu_out = True  # False: no ReLU after the residual sum (UCIR removes the last block's, official LUCIR code)

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        # its own module for the activation after the sum: a quantized copy (benchmark.quantization) puts one
        # activation quantizer after each ReLU module, and the two activations need their own ranges
        self.relu_sum = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return self.relu_sum(out) if self.relu_out else out


class CifarResNet(Backbone):
    """Stages of BasicBlocks after a 3x3 stride-1 stem; ``widths`` gives each stage's filters."""

    def __init__(self, layers, widths, in_channels=3, mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)):
        super().__init__(mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, in_planes = [], widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(in_planes, w, stride if b == 0 else 1))
                in_planes = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.embed_dim = in_planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def body(self, x):
        out, blocks = self.stem(x), []
        for stage in self.stages:
            out = stage(out)
            blocks.append(out)
        return blocks


def resnet18(**kw):
    return CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], **kw)


def resnet34(**kw):
    return CifarResNet([3, 4, 6, 3], [64, 128, 256, 512], **kw)


def reduced_resnet18(**kw):
    return CifarResNet([2, 2, 2, 2], [20, 40, 80, 160], **kw)


def resnet20(**kw):
    return CifarResNet([3, 3, 3], [16, 32, 64], **kw)


def resnet32(**kw):
    return CifarResNet([5, 5, 5], [16, 32, 64], **kw)
