"""Model registry: CLI name -> factory building a ``Net`` (backbone + sliced head) for given classes, channels
and normalisation statistics."""
from __future__ import annotations

from benchmark.models import lenet, resnet_cifar, resnet_imagenet, wrn
from benchmark.models.base import Backbone, Net
from benchmark.registry import Registry

MODELS = Registry("model")
for _name, _fn, _desc in [
    ("resnet18", resnet_cifar.resnet18, "CIFAR ResNet-18, 512-d embedding (PASS / SSRE paper backbone)"),
    ("resnet34", resnet_cifar.resnet34, "CIFAR ResNet-34, 512-d embedding (DFKD teacher)"),
    ("reduced_resnet18", resnet_cifar.reduced_resnet18, "ResNet-18 with 20 base filters, 160-d (cpu profile)"),
    ("resnet20", resnet_cifar.resnet20, "CIFAR ResNet-20, 64-d"),
    ("resnet32", resnet_cifar.resnet32, "CIFAR ResNet-32, 64-d"),
    ("wrn16_1", wrn.wrn16_1, "WRN-16-1, 64-d"),
    ("wrn16_2", wrn.wrn16_2, "WRN-16-2, 128-d"),
    ("wrn40_1", wrn.wrn40_1, "WRN-40-1, 64-d"),
    ("wrn40_2", wrn.wrn40_2, "WRN-40-2, 128-d"),
    ("resnet18_imagenet", resnet_imagenet.resnet18_imagenet,
     "ImageNet ResNet-18, torchvision's layout and names, 512-d (data-free quantization, Table 13)"),
    ("lenet5", lenet.lenet5, "LeNet-5 (32x32 grey), 84-d"),
    ("lenet5_half", lenet.lenet5_half, "LeNet-5-half, 42-d"),
]:
    MODELS.register(_name, _fn, description=_desc)


def build_model(name: str, num_classes: int, in_channels: int, mean, std) -> Net:
    backbone: Backbone = MODELS.get(name)(in_channels=in_channels, mean=tuple(mean), std=tuple(std))
    return Net(backbone, num_classes)


__all__ = ["MODELS", "Net", "Backbone", "build_model"]
