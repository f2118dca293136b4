"""Throughput of every data-free method's two halves on this machine, for sizing the ``cpu`` profile: synthetic
images/s of ``synthesize()`` (generator or pixel steps, each counted once per image of the synthesis batch) and
student images/s of ``student_loss()`` + SGD step, with the profile's pair, batch sizes and generator width.
Teachers are randomly initialised (speed does not depend on the weights).  Methods are interleaved over
``--reps`` repetitions and the median is printed, so that a shared machine's drift hits every method alike.

    python benchmarks/dfkd_throughput.py --scenario mnist --profile cpu
    python benchmarks/dfkd_throughput.py --scenario cifar10 --profile cpu --g-steps 5 --kd-steps 10
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    import strategies.dfkd  # noqa: F401
    from benchmark.dfkd_profiles import dfkd_profile
    from benchmark.dfkd_runner import DFKD_AUGMENT
    from benchmark.models import build_model
    from benchmark.scenarios import SCENARIOS
    from strategies.dfkd import DFKD_METHODS, DFKDContext

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="mnist", choices=["mnist", "cifar10", "cifar100"])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--methods", nargs="+", default=["dafl", "dfq", "dfad", "dfad+ar+vi", "deepinversion", "cmi",
                                                      "rgal", "kd-real"])
    ap.add_argument("--g-steps", type=int, default=5, help="generator steps timed per repetition")
    ap.add_argument("--kd-steps", type=int, default=10, help="student steps timed per repetition")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    prof = dfkd_profile(a.profile, a.scenario)
    spec = SCENARIOS.get(a.scenario)
    c, n_cls = (1, 10) if a.scenario == "mnist" else (3, 10 if a.scenario == "cifar10" else 100)
    torch.manual_seed(0)
    teacher = build_model(prof.teacher, n_cls, c, spec.mean, spec.std).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if prof.distill.channels_last:
        teacher.to(memory_format=torch.channels_last)
    real = (torch.randint(0, 256, (1024, c, 32, 32), dtype=torch.uint8), torch.randint(0, n_cls, (1024,)))
    methods, tmp = {}, tempfile.mkdtemp()
    for m in a.methods:
        entry = DFKD_METHODS.entry(m)
        params = dict(entry.extra["defaults"])
        for scope in ("*", m):
            params.update({k: v for k, v in prof.method_params.get(scope, {}).items() if k in params})
        params["g_steps"] = a.g_steps
        student = build_model(prof.student, n_cls, c, spec.mean, spec.std)
        if prof.distill.channels_last:
            student.to(memory_format=torch.channels_last)
        ctx = DFKDContext(teacher, student, params, prof.distill, n_cls, (c, 32, 32), spec.mean, spec.std,
                          DFKD_AUGMENT[a.scenario], torch.device("cpu"), torch.Generator().manual_seed(0),
                          Path(tmp) / m, m, real_data=real)
        meth = entry.factory(ctx)
        opt = torch.optim.SGD(meth.trainable(), lr=1e-3, momentum=0.9)
        meth.synthesize()  # warm-up (and a pool to draw from)
        methods[m] = (meth, opt, [], [])
    for _ in range(a.reps):
        for m, (meth, opt, syn, stu) in methods.items():
            if meth.synthesizes:
                t0 = time.perf_counter()
                meth.synthesize()
                syn.append(a.g_steps * prof.distill.synthesis_batch / (time.perf_counter() - t0))
            t0, n = time.perf_counter(), 0
            for _ in range(a.kd_steps):
                loss, k = meth.student_loss()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n += k
            stu.append(n / (time.perf_counter() - t0))
    print(f"{a.scenario} {prof.teacher} -> {prof.student}, profile {a.profile} (synthesis batch "
          f"{prof.distill.synthesis_batch}, ngf {prof.distill.ngf}), median of {a.reps} interleaved repetitions")
    print(f"{'method':14s} {'synthesis img/s':>16s} {'student img/s':>14s}")
    for m, (meth, _, syn, stu) in methods.items():
        s = f"{statistics.median(syn):16.0f}" if syn else f"{'-':>16s}"
        print(f"{m:14s} {s} {statistics.median(stu):14.0f}")


if __name__ == "__main__":
    main()
