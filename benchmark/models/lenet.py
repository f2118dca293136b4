"""LeNet-5 and LeNet-5-half as in DAFL / DFAD's MNIST experiments (32x32 grey input; conv 6-16-120 then fc 84,
half: 3-8-60 then 42).  The embedding is the output of the last hidden fully connected layer (84 / 42).  The
activation features (DAFL's activation loss, the activation-regularisation paper's R_m) are conv3's 120 / 60 outputs
before the fully connected layers: DAFL's LeNet-5 returns exactly that as its ``feature``."""
from __future__ import annotations

from torch import nn

from benchmark.models.base import Backbone


class LeNet5(Backbone):
    def __init__(self, width=1.0, in_channels=1, mean=(0.1307,), std=(0.3081,)):
        super().__init__(mean, std)
        c1, c2, c3, f = (int(round(v * width)) for v in (6, 16, 120, 84))
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, 5), nn.ReLU(inplace=True))
        self.fc = nn.Sequential(nn.Linear(c3, f), nn.ReLU(inplace=True))
        self.embed_dim = f

    def body(self, x):
        b1 = self.conv1(x)
        b2 = self.conv2(b1)
        b3 = self.conv3(b2)
        return [b1, b2, b3]

    def gradcam_layer(self):
        return self.conv2  # conv3's output is 1x1 on 32x32 input: a one-pixel map carries no attention

    def pool_last(self, last):
        return self.fc(last.flatten(1))

    def activation_features(self, last):
        return last.flatten(1)  # conv3's output is 1x1 on 32x32 input


def lenet5(**kw):
    return LeNet5(1.0, **kw)


def lenet5_half(**kw):
    return LeNet5(0.5, **kw)
