"""Fake quantization of any suite model for the data-free quantization task, as GDFQ's and IntraQ's official code
does it (both use ZeroQ's ``quantization_utils``: ``AsymmetricQuantFunction``, ``Quant_Conv2d``, ``Quant_Linear``,
``QuantAct`` and ``quantize_model``, identical in the two repositories).

* **Uniform asymmetric quantizer** (``fake_quantize``; official ``asymmetric_linear_quantization_params`` /
  ``linear_quantize`` / ``linear_dequantize``): ``s = (2^k - 1) / (max - min)``, ``z = round(s * min) + 2^(k-1)``,
  ``q = clamp(round(s * x - z), -2^(k-1), 2^(k-1) - 1)``, ``x_hat = (q + z) / s``: 2^k levels on ``[min, max]`` with 0
  exactly representable (the signed integer range is a shift of the unsigned one).  ``torch.round`` rounds half to
  even, as the official code.
* **Straight-through estimator**: the backward pass is the identity, not masked outside ``[min, max]``, and the range
  gets no gradient (official ``AsymmetricQuantFunction.backward`` returns ``grad_output``).
* **Weights** (``WeightQuantizer``, a parametrization of every convolution's and linear layer's ``weight``): per
  output channel, the range the current min / max of the latent float weights, recomputed at every forward; the
  float weights are what the optimiser trains.
* **Activations** (``QuantAct``): one quantizer per tensor after every ReLU, its range an exponential average
  (momentum 0.9) of each batch's min / max while tracking (the official 4 warm-up epochs, ``unfreeze_model``), then
  fixed (``freeze_model``).  The update is the released one exactly, including its bias correction applied to the
  already corrected value (``x = (x * 0.9 + m * 0.1) / (1 - 0.9^t)``), which inflates the range for the first ~100
  batches before it settles to a plain average of the recent batches (the 800 warm-up batches of both recipes are long
  past that, so the frozen range is the same as a textbook average's; kept as released rather than "fixed").
* **Which layers**: every ``nn.Conv2d`` and ``nn.Linear`` at the weight bit-width, the first convolution and the
  classifier included (the official ``quantize_model`` has no 8-bit or float exception; ``first_last_bits`` makes
  one, as an option); a ``QuantAct`` after every ``nn.ReLU``.  Left in float, as in the official code: the input
  image (the suite's models normalise it inside, before the first convolution), BatchNorm (not folded; the student
  runs in eval mode, so its running statistics stay the teacher's while its affine parameters train), the residual
  sum before its ReLU, and the pooled feature that enters the classifier.

A model must call each ``nn.ReLU`` module once per forward (each activation needs its own range): the suite's
models do; ``quantize_model`` checks it on a probe batch and refuses a model that reuses one.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from benchmark.errors import BenchError

def parse_bits(text: str) -> tuple[int, int]:
    """``--bits`` value: ``"4"`` (weights and activations at 4 bits) or ``"4x8"`` (weights 4, activations 8)."""
    parts = str(text).lower().split("x")
    try:
        bits = tuple(int(p) for p in parts)
    except ValueError:
        bits = ()
    if len(bits) == 1:
        bits = bits * 2
    if len(bits) != 2 or not all(2 <= b <= 8 for b in bits):
        raise BenchError(f"--bits {text!r}: expected W or WxA with bit-widths from 2 to 8, e.g. 4 or 4x8")
    return bits


def quant_params(bits: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale ``s``, zero point ``z``) of the official ``asymmetric_linear_quantization_params`` (signed, integral)."""
    scale = (2 ** bits - 1) / torch.clamp(hi - lo, min=1e-8)
    return scale, (scale * lo).round() + 2 ** (bits - 1)


class _AsymmetricQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits: int, lo, hi):
        scale, zero = quant_params(bits, lo, hi)
        shape = (-1,) + (1,) * (x.dim() - 1) if scale.numel() > 1 else ()
        if shape:  # per output channel: one (scale, zero point) per row of the weight
            scale, zero = scale.view(shape), zero.view(shape)
        n = 2 ** (bits - 1)
        q = torch.clamp(torch.round(scale * x - zero), -n, n - 1)
        return (q + zero) / scale

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None  # straight through, unmasked


def fake_quantize(x: torch.Tensor, bits: int, lo, hi) -> torch.Tensor:
    """``x`` on the 2^``bits``-level grid of ``[lo, hi]`` (tensors: per-tensor when one element, else one range per
    leading index of ``x``), with the identity as its gradient."""
    return _AsymmetricQuant.apply(x, bits, torch.as_tensor(lo, dtype=x.dtype, device=x.device),
                                  torch.as_tensor(hi, dtype=x.dtype, device=x.device))


def _channel_range(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = w.detach().reshape(w.shape[0], -1)
    return flat.min(dim=1).values, flat.max(dim=1).values


class WeightQuantizer(nn.Module):
    """A weight fake-quantized per output channel (official ``Quant_Conv2d`` / ``Quant_Linear``), attached to a layer
    as a parametrization of its ``weight`` (``torch.nn.utils.parametrize``): the layer keeps its own forward (the
    suite's ``SlicedLinear`` head its slicing), the float weight (``parametrizations.weight.original``) is what the
    optimiser trains, and every read of ``weight`` is the quantized one."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize(w, self.bits, *_channel_range(w))

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def weight_bits(layer: nn.Module) -> int | None:
    """The bit-width ``layer``'s weight is quantized to, or None."""
    for p in getattr(getattr(layer, "parametrizations", None), "weight", ()):
        if isinstance(p, WeightQuantizer):
            return p.bits
    return None


class QuantAct(nn.Module):
    """Per-tensor activation quantizer with a tracked, then fixed, range (official ``QuantAct``)."""

    def __init__(self, bits: int, momentum: float = 0.9):
        super().__init__()
        self.bits, self.momentum = bits, momentum
        self.tracking = False
        self.register_buffer("x_min", torch.zeros(()))
        self.register_buffer("x_max", torch.zeros(()))
        self.register_buffer("beta_t", torch.ones(()))  # momentum ** (number of updates): the bias correction

    def update_range(self, x: torch.Tensor) -> None:
        b = self.momentum
        lo, hi = x.detach().min().float(), x.detach().max().float()
        self.beta_t.mul_(b)  # the corrected value is fed back into the average, as released
        self.x_min.copy_((self.x_min * b + lo * (1 - b)) / (1 - self.beta_t))
        self.x_max.copy_((self.x_max * b + hi * (1 - b)) / (1 - self.beta_t))

    def forward(self, x):
        if self.tracking:
            self.update_range(x)
        return fake_quantize(x, self.bits, self.x_min, self.x_max)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, range=[{float(self.x_min):.4g}, {float(self.x_max):.4g}], tracking={self.tracking}"


def _relu_calls(model: nn.Module, probe: torch.Tensor) -> dict[nn.Module, int]:
    calls: dict[nn.Module, int] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.__setitem__(mod, calls.get(mod, 0) + 1))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(probe)
    model.train(was)
    for h in hooks:
        h.remove()
    return calls


def quantize_model(model: nn.Module, weight_bits: int, act_bits: int, probe: torch.Tensor,
                   first_last_bits: int | None = None) -> nn.Module:
    """A fake-quantized deep copy of ``model`` (the module docstring says what is quantized); ``probe``: one input
    batch to check that every ReLU module is called once.  ``first_last_bits``: another weight bit-width for the
    first convolution and the last linear layer (None: the official code's, the same as the others)."""
    calls = _relu_calls(model, probe)  # one probe forward
    reused = [n for n, m in model.named_modules() if calls.get(m, 0) > 1]
    if reused:
        raise BenchError(f"cannot quantize {type(model).__name__}: ReLU module(s) {', '.join(reused)} run more than "
                         "once per forward, and each activation needs its own quantizer range")
    from torch.nn.utils import parametrize

    q = copy.deepcopy(model)
    layers = [m for m in q.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ends = {id(layers[0]), id(layers[-1])} if first_last_bits and layers else set()
    for layer in layers:
        bits = first_last_bits if id(layer) in ends else weight_bits
        parametrize.register_parametrization(layer, "weight", WeightQuantizer(bits))
    device = next(q.parameters()).device
    for m in list(q.modules()):
        for name, child in list(m.named_children()):
            if type(child) is nn.ReLU:
                setattr(m, name, nn.Sequential(child, QuantAct(act_bits).to(device)))
    return q


@contextlib.contextmanager
def tracking_paused(model: nn.Module):
    """The activation ranges of ``model`` stay as they are inside the block (a synthesis step that queries the
    student during the warm-up must not move them), and track again after it if they did before."""
    acts = [m for m in model.modules() if isinstance(m, QuantAct)]
    was = [m.tracking for m in acts]
    for m in acts:
        m.tracking = False
    try:
        yield model
    finally:
        for m, w in zip(acts, was):
            m.tracking = w


def set_range_tracking(model: nn.Module, on: bool) -> None:
    """Every ``QuantAct`` of ``model`` tracks its range (official ``unfreeze_model``) or keeps it (``freeze_model``)."""
    for m in model.modules():
        if isinstance(m, QuantAct):
            m.tracking = on
