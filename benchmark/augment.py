"""Batched image augmentation on whole uint8 batches, on the training device.

Reproduces the per-image torchvision pipeline of the official PASS code
(``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ColorJitter(brightness=63/255)``, ``ToTensor()``)
with one tensor operation per step for the whole batch; normalisation is done by the model
(``benchmark.models.base.InputNormalizer``).  Tiny-ImageNet uses the flip only (official PASS_tiny.py).
All randomness comes from the ``torch.Generator`` passed in, so a saved generator state replays it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentSpec:
    crop_padding: int = 0  # 0: no random crop
    flip: bool = False
    brightness: float = 0.0  # ColorJitter(brightness=b): factor ~ U[max(0, 1-b), 1+b]

    def as_dict(self) -> dict:
        return {"crop_padding": self.crop_padding, "flip": self.flip, "brightness": self.brightness}


CIFAR_PASS = AugmentSpec(crop_padding=4, flip=True, brightness=63 / 255)
FLIP_ONLY = AugmentSpec(flip=True)
NONE = AugmentSpec()


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and take a random crop of the original size from each image."""
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=gen.device).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (n, 1, w)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=gen, device=gen.device) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_brightness(x: torch.Tensor, b: float, gen: torch.Generator) -> torch.Tensor:
    """x float in [0, 1]; multiplies each image by a factor drawn from U[max(0, 1-b), 1+b] and clamps."""
    lo, hi = max(0.0, 1.0 - b), 1.0 + b
    f = torch.rand(x.shape[0], generator=gen, device=gen.device).to(x.device) * (hi - lo) + lo
    return (x * f[:, None, None, None]).clamp_(0.0, 1.0)


def random_resized_crop(x: torch.Tensor, gen: torch.Generator, scale=(0.25, 1.0),
                        ratio=(3 / 4, 4 / 3), attempts: int = 10) -> torch.Tensor:
    """Differentiable batched ``RandomResizedCrop`` back to the input size (bilinear): per image ``attempts`` candidate
    boxes, each an area fraction ~ U(scale) and a log-uniform aspect ratio, of which the first that fits inside the
    image is kept (as torchvision's and kornia's ``RandomResizedCrop``, which CMI's official code uses; clamping an
    oversized box to the image side instead would put 17 % of the boxes at full width or height, mean area 0.62
    against kornia's 0.58); no candidate fits: the whole image.  The box is placed uniformly inside the image at a
    continuous position (kornia: integer pixels).  Float input only (used on synthetic images, CMI's local view)."""
    n = x.shape[0]

    def u(lo, hi, *shape):
        return torch.rand(*shape, generator=gen, device=gen.device).to(x.device) * (hi - lo) + lo

    area = u(*scale, n, attempts)
    r = torch.exp(u(math.log(ratio[0]), math.log(ratio[1]), n, attempts))
    w_all, h_all = torch.sqrt(area * r), torch.sqrt(area / r)  # fractions of the width and height
    fits = (w_all <= 1.0) & (h_all <= 1.0)
    first = fits.float().argmax(1)  # the first candidate that fits (0 when none does: masked below)
    pick = torch.arange(n, device=x.device)
    any_fit = fits.any(1)
    w = torch.where(any_fit, w_all[pick, first], torch.ones_like(w_all[:, 0]))
    h = torch.where(any_fit, h_all[pick, first], torch.ones_like(h_all[:, 0]))
    cx, cy = u(-1.0, 1.0, n) * (1 - w), u(-1.0, 1.0, n) * (1 - h)  # centre in [-1, 1] coordinates
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(x: torch.Tensor, spec: AugmentSpec, gen: torch.Generator) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1], augmented as ``spec`` says."""
    if spec.crop_padding:
        x = random_crop(x, spec.crop_padding, gen)
    if spec.flip:
        x = random_flip(x, gen)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
    if spec.brightness:
        x = random_brightness(x, spec.brightness, gen)
    return x
