"""Common interface of every classifier in the suite.

A model is ``backbone`` (input normalisation + convolutional body + global pooling -> embedding) followed by
``head`` (a linear classifier).  Every model

* returns logits from ``forward(x)`` (what Avalanche strategies expect),
* returns ``(logits, embedding)`` from ``forward_features(x)`` and the block outputs from
  ``backbone(x, return_blocks=True)`` (what prototype, distillation and triplet losses need),
* takes images either as uint8 (0..255) or as floats in [0, 1]; the per-channel normalisation of the official
  PASS / CMI code lives in the model (``InputNormalizer``) so that datasets can hold raw uint8 tensors and every
  consumer (Avalanche's iCaRL herding, EWC's Fisher pass, generators producing [0, 1] images) feeds the same kind
  of input.

``head.active`` limits the logits to the classes seen so far: it is the official PASS / iCaRL "expanding
classifier" (``Incremental_learning(numclass)`` copies the old rows and adds new ones) written as a slice of a
classifier sized for every class of the scenario, so that the softmax / sigmoid of every method runs over the
seen classes only.  Known difference: the official code gives a phase's new rows ``nn.Linear``'s default
initialisation, here they carry whatever earlier phases left (with Adam's coupled weight decay, as in the PASS
family, ~1e-15).  Measured on SSRE's phase 2 (``benchmarks/new_class_diagnostic.py --fresh-rows``, results/README.md):
re-initialising them does not help the new classes, so the slice stays.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from benchmark.precision import float32_forward


def frozen_copy(net: nn.Module, state: dict | None = None) -> nn.Module:
    """A frozen (eval mode, no gradients) copy of ``net``, optionally loaded with ``state``: the "previous model" of
    every distillation method.  Forward hooks belong to the live network's plugins: they are set aside during the
    copy, so that neither their objects nor the graph tensors they may hold are copied, and the copy has none."""
    saved = [(m, dict(m._forward_hooks)) for m in net.modules()]
    for m, _ in saved:
        m._forward_hooks.clear()
    try:
        twin = copy.deepcopy(net)
    finally:
        for m, hooks in saved:
            m._forward_hooks.update(hooks)
    if state is not None:
        load_state(twin, state)
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def load_state(net: nn.Module, state: dict) -> None:
    """``net.load_state_dict(state)`` (strict) where ``net`` may be a fresh network whose lazily filled buffers are
    still ``None``: Avalanche's ``NCMClassifier`` registers ``class_means = None`` and fills it after the first
    phase, so the state of a trained iCaRL model has a tensor that a fresh copy does not (``Unexpected key
    eval_classifier.class_means``).  Such buffers are given the saved tensor's shape first."""
    for name, module in net.named_modules():
        for b, value in module._buffers.items():
            key = f"{name}.{b}" if name else b
            if value is None and isinstance(state.get(key), torch.Tensor):
                module._buffers[b] = torch.empty_like(state[key])
    net.load_state_dict(state)


class OutputCapture:
    """A forward hook keeping ``value``, the latest output of ``module`` (the first element of a tuple output), so that
    a method's loss can read the embedding (or a block's activation) of the strategy's own forward.  ``leaf=True``
    re-roots the output as a leaf that requires grad, so that ``autograd.grad`` can be taken with respect to it
    (LwM's Grad-CAM on a frozen model)."""

    def __init__(self, module: nn.Module, leaf: bool = False):
        self.value, self.leaf = None, leaf
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.leaf:
            output = output.detach().requires_grad_(True)
        self.value = output[0] if isinstance(output, tuple) else output
        return output if self.leaf else None


class InputNormalizer(nn.Module):
    """uint8 or [0, 1] float images -> ``(x - mean) / std`` per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std


class SlicedLinear(nn.Linear):
    """Linear classifier whose output is cut to the first ``active`` classes (all when ``active`` is None).

    ``active`` changes what the module computes, so it is part of the module's state (``_extra_state`` in
    ``state_dict``): a previous model rebuilt from a checkpoint scores the classes it scored before the kill (PASS's
    old head scored all outputs after a resume, and RGAL's L'_g changed).  A state saved before this entry existed
    (a phase-0 cache) loads with ``active`` left as it is."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.active: int | None = None

    def get_extra_state(self) -> dict:
        return {"active": self.active}

    def set_extra_state(self, state: dict) -> None:
        self.active = None if state.get("active") is None else int(state["active"])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        n = len(missing_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        missing_keys[n:] = [k for k in missing_keys[n:] if k != prefix + "_extra_state"]  # an older state

    @float32_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None or self.active >= self.out_features:
            return super().forward(x)
        bias = None if self.bias is None else self.bias[: self.active]
        return nn.functional.linear(x, self.weight[: self.active], bias)


class Backbone(nn.Module):
    """Feature extractor: subclasses implement ``body(x) -> list of block outputs`` and set ``embed_dim``."""

    embed_dim: int

    def __init__(self, mean, std):
        super().__init__()
        self.normalize = InputNormalizer(mean, std)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def body(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradcam_layer(self) -> nn.Module:
        """The last convolutional block with a spatial map (Grad-CAM's layer for LwM)."""
        return self.stages[-1]

    def pool_last(self, last: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(last.float()), 1)  # float32 embedding under bf16 autocast (a no-op in fp32)

    def activation_features(self, last: torch.Tensor) -> torch.Tensor:
        """The pooled features of DAFL's activation loss / the activation-regularisation paper's ``R_m``: the
        embedding, unless the architecture's reference code says otherwise (LeNet-5)."""
        return self.pool_last(last)

    def forward(self, x: torch.Tensor, return_blocks: bool = False):
        blocks = self.body(self.normalize(x))
        emb = self.pool_last(blocks[-1])
        return (emb, blocks) if return_blocks else emb


class Net(nn.Module):
    """Backbone + sliced linear head."""

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = SlicedLinear(backbone.embed_dim, num_classes)
        self.num_classes = num_classes

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward_features(self, x: torch.Tensor):
        emb = self.backbone(x)
        return self.head(emb), emb

    def forward_activations(self, x: torch.Tensor):
        """``(logits, activation features)``: see ``Backbone.activation_features``."""
        emb, blocks = self.backbone(x, return_blocks=True)
        return self.head(emb), self.backbone.activation_features(blocks[-1])

    def set_active_classes(self, n: int | None) -> None:
        self.head.active = n
