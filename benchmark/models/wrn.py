"""Wide ResNets (Zagoruyko & Komodakis) as used by CMI / RGAL for CIFAR distillation: pre-activation blocks,
depth 6n+4, widths 16k/32k/64k, final BN-ReLU, global pooling (embedding 64k).

``body`` returns the three stage outputs as the official ``wresnet.py`` of CMI / RGAL returns its block features:
the last one *before* the final BN-ReLU, which ``pool_last`` applies before pooling.  RGAL's released code takes
that raw block-3 output for its generator-side triplet and its block-wise CD loss (fidelity harness)."""
from __future__ import annotations

from torch import nn

from benchmark.models.base import Backbone


class WideBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = in_planes == planes and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, 0, bias=False)

    def forward(self, x):
        o = self.relu1(self.bn1(x))
        y = self.conv1(o)
        y = self.relu2(self.bn2(y))
        if self.dropout > 0:
            y = nn.functional.dropout(y, p=self.dropout, training=self.training)
        y = self.conv2(y)
        return y + (x if self.equal else self.shortcut(o))


class WideResNet(Backbone):
    def __init__(self, depth, widen, in_channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)):
        super().__init__(mean, std)
        assert (depth - 4) % 6 == 0, "WRN depth must be 6n+4"
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, in_planes = [], widths[0]
        for i, w in enumerate(widths[1:]):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[WideBlock(in_planes if b == 0 else w, w, stride if b == 0 else 1)
                                          for b in range(n)]))
            in_planes = w
        self.stages = nn.ModuleList(stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.embed_dim = in_planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def body(self, x):
        out, blocks = self.conv1(x), []
        for stage in self.stages:
            out = stage(out)
            blocks.append(out)
        return blocks

    def pool_last(self, last):
        return super().pool_last(self.relu(self.bn(last)))


def wrn16_1(**kw):
    return WideResNet(16, 1, **kw)


def wrn16_2(**kw):
    return WideResNet(16, 2, **kw)


def wrn40_1(**kw):
    return WideResNet(40, 1, **kw)


def wrn40_2(**kw):
    return WideResNet(40, 2, **kw)
