"""Training throughput of the suite's backbones on this machine (images/s of forward + backward + Adam step on
random 32x32 batches), with and without channels_last, measured side by side in one run; the figures behind the
``cpu`` profile's choice of backbone and ``--dry-run``'s predictions.  Also the data pipeline alone (to show that data is
not the bottleneck): images/s of ``TensorBatches`` over 50 000 uint8 CIFAR-sized images (shuffle, index,
PASS's batched crop / flip / brightness, channels_last copy), and the share of a training step it adds.
With ``--precision fp32 bf16`` every configuration runs under each precision (``benchmark.precision.autocast``),
interleaved, ``--repeats`` times; the medians and the ratio to fp32 are printed.

    python benchmarks/throughput.py [--models resnet20 reduced_resnet18 resnet32] [--seconds 3] [--batch-size 64]
                                    [--precision fp32 bf16] [--repeats 3] [--no-data]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmark.models import build_model  # noqa: E402
from benchmark.precision import autocast, cpu_has_native_bf16  # noqa: E402


def images_per_s(name: str, channels_last: bool, batch: int, seconds: float, precision: str = "fp32") -> float:
    c = 1 if name.startswith("lenet") else 3
    m = build_model(name, 100, c, (0.5,) * c, (0.25,) * c)
    x, y = torch.rand(batch, c, 32, 32), torch.randint(0, 100, (batch,))
    if channels_last:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), 1e-3)

    def step():
        opt.zero_grad()
        with autocast(precision, "cpu"):
            loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        step()
        n += batch
    return n / (time.perf_counter() - t)


def data_images_per_s(batch: int, seconds: float) -> float:
    from benchmark.augment import CIFAR_PASS
    from benchmark.training import TensorBatches

    x = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 100, (50000,))
    batches = TensorBatches(x, y, batch, CIFAR_PASS, torch.Generator().manual_seed(0), channels_last=True)
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        for xb, _, _ in batches:
            n += len(xb)
            if time.perf_counter() - t >= seconds:
                break
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet20", "reduced_resnet18", "resnet32"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repetitions (the median is printed)")
    ap.add_argument("--no-data", action="store_true", help="skip the data-pipeline measurement")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16 instructions: {cpu_has_native_bf16()}")
    configs = [(n, p, cl) for n in a.models for p in a.precision for cl in (False, True)]
    runs = {c: [] for c in configs}
    for _ in range(a.repeats):  # interleaved: every configuration once per repetition
        for c in configs:
            runs[c].append(images_per_s(c[0], c[2], a.batch_size, a.seconds, c[1]))
    med = {c: sorted(v)[len(v) // 2] for c, v in runs.items()}
    print(f"{'model':18s} {'precision':9s} {'plain':>8s} {'channels_last':>14s} {'x fp32 (cl)':>12s}  "
          f"(training images/s, batch {a.batch_size}, median of {a.repeats})")
    for n in a.models:
        for p in a.precision:
            ratio = med[(n, p, True)] / med[(n, "fp32", True)] if "fp32" in a.precision else float("nan")
            print(f"{n:18s} {p:9s} {med[(n, p, False)]:8.0f} {med[(n, p, True)]:14.0f} {ratio:12.2f}")
    if a.no_data:
        return
    data = data_images_per_s(a.batch_size, a.seconds)
    print(f"data pipeline      {data:8.0f} images/s (uint8 tensors, batched PASS augmentation, channels_last)")
    for n in a.models:
        cl = med[(n, a.precision[0], True)]
        print(f"  adds {100 * cl / data:4.1f} % to a {n} training step (training {cl:.0f} vs data {data:.0f} "
              f"images/s)")


if __name__ == "__main__":
    main()
