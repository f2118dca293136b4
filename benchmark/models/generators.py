"""Generators of the data-free distillation task.  Every generator here returns images in [0, 1]-space
(the input space of the suite's models, which normalise internally), so any generator feeds any model.

* ``CMIGenerator`` -- the RGAL / CMI generator (zju-vipa/CMI ``datafree/models/generator.py``: ``Generator``):
  ``z -> Linear -> (2ngf, s/4, s/4) -> BN -> Upsample x2 -> Conv3x3 -> BN -> LeakyReLU(0.2) -> Upsample x2 ->
  Conv3x3 -> BN -> LeakyReLU(0.2) -> Conv3x3 -> Sigmoid``.  ``stage_mult=4`` is the larger variant (4ngf in the
  first stage; acbbea's ``LargeGenerator``, used for the generator-based baselines).
* ``DFADGenerator`` -- DFAD's ``GeneratorA`` (VainF/Data-Free-Adversarial-Distillation ``network/gan.py``): the same
  trunk with biased convolutions and ``interpolate``, ending ``Conv3x3 -> Tanh -> BatchNorm(nc, affine=False)``,
  whose output lives in the *normalised* input space of the official code; it is mapped back to [0, 1]-space with the
  dataset's mean and std (``x * std + mean``), an exact affine inverse of the models' own normalisation, and is not
  clamped (as in DFAD, nothing bounds the images).
* ``GDFQGenerator`` -- GDFQ's conditional generator (xushoukai/GDFQ ``main.py``: ``Generator``): the label's
  embedding times ``z`` -> Linear -> (128, s/4, s/4) -> BN -> interpolate x2 -> Conv3x3 -> BN(eps 0.8) ->
  LeakyReLU(0.2) -> interpolate x2 -> Conv3x3 -> BN(eps 0.8) -> LeakyReLU(0.2) -> Conv3x3 -> Tanh ->
  BatchNorm(nc, affine=False).  ``nn.BatchNorm2d(128, 0.8)`` in the official code sets eps, not momentum (a
  PyTorch-GAN quirk), kept.  Like DFAD's its output is in the normalised space and is mapped back with mean / std.
  ``forward(z, labels)``; widths 128 / 64 at the official ``ngf=64``.
* ``GDFQImageNetGenerator`` -- GDFQ's ImageNet generator (``Generator_imagenet``): the same trunk, the label
  entering through class-conditional BatchNorms instead of an embedding of ``z``.
* ``reset_generator`` -- CMI / RGAL's ``reset_model``: conv and linear weights ~ N(0, 0.02), biases 0, BatchNorm
  weights ~ N(1, 0.02), biases 0 (RGAL re-initialises the generator every synthesis round).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CMIGenerator(nn.Module):
    def __init__(self, nz: int = 256, ngf: int = 64, img_size: int = 32, nc: int = 3, stage_mult: int = 2):
        super().__init__()
        self.nz, self.init_size = nz, img_size // 4
        c0 = ngf * stage_mult
        self.l1 = nn.Linear(nz, c0 * self.init_size ** 2)
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(c0),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c0, ngf * 2, 3, 1, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(ngf * 2, ngf, 3, 1, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, nc, 3, 1, 1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.l1(z.flatten(1))
        out = out.view(out.shape[0], -1, self.init_size, self.init_size)
        return self.conv_blocks(out)


class DFADGenerator(nn.Module):
    def __init__(self, nz: int = 256, ngf: int = 64, img_size: int = 32, nc: int = 3, mean=(0.5,), std=(0.5,),
                 eps: float = 1e-5):
        super().__init__()
        self.nz, self.init_size = nz, img_size // 4
        self.l1 = nn.Linear(nz, ngf * 2 * self.init_size ** 2)
        self.bn0 = nn.BatchNorm2d(ngf * 2)
        self.block1 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 2, 3, 1, 1), nn.BatchNorm2d(ngf * 2, eps),
                                    nn.LeakyReLU(0.2, inplace=True))
        self.block2 = nn.Sequential(nn.Conv2d(ngf * 2, ngf, 3, 1, 1), nn.BatchNorm2d(ngf, eps),
                                    nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ngf, nc, 3, 1, 1), nn.Tanh(),
                                    nn.BatchNorm2d(nc, affine=False))
        m = torch.as_tensor(mean, dtype=torch.float32).expand(nc).clone()
        s = torch.as_tensor(std, dtype=torch.float32).expand(nc).clone()
        self.register_buffer("mean", m.view(1, -1, 1, 1))
        self.register_buffer("std", s.view(1, -1, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z.flatten(1))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        out = self.l1(h)
        out = self.bn0(out.view(out.shape[0], -1, self.init_size, self.init_size))
        out = self.block1(F.interpolate(out, scale_factor=2))
        out = self.block2(F.interpolate(out, scale_factor=2))
        return out * self.std + self.mean  # normalised space -> the models' [0, 1] input space


class GDFQGenerator(DFADGenerator):
    """DFAD's trunk with GDFQ's label conditioning and its eps-0.8 BatchNorms (module docstring)."""

    conditional = True  # forward(z, labels)

    def __init__(self, nz: int = 100, ngf: int = 64, img_size: int = 32, nc: int = 3, mean=(0.5,), std=(0.5,),
                 n_classes: int = 100):
        super().__init__(nz, ngf, img_size, nc, mean, std, eps=0.8)
        self.label_emb = nn.Embedding(n_classes, nz)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.label_emb(labels) * z.flatten(1))


class CategoricalConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine parameters, then a per-class scale and shift (GDFQ ``conditional_batchnorm.py``:
    ``CategoricalConditionalBatchNorm2d``; scales start at 1, shifts at 0)."""

    def __init__(self, n_classes: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps, affine=False)
        self.weight = nn.Embedding(n_classes, channels)
        self.bias = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.weight.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.weight(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class GDFQImageNetGenerator(nn.Module):
    """GDFQ's ImageNet generator (``main.py``: ``Generator_imagenet``): ``z`` (no label embedding) -> Linear ->
    (2ngf, s/4, s/4) -> CBN -> interpolate x2 -> Conv3x3 -> CBN(eps 0.8) -> LeakyReLU(0.2) -> interpolate x2 ->
    Conv3x3 -> CBN(eps 0.8) -> LeakyReLU(0.2) -> Conv3x3 -> Tanh -> BatchNorm(nc, affine=False), the label entering
    through the class-conditional BatchNorms only; output mapped back to [0, 1]-space as ``GDFQGenerator``'s."""

    conditional = True

    def __init__(self, nz: int = 100, ngf: int = 64, img_size: int = 224, nc: int = 3, mean=(0.5,), std=(0.5,),
                 n_classes: int = 1000):
        super().__init__()
        self.nz, self.init_size = nz, img_size // 4
        self.l1 = nn.Linear(nz, ngf * 2 * self.init_size ** 2)
        self.cbn0 = CategoricalConditionalBatchNorm2d(n_classes, ngf * 2)
        self.conv1, self.cbn1 = nn.Conv2d(ngf * 2, ngf * 2, 3, 1, 1), CategoricalConditionalBatchNorm2d(
            n_classes, ngf * 2, 0.8)
        self.conv2, self.cbn2 = nn.Conv2d(ngf * 2, ngf, 3, 1, 1), CategoricalConditionalBatchNorm2d(n_classes, ngf, 0.8)
        self.out = nn.Sequential(nn.Conv2d(ngf, nc, 3, 1, 1), nn.Tanh(), nn.BatchNorm2d(nc, affine=False))
        m = torch.as_tensor(mean, dtype=torch.float32).expand(nc).clone()
        s = torch.as_tensor(std, dtype=torch.float32).expand(nc).clone()
        self.register_buffer("mean", m.view(1, -1, 1, 1))
        self.register_buffer("std", s.view(1, -1, 1, 1))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.l1(z.flatten(1))
        out = self.cbn0(out.view(out.shape[0], -1, self.init_size, self.init_size), labels)
        out = F.leaky_relu(self.cbn1(self.conv1(F.interpolate(out, scale_factor=2)), labels), 0.2)
        out = F.leaky_relu(self.cbn2(self.conv2(F.interpolate(out, scale_factor=2)), labels), 0.2)
        return self.out(out) * self.std + self.mean


@torch.no_grad()
def reset_generator(gen: nn.Module) -> None:
    for m in gen.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _cmi(stage_mult: int):
    """CMI's generator outputs sigmoid images in [0, 1]: it takes no normalisation statistics."""
    return lambda **kw: CMIGenerator(stage_mult=stage_mult, **{k: v for k, v in kw.items() if k not in ("mean", "std")})


GENERATORS = {"cmi": _cmi(2), "cmi-large": _cmi(4), "dfad": lambda **kw: DFADGenerator(**kw),
              "gdfq": lambda **kw: GDFQGenerator(**kw), "gdfq-imagenet": lambda **kw: GDFQImageNetGenerator(**kw)}
