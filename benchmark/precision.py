"""Mixed precision: ``--precision fp32|bf16|fp16|auto``, resolved once per cell, and the autocast / gradient-scaler
pieces every training loop of the suite uses.

* ``bf16``: ``torch.autocast`` with bfloat16 over the forward passes and losses of a training step (the model's
  parameters, the optimiser state and the backward accumulation stay float32; bf16 has float32's exponent range, so
  no loss scaling is needed).  On this project's CPUs (AMD EPYC with ``avx512_bf16``) a ResNet-20 training step is
  1.7x faster than float32, a WRN-16-2 step 2.35x (``benchmarks/throughput.py --precision fp32 bf16``).
* ``fp16``: CUDA only, autocast with float16 and a ``torch.amp.GradScaler`` (float16's range needs loss scaling).
* ``auto``: bf16 where the hardware computes it natively (a CPU with AVX512-BF16 or AMX, a CUDA device that
  supports bf16), float32 elsewhere.  A cell records the *resolved* precision (it is part of its key), so ``auto``
  on two machines that resolve it differently makes two different cells.

What stays float32, and why (autocast is entered only around a training step's forward and loss terms):
* evaluation and every metric (``benchmark.evaluation``), so that a table's accuracies are float32 numbers;
* statistics that feed later phases: class means / prototypes and radius (PASS, SSRE, RGAL), exemplar herding,
  Fisher information (EWC) -- they are computed after the phase, outside the training step;
* the classifiers and the embedding they read: the last block's map is pooled in float32 and the linear / cosine
  heads run with autocast off (``float32_forward``), so logits, prototypes and temperature-scaled losses keep
  float32 precision (the backbone's convolutions, nearly all of the arithmetic, run in bf16);
* BatchNorm statistics targets of the data-free synthesisers: the hook casts the layer input to float32 before its
  mean and variance (``strategies.dfkd.losses.BNStatsHook``);
* checkpoints: parameters and optimiser state are float32 tensors, so a run resumes across precisions.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from benchmark.errors import BenchError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bfloat16 arithmetic instructions (x86 ``avx512_bf16`` or ``amx_bf16`` flags; Linux
    ``/proc/cpuinfo``).  Without them bf16 is emulated and slower than float32, so ``auto`` keeps float32."""
    if cpuinfo is None:
        p = Path("/proc/cpuinfo")
        cpuinfo = p.read_text(errors="replace") if p.is_file() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(name: str, device_type: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``--precision name`` on a device of this type; a one-line error where the
    device cannot run it."""
    if name not in PRECISIONS:
        raise BenchError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    cuda = device_type == "cuda"
    if name == "auto":
        if cuda and not torch.cuda.is_available():  # --device cuda for Ray / SLURM workers, planned from a CPU node
            raise BenchError("--precision auto cannot tell what the workers' GPUs compute natively from a node without "
                             "CUDA; pass --precision bf16, fp16 or fp32")
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if name == "fp16" and not cuda:
        raise BenchError("--precision fp16 needs a CUDA device (float16 autocast with a gradient scaler); "
                         "use --precision bf16 or auto on a CPU")
    if name == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise BenchError("this CUDA device does not support bfloat16; use --precision fp16 or fp32")
    return name


def emulation_note(precision: str, device_type: str) -> str | None:
    """A line for the user when bf16 will run emulated (a CPU without bf16 instructions), else None."""
    if precision == "bf16" and device_type == "cpu" and not cpu_has_native_bf16():
        return ("note: this CPU has no bf16 instructions (avx512_bf16 / amx_bf16), so bf16 runs emulated: about 9x "
                "slower than fp32 on an AVX2 EPYC (benchmarks/throughput.py --precision fp32 bf16); "
                "--precision auto picks fp32 here")
    return None


def autocast(precision: str, device_type: str):
    """The context a training step's forward passes and losses run in (a no-op for float32)."""
    if precision in DTYPES:
        return torch.autocast(device_type, dtype=DTYPES[precision])
    return contextlib.nullcontext()


class StepPrecision:
    """Autocast and (fp16 only) loss scaling for one training loop: ``with sp.autocast(): loss = ...`` then
    ``sp.backward(loss)`` and ``sp.step(optimizer)``, the pattern of ``torch.amp``'s documentation."""

    def __init__(self, precision: str, device_type: str):
        self.precision, self.device_type = precision, device_type
        self.scaler = torch.amp.GradScaler(device_type) if precision == "fp16" else None

    def autocast(self):
        return autocast(self.precision, self.device_type)

    def backward(self, loss: torch.Tensor, **kw) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward(**kw)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)


def float32_forward(forward):
    """Decorator of a module's ``forward``: computed in float32 even inside an autocast step.  For the classifiers
    (``SlicedLinear``, UCIR's cosine head): the logits feed temperature-scaled losses -- KD at T = 20, PASS's CE at
    T = 0.1, cosine margins -- whose values bf16 logits (8 bits of mantissa) would move by several per cent, and a
    64-by-C product costs nothing next to the backbone."""

    @functools.wraps(forward)
    def wrapped(self, x, *args, **kwargs):
        if x.is_floating_point() and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return forward(self, x.float(), *args, **kwargs)
        return forward(self, x, *args, **kwargs)

    return wrapped
