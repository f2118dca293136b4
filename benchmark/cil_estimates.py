"""``--dry-run``'s wall-time estimate of a class-incremental cell on a 2-core CPU: the training throughput of each
network (measured with ``benchmarks/throughput.py``) times the images of each phase and the method's declared cost
per image (``register_method``'s ``cost``, ``CILMethod.later_cost_scale``).  ``benchmarks/check_estimates.py``
compares the estimates with the committed cells' measured times.
"""
from __future__ import annotations

from benchmark.methods import METHODS, full_params


# CPU training throughput (images/s, 2 cores, batch 64, channels_last) for --dry-run's predictions.  resnet20,
# resnet32 and reduced_resnet18 were measured here with benchmarks/throughput.py; wrn16_1 and wrn16_2 with
# ``benchmarks/throughput.py --models wrn16_2 wrn16_1 --batch-size 128`` (986 and 296; wrn16_2 kept at
# 280, what the cpu CIFAR teacher's real training averaged: 14 x 50,000 images in 2594 s, partly beside tests);
# resnet18 is the team's reference figure (55 images/s at batch 256); the others are estimates from their FLOPs
# (wrn40_1 and wrn40_2 scaled by wrn16_2's measured / FLOP-estimated ratio, 0.7).
CPU_IMAGES_PER_S = {"resnet18": 50, "resnet34": 25, "reduced_resnet18": 240, "resnet20": 430, "resnet32": 270,
                    "wrn16_1": 900, "wrn16_2": 280, "wrn40_1": 210, "wrn40_2": 85, "lenet5": 8000,
                    "lenet5_half": 12000,
                    # at 224 pixels: 1.8 GFLOPs an image against the CIFAR ResNet-18's 0.56 (50 x 0.56 / 1.8), not
                    # measured (the suite runs ImageNet only on GPUs)
                    "resnet18_imagenet": 15}


def phase0_loaded(timings: dict) -> bool:
    """Whether a finished cell's phase 0 came ready-made (a cache hit, or a miss restored from a carried
    ``phase0.pt``) rather than trained: ``timings["phase0_cache"]`` as ``CellRun`` records it."""
    cache = str(timings.get("phase0_cache") or "")
    return cache.startswith("hit") or cache.startswith("miss, restored from")


def predicted_seconds(cfg: dict) -> tuple[float, float]:
    """(phase-0 seconds, later-phases seconds) on a 2-core CPU, from the throughput table above."""
    sizes = cfg["phase_sizes"]
    ips = CPU_IMAGES_PER_S.get(cfg["model"], 200)
    n_per = {"cifar100": 500, "cifar100-mini": 20, "tinyimagenet": 500, "cifar10": 5000, "mnist": 6000}[cfg["scenario"]]
    n_per = min(n_per, (cfg.get("subset") or [n_per])[0])
    if cfg["scenario"] == "tinyimagenet":
        ips /= 4  # 64x64 images
    r = cfg["recipe"]
    entry = METHODS.entry(cfg["method"])
    if entry.factory.offline:  # one training on every class
        return sum(sizes) * n_per * r["base"]["epochs"] / ips + 2.0 * len(sizes), 0.0
    c0, c1 = entry.extra.get("cost", (1.0, 1.0))
    c1 *= entry.factory.later_cost_scale(full_params(cfg["method"], cfg["method_params"]))
    later = sum(sizes[1:]) * n_per * r["inc"]["epochs"] * c1 / ips + 2.0 * len(sizes)
    return sizes[0] * n_per * r["base"]["epochs"] * c0 / ips, later
