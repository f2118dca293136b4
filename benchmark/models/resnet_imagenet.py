"""ImageNet ResNet-18 (He et al.; torchvision's layout: 7x7 stride-2 stem, max-pool, 4 stages of BasicBlocks,
512-d embedding), the teacher and quantized student of the RGAL paper's Table 13 (IntraQ on ImageNet).

Built from torchvision's own ``ResNet`` with one change to its ``BasicBlock``: the ReLU after the residual sum is its
own module (``relu_sum``) instead of a second call of ``relu``.  The data-free quantization task puts one
activation quantizer after every ReLU module (``benchmark.quantization``), and the two activations of a block need
their own ranges (ZeroQ's ``quantize_model``, which GDFQ and IntraQ use, wraps pytorchcv's ResNet, whose blocks
have separate activations too).  ReLU modules hold no parameters, so the state dict is torchvision's with the
suite's prefixes: ``torchvision_state`` maps a torchvision checkpoint (e.g. ``resnet18-f37072fd.pth``) onto it.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from benchmark.errors import BenchError
from benchmark.models.base import Backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(tv_resnet.BasicBlock):
    """torchvision's block with its own module for the ReLU after the sum."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu_sum = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu_sum(self.bn2(self.conv2(out)) + identity)


class ImageNetResNet(Backbone):
    """torchvision's ResNet body under the suite's ``Backbone`` interface (its modules keep torchvision's names)."""

    def __init__(self, layers, in_channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__(mean, std)
        if in_channels != 3:
            raise BenchError(f"resnet18_imagenet takes RGB images and the data has {in_channels} channel(s); choose "
                             f"a model for it (e.g. lenet5 for MNIST)")
        tv = tv_resnet.ResNet(BasicBlock, layers)  # torchvision's initialisation
        self.conv1, self.bn1, self.relu, self.maxpool = tv.conv1, tv.bn1, tv.relu, tv.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = tv.layer1, tv.layer2, tv.layer3, tv.layer4
        self.embed_dim = 512 * BasicBlock.expansion

    def gradcam_layer(self) -> nn.Module:
        return self.layer4

    def body(self, x):
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        blocks = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = stage(out)
            blocks.append(out)
        return blocks


def resnet18_imagenet(**kw):
    return ImageNetResNet([2, 2, 2, 2], **kw)


def torchvision_state(state: dict, own: dict) -> dict | None:
    """A torchvision ResNet ``state_dict`` (``fc.*`` and bare module names) as the suite's ``Net`` state (``head.*``,
    ``backbone.*``; the input normalisation taken from ``own``, the suite model's state); None when ``state`` is not
    in torchvision's naming."""
    if "fc.weight" not in state or "head.weight" not in own:
        return None
    mapped = {("head." + k[3:]) if k.startswith("fc.") else "backbone." + k: v for k, v in state.items()}
    for k, v in own.items():
        if k.startswith("backbone.normalize.") or k.endswith("_extra_state"):
            mapped.setdefault(k, v)
    return mapped
