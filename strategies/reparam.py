"""SSRE's structural re-parameterisation (Zhu et al., CVPR 2022; official zhukaii/SSRE ``resnet18_no1.py`` and
``Trainer_cvpr.py``):

* ``fold_batchnorm`` -- every (convolution, BatchNorm) pair of a CIFAR ResNet becomes one convolution with a bias:
  ``W' = W * gamma / sqrt(var + eps)``, ``b' = beta + (b - mean) * gamma / sqrt(var + eps)`` (the official code folds
  once, when the phase-0 model is loaded; its network has no BatchNorm afterwards).  Exact for BatchNorm in eval mode.
* ``AdaptedConv`` -- a 3x3 convolution with a parallel 1x1 adapter of the same stride, zero-initialised
  (``y = conv(x) + adapter(x)``), on both 3x3 convolutions of every residual block (not the stem, not the 1x1
  shortcuts: as the official ``conv_block``).
* ``merge_adapters`` -- after a phase, each adapter is zero-padded to 3x3 and added to its kernel, then reset to zero
  (the official ``afterTrain``); the network computes the same function before and after.
* ``to_ssre`` -- fold + adapters on a ``CifarResNet`` backbone, and the classifier cut to PASS's unrotated rows
  (``::4``), which SSRE keeps from the rotation-trained phase 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchError
from benchmark.models.base import SlicedLinear


@torch.no_grad()
def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased convolution computing ``bn(conv(x))`` with ``bn`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True).to(conv.weight.device)
    out.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    b0 = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    out.bias.copy_(bn.bias + (b0 - bn.running_mean) * scale)
    return out


class AdaptedConv(nn.Module):
    """``conv(x) + adapter(x)`` with a zero-initialised 1x1 adapter (SSRE's parallel adapter)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.groups != 1:
            raise ValueError("SSRE adapters go beside 3x3 convolutions with padding 1")
        self.conv = conv
        self.adapter = nn.Conv2d(conv.in_channels, conv.out_channels, 1, conv.stride, 0, bias=False)
        self.adapter.to(conv.weight.device)
        nn.init.zeros_(self.adapter.weight)

    def forward(self, x):
        return self.conv(x) + self.adapter(x)

    @torch.no_grad()
    def merge(self) -> None:
        self.conv.weight.add_(F.pad(self.adapter.weight, [1, 1, 1, 1]))
        self.adapter.weight.zero_()


def fold_batchnorm(backbone: nn.Module) -> None:
    """Folds every BatchNorm of a ``CifarResNet`` into the convolution before it (in place)."""
    from benchmark.models.resnet_cifar import BasicBlock, CifarResNet

    if not isinstance(backbone, CifarResNet):
        raise BenchError(f"SSRE needs a CIFAR ResNet backbone (resnet18/34/20/32, reduced_resnet18), not "
                         f"{type(backbone).__name__}; pick one with --model")
    backbone.stem[0], backbone.stem[1] = folded_conv(backbone.stem[0], backbone.stem[1]), nn.Identity()
    for m in backbone.modules():
        if isinstance(m, BasicBlock):
            m.conv1, m.bn1 = folded_conv(m.conv1, m.bn1), nn.Identity()
            m.conv2, m.bn2 = folded_conv(m.conv2, m.bn2), nn.Identity()
            if len(m.shortcut):
                m.shortcut[0], m.shortcut[1] = folded_conv(m.shortcut[0], m.shortcut[1]), nn.Identity()


def add_adapters(backbone: nn.Module) -> None:
    from benchmark.models.resnet_cifar import BasicBlock

    for m in backbone.modules():
        if isinstance(m, BasicBlock):
            m.conv1, m.conv2 = AdaptedConv(m.conv1), AdaptedConv(m.conv2)


def adapters(module: nn.Module) -> list[AdaptedConv]:
    return [m for m in module.modules() if isinstance(m, AdaptedConv)]


def merge_adapters(module: nn.Module) -> None:
    for m in adapters(module):
        m.merge()


def unrotated_head(head: SlicedLinear, outputs_per_class: int = 4) -> SlicedLinear:
    """PASS's classifier (4 rows per class) cut to the unrotated rows ``::4``."""
    new = SlicedLinear(head.in_features, head.out_features // outputs_per_class).to(head.weight.device)
    with torch.no_grad():
        new.weight.copy_(head.weight[::outputs_per_class])
        new.bias.copy_(head.bias[::outputs_per_class])
    return new


def to_ssre(net: nn.Module, outputs_per_class: int = 4) -> None:
    """In place: BatchNorm folded, adapters added, classifier cut to one row per class; only adapters and the
    classifier stay trainable."""
    fold_batchnorm(net.backbone)
    add_adapters(net.backbone)
    net.head = unrotated_head(net.head, outputs_per_class)
    net.num_classes = net.head.out_features
    for name, p in net.named_parameters():
        p.requires_grad_("adapter" in name or name.startswith("head."))
