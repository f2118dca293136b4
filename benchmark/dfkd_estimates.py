"""What a distillation cell costs and did: the ``--dry-run`` estimates (teacher training, synthesis and student steps
from the 2-core CPU throughput table ``benchmark.cil_estimates.CPU_IMAGES_PER_S``), the rounds of an epoch, and the
throughput line printed when a cell finishes.  ``benchmarks/check_estimates.py`` compares the estimates with
measured cells.
"""
from __future__ import annotations

from benchmark.dfkd_methods import DFKD_METHODS


def throughput_line(res: dict) -> str:
    t = res.get("timings") or {}
    method = res["cell"]["method"]
    parts = [f"{method} seed {res['cell']['seed']}"]
    for row, m in res["rows"].items():  # the method's own row is the student; others are named
        parts.append(f"{'student' if row == method != 'teacher' else row} top-1 {100 * m['top1']:.2f} %")
    if t.get("synthesis_images_per_s"):
        # images through the generator's optimisation steps; pool methods keep one batch of each round
        kept = f" ({t['pool_images_per_s']:.1f} img/s kept in the pool)" if t.get("pool_images_per_s") else ""
        parts.append(f"synthesis {t['synthesis_images_per_s']:.0f} img/s{kept}")
    if t.get("student_images_per_s"):
        parts.append(f"student {t['student_images_per_s']:.0f} img/s")
    if t.get("wall_seconds"):
        parts.append(f"{t['wall_seconds'] / 60:.1f} min")
    return ", ".join(parts)


def predicted_teacher_seconds(cfg: dict, train_images: int) -> float:
    """Rough 2-core CPU estimate of training a cell's teacher on a cache miss (no test evaluation during training):
    ``train_images`` (``DFKDCellRun.train_images``) per epoch, fewer where the recipe caps an epoch's steps."""
    from benchmark.cil_estimates import CPU_IMAGES_PER_S

    t = cfg["teacher_recipe"]
    per_epoch = train_images
    if t.get("max_steps_per_epoch"):
        per_epoch = min(per_epoch, t["max_steps_per_epoch"] * t["batch_size"])
    return t["epochs"] * per_epoch / CPU_IMAGES_PER_S.get(cfg["teacher"], 200)


# The generator's forward pass on this CPU, images/s at 32x32: ~3000 at ngf 16 (MNIST) and ~1750 at ngf 32 (CIFAR-10),
# fitted on the committed cells' student-step timings (DFAD family: fresh images every step), i.e. ~ngf^-0.8.
def generator_images_per_s(ngf: int) -> float:
    return 3000.0 * (16 / ngf) ** 0.8


def rounds_per_epoch(cfg: dict) -> int:
    """Synthesis rounds of an epoch of a cell (``ep_steps // kd_steps``; pool methods take all steps in one round)."""
    d = cfg["distill"]
    return max(1, d["ep_steps"] // (cfg["method_params"].get("kd_steps") or d["ep_steps"]))


def predicted_dfkd_seconds(cfg: dict, test_images: int = 10000) -> float:
    """Rough 2-core CPU estimate of one distillation cell (``--dry-run``) from the throughput table
    (``benchmark.cil_estimates.CPU_IMAGES_PER_S``, training images/s of each network) and the generator's rate above:

    * student steps: the student's training pass and the teacher's forward (~1/3 of a training pass) per image, plus
      the generator's forward for the generator-based methods, which draw fresh images every step;
    * synthesis: per image and step, ``synthesis_cost`` teacher-plus-student training passes (the method registers
      it: 0.65 for the adversarial generator-based methods, 2 for CMI, 1 for RGAL and DeepInversion) plus the
      generator's forward and backward (3 forwards) for methods with a generator;
    * evaluation of the student on the test set every ``eval_every`` epochs, at ~2.5 training rates.

    ``benchmarks/check_estimates.py`` prints it beside the measured wall time of every committed cell."""
    from benchmark.cil_estimates import CPU_IMAGES_PER_S

    if cfg["method"] == "teacher":
        return 0.0
    d, p = cfg["distill"], cfg["method_params"]
    entry = DFKD_METHODS.entry(cfg["method"])
    ips_t = CPU_IMAGES_PER_S.get(cfg["teacher"], 200)
    ips_s = CPU_IMAGES_PER_S.get(cfg["student"], 200)
    gen = generator_images_per_s(d.get("ngf", 64))
    steps = d["epochs"] * d["ep_steps"]
    rounds = d["epochs"] * rounds_per_epoch(cfg)
    fresh = entry.factory.synthesizes and not entry.factory.uses_pool
    student = steps * p.get("student_batch", 128) * (1 / ips_s + 0.33 / ips_t + (1 / gen if fresh else 0.0))
    per_synth = entry.extra.get("synthesis_cost", 0.65) * (1 / ips_t + 1 / ips_s)
    if entry.extra.get("generator", True):
        per_synth += 3 / gen
    synth = rounds * p.get("g_steps", 0) * d["synthesis_batch"] * per_synth
    evals = -(-d["epochs"] // d.get("eval_every", 1))
    return student + synth + evals * test_images / (2.5 * ips_s)
