"""PASS (Zhu et al., CVPR 2021) as composable Avalanche plugins, faithful to the official code
(Impression2805/CVPR21_PASS, ``PASS.py``):

* ``RotationPlugin`` -- self-supervised label augmentation: every training image is rotated by 0/90/180/270
  degrees (``torch.rot90``, the four rotations of an image adjacent in the batch), label ``4*y + k``; the classifier
  has ``4 * classes`` outputs and evaluation keeps the unrotated ones (``outputs[:, ::4]``).
* ``FeatureCapturePlugin`` -- keeps the embedding of the current forward (a forward hook on the backbone), so that
  feature losses work with any strategy's forward.
* ``PrototypeAugmentationPlugin`` -- ``weight * CE(fc(p + N(0, I) * r) / T, 4*c)`` on ``n`` augmented prototypes
  of old classes per step (official: weight 10, T 0.1, n = batch size 64), drawn from the bank (whose
  ``sample_hook`` lets another plugin, RGAL's prototype optimisation, replace the samples before the loss).
* ``FeatureDistillationPlugin`` -- ``weight * ||f - f_old||_F`` over the whole (rotated) batch against the frozen
  previous model (official ``torch.dist(feature, feature_old, 2)``, weight 10; not averaged).  The previous model
  runs once, without gradients (the official code runs it with gradients enabled, which changes no gradient of the
  current model).
* ``PrototypeUpdatePlugin`` -- after each phase, class means over the phase's augmented training data in full
  batches (official ``protoSave``: eval mode, only batches of exactly ``batch_size``), radius from phase 0; then a
  frozen copy of the model becomes the previous model.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from benchmark.models.base import OutputCapture, frozen_copy
from benchmark.training import TensorBatches
from strategies.prototypes import PrototypeBank


def rotate_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> (4B, C, H, W) with the 4 rotations of each image adjacent; labels ``4*y + k``."""
    xr = torch.stack([torch.rot90(x, k, (2, 3)) for k in range(4)], 1).flatten(0, 1)
    yr = torch.stack([y * 4 + k for k in range(4)], 1).flatten()
    if x.is_contiguous(memory_format=torch.channels_last):
        xr = xr.contiguous(memory_format=torch.channels_last)
    return xr, yr


class TemperatureCE(torch.nn.Module):
    """``CE(logits / T, y)`` (PASS: T = 0.1)."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.t = temperature

    def forward(self, logits, y):
        return F.cross_entropy(logits / self.t, y)


class RotationPlugin(SupervisedPlugin):
    def __init__(self, active=None):
        super().__init__()
        self.active = active  # callable -> bool (SSRE rotates in phase 0 only); None: always

    def before_training_iteration(self, strategy, **kwargs):
        if self.active is not None and not self.active():
            return
        x, y = rotate_batch(strategy.mbatch[0], strategy.mbatch[1])
        strategy.mbatch[0], strategy.mbatch[1] = x, y
        strategy.mbatch[2] = torch.zeros_like(y)


class FeatureCapturePlugin(SupervisedPlugin):
    """``self.features``: the backbone output of the latest forward of ``backbone`` (an ``OutputCapture`` in a
    plugin, so that it can sit in a strategy's plugin list beside the losses that read it)."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self._capture = OutputCapture(backbone)

    @property
    def features(self):
        return self._capture.value


class OldModelHolder:
    """The frozen previous model shared by the PASS plugins."""

    def __init__(self):
        self.model = None

    def update(self, model):
        self.model = frozen_copy(model)


class PrototypeAugmentationPlugin(SupervisedPlugin):
    loss_name = "proto_aug"  # its term in the experiment logs (benchmark.loss_terms)

    def __init__(self, bank: PrototypeBank, head, weight=10.0, temperature=0.1, n_samples=64, label_scale=4,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.bank, self.head, self.weight, self.t = bank, head, weight, temperature
        self.n, self.scale, self.generator = n_samples, label_scale, generator
        self.last_samples = None

    def before_backward(self, strategy, **kwargs):
        if len(self.bank) == 0:
            return
        dev = strategy.device
        p, c = self.bank.sample(self.n, self.generator, device=dev, context=strategy)
        self.last_samples = (p, c)
        strategy.loss = strategy.loss + self.weight * F.cross_entropy(self.head(p) / self.t, c * self.scale)


class FeatureDistillationPlugin(SupervisedPlugin):
    loss_name = "feature_kd"

    def __init__(self, capture: FeatureCapturePlugin, old: OldModelHolder, weight=10.0):
        super().__init__()
        self.capture, self.old, self.weight = capture, old, weight

    def before_backward(self, strategy, **kwargs):
        if self.old.model is None:
            return
        f = self.capture.features
        with torch.no_grad():
            f_old = self.old.model.backbone(strategy.mb_x)
        strategy.loss = strategy.loss + self.weight * torch.dist(f, f_old, 2)


@torch.no_grad()
def phase_features(model, loader_x, loader_y, batch_size, augment, generator, device):
    """Embeddings of the augmented training images in full batches only (official ``protoSave``).  A phase with
    fewer images than one batch (where the official loader would yield nothing and the prototypes would be NaN)
    uses its one partial batch."""
    was = model.training
    model.eval()
    drop_last = len(loader_y) >= batch_size
    batches = TensorBatches(loader_x, loader_y, batch_size, augment, generator, drop_last=drop_last)
    fs, ys = [], []
    for xb, yb, _ in batches:
        fs.append(model.backbone(xb.to(device)).cpu())
        ys.append(yb.cpu())
    model.train(was)
    return torch.cat(fs), torch.cat(ys)


class PrototypeUpdatePlugin(SupervisedPlugin):
    """After each phase: new classes' prototypes into ``bank``, then the previous model is updated."""

    def __init__(self, bank: PrototypeBank, old: OldModelHolder, net, batch_size, augment, seed_fn, device):
        """``batch_size``: an int or a callable giving the current phase's (SSRE's later phases use 128)."""
        super().__init__()
        self.bank, self.old, self.net = bank, old, net
        self.batch_size, self.augment, self.seed_fn, self.device = batch_size, augment, seed_fn, device

    def after_training_exp(self, strategy, **kwargs):
        dl = strategy.dataloader
        if isinstance(dl, TensorBatches):
            x, y = dl.x, dl.y
        else:  # a plain Avalanche strategy: gather the phase's data once
            from benchmark.training import materialize

            x, y = materialize(strategy.adapted_dataset)
        # a generator of its own, seeded from (seed, phase): the same prototypes whether the phase was trained or
        # its model loaded from the phase-0 cache
        gen = torch.Generator(device=x.device).manual_seed(self.seed_fn())
        bs = self.batch_size() if callable(self.batch_size) else self.batch_size
        f, y = phase_features(self.net, x, y, bs, self.augment, gen, self.device)
        self.bank.update(f, y)
        self.old.update(self.net)
