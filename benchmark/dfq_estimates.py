"""What a quantization cell costs (``--dry-run``): a rough 2-core CPU estimate from the networks' training rates
(``benchmark.cil_estimates.CPU_IMAGES_PER_S``), the GDFQ generator's rate at its width (``ngf``) and the cost of
fake quantization (``QUANT_COST``: a quantized network's pass over a float one's).
"""
from __future__ import annotations

from benchmark.dfkd_estimates import generator_images_per_s

# a 4-bit ResNet-20 against the float one, side by side at 2 threads: a training step at batch 64 1.1x, an evaluation
# pass at batch 1000 1.5x; one figure for both, not yet checked against measured cells
QUANT_COST = 1.3


def _method_and_rates(cfg: dict):
    """(registry class, full parameters, the teacher's training images/s, the generator's images/s) of a cell."""
    from benchmark.cil_estimates import CPU_IMAGES_PER_S
    from benchmark.dfq_methods import DFQ_METHODS
    from benchmark.methods import full_params

    m, p = DFQ_METHODS.get(cfg["method"]), full_params(cfg["method"], cfg["method_params"], DFQ_METHODS)
    ips, gen = CPU_IMAGES_PER_S.get(cfg["teacher"], 200), generator_images_per_s(p["ngf"])
    if cfg.get("image_size"):  # ImageNet: the table's rate is at 224 pixels, the generator's at 32
        ips *= (224 / cfg["image_size"]) ** 2
        gen *= (32 / cfg["image_size"]) ** 2
    return m, p, ips, gen


def predicted_dfq_seconds(cfg: dict, test_images: int = 10000, set_ready: bool = False) -> float:
    """Warm-up iterations (generator step + teacher backward + student forward), training iterations (GDFQ: the
    generator step as well; IntraQ: a teacher forward), IntraQ's synthesis (``synthesis_seconds``; not counted when
    ``set_ready``: the set comes from the cache), evaluation every ``eval_every`` epochs."""
    if cfg["method"] == "teacher":
        return 0.0
    q = cfg["quant"]
    m, p, ips, gen = _method_and_rates(cfg)
    g_step = 3 / gen + 1 / ips + (QUANT_COST / ips if m.rgal else 0.0)  # generator + teacher (+ student) backward
    warm = q["warmup_epochs"] * q["ep_steps"]
    train = (q["epochs"] - q["warmup_epochs"]) * q["ep_steps"] * q["synthesis_batch"]
    student = QUANT_COST / ips
    if m.family == "gdfq":
        sec = warm * q["synthesis_batch"] * (g_step + 0.33 * student) + train * (g_step + student)
    else:
        sec = warm * p["calib_batch"] * (g_step + 0.33 * student) + train * (student + 0.33 / ips)
        sec += 0.0 if set_ready else synthesis_seconds(cfg)
    evals = -(-q["epochs"] // q.get("eval_every", 1))
    return sec + evals * test_images * QUANT_COST / (2.5 * ips)


def synthesis_seconds(cfg: dict) -> float:
    """IntraQ's set: ``n_images x synth_steps`` teacher passes (forward and backward), and as many quantized-student
    passes with RGAL's terms; 0 for a method without a fixed set."""
    m, p, ips, _ = _method_and_rates(cfg)
    if m.family != "intraq":
        return 0.0
    return p["n_images"] * p["synth_steps"] * (1 / ips + (QUANT_COST / ips if m.rgal else 0.0))
