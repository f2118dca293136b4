"""Training throughput of the suite's backbones on this machine (images/s of forward + backward + Adam step on
random 32x32 batches), with and without channels_last, measured side by side in one run; the figures behind the
``cpu`` profile's choice of backbone and ``--dry-run``'s predictions.

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet20", "reduced_resnet18", "resnet32"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"{'model':18s} {'plain':>8s} {'channels_last':>14s}  (training images/s, batch {a.batch_size})")
    for name in a.models:
        plain = images_per_s(name, False, a.batch_size, a.seconds)
        cl = images_per_s(name, True, a.batch_size, a.seconds)
        print(f"{name:18s} {plain:8.0f} {cl:14.0f}")


if __name__ == "__main__":
    main()
