"""Training throughput of the suite's backbones on this machine (images/s of forward + backward + Adam step on
random 32x32 batches), with and without channels_last, measured side by side in one run; the figures behind the
``cpu`` profile's choice of backbone and ``--dry-run``'s predictions.  Also the data pipeline alone (issue 2: "data
is not the bottleneck"): images/s of ``TensorBatches`` over 50 000 uint8 CIFAR-sized images (shuffle, index,
PASS's batched crop / flip / brightness, channels_last copy), and the share of a training step it adds.

    python benchmarks/throughput.py [--models resnet20 reduced_resnet18 resnet32] [--seconds 3] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmark.models import build_model  # noqa: E402


def images_per_s(name: str, channels_last: bool, batch: int, seconds: float) -> float:
    c = 1 if name.startswith("lenet") else 3
    m = build_model(name, 100, c, (0.5,) * c, (0.25,) * c)
    x, y = torch.rand(batch, c, 32, 32), torch.randint(0, 100, (batch,))
    if channels_last:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), 1e-3)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
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
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"{'model':18s} {'plain':>8s} {'channels_last':>14s}  (training images/s, batch {a.batch_size})")
    rates = []
    for name in a.models:
        plain = images_per_s(name, False, a.batch_size, a.seconds)
        cl = images_per_s(name, True, a.batch_size, a.seconds)
        print(f"{name:18s} {plain:8.0f} {cl:14.0f}")
        rates.append(cl)
    data = data_images_per_s(a.batch_size, a.seconds)
    print(f"data pipeline      {data:8.0f} images/s (uint8 tensors, batched PASS augmentation, channels_last)")
    for name, cl in zip(a.models, rates):
        print(f"  adds {100 * cl / data:4.1f} % to a {name} training step (training {cl:.0f} vs data {data:.0f} "
              f"images/s)")


if __name__ == "__main__":
    main()
