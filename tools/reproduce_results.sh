#!/usr/bin/env bash
# Re-runs the sweeps behind results/ (the commands results/README.md quotes), in an order that keeps each seed's
# cached phase 0 / teacher in use while it is needed.  Every command resumes: cells whose result.json is committed
# are skipped, a cell with a checkpoint continues from it, so this both reproduces the committed tables on a new
# machine (delete a folder's cells first to recompute them) and carries unfinished sweeps forward.
#
#   tools/reproduce_results.sh                 # every sweep, in the order below
#   tools/reproduce_results.sh issue5 mnist    # only these (names: baselines issue5 mnist arvi cifar10-12ep cifar10 pass10 pass5 pass20
#                                              pass-probe, not in the default list)
#   DRY=1 tools/reproduce_results.sh           # what is finished, cached or still to run (run_benchmark --dry-run)
#
# Threads: OMP_NUM_THREADS (default 2, what the result files record as `torch_threads`, save where a command below
# says otherwise).  ARVI_CACHE: the arvi sweep's own teacher cache (default: BENCH_CACHE's folder + "-arvi").
#
# Needs the datasets (BENCH_DATA or ~/.cache/rgal-bench/data: python ../shared/data/expand.py DIR) and .venv
# (make install).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
ARVI_CACHE=${ARVI_CACHE:-${BENCH_CACHE:-$HOME/.cache/rgal-bench/cache}-arvi}
PY=${PY:-.venv/bin/python}
DRYRUN=${DRY:+--dry-run}
CIL="$PY run_benchmark.py --profile cpu --scenario cifar100 --no-progress $DRYRUN"
DFKD="$PY run_benchmark.py --profile cpu --task dfkd --no-progress $DRYRUN"

sweep() {
  case "$1" in
    # configs/*.yaml: the sweeps as --config files (cells run seed by seed: make_cells orders them seed-major)
    baselines) $CIL --config configs/cil-baselines-cpu.yaml ;;
    issue5)    $CIL --config configs/cil-issue5-cpu.yaml ;;
    # The teacher every MNIST cell distils (cached by configuration, not by thread count) and the seed-0 teacher,
    # kd-real and dafl cells of dfkd-mnist-cpu were made with one thread (their `torch_threads`): trained with two,
    # the teacher differs (98.83 % vs 98.68 %) and so would every distilled number.
    mnist)     OMP_NUM_THREADS=1 $DFKD --scenario mnist --seeds 0 --methods teacher kd-real dafl \
                 --out results/dfkd-mnist-cpu
               for s in 0 1 2; do $DFKD --scenario mnist --seeds $s --out results/dfkd-mnist-cpu
                 $DFKD --scenario mnist --seeds $s --methods rgal --rgal-variant released \
                 --out results/dfkd-mnist-cpu
                 # the ablation row DFAD + VI (AR off), beside DFAD and DFAD + AR + VI on the same teacher
                 $DFKD --scenario mnist --seeds $s --methods dfad+ar+vi --set dfad+ar+vi.ar_l=0 \
                 --set dfad+ar+vi.ar_m=0 --out results/dfkd-mnist-cpu; done
               # probe (seed 0): virtual interpolation added to DFAD's term on G(z) instead of replacing it
               $DFKD --scenario mnist --seeds 0 --methods dfad+ar+vi --set dfad+ar+vi.vi_mode=add \
                 --out results/dfkd-mnist-cpu ;;
    # The sweep's seed-0 cells distil a teacher trained with two threads (98.83 %): a cache of their own keeps it
    # apart from the one above.
    arvi)      for p in "1 1" "1 0.1" "0.1 0.1" "1 0.01" "0.1 0.01" "0 0"; do set -- $p
                 BENCH_CACHE="$ARVI_CACHE" $DFKD --scenario mnist --seeds 0 \
                 --methods dfad+ar+vi --set dfad+ar+vi.ar_l=$1 --set dfad+ar+vi.ar_m=$2 \
                 --out results/dfkd-mnist-arvi-sweep; done ;;
    cifar10)   $DFKD --config configs/dfkd-cifar10-cpu.yaml
               # probe: the generator's lr decays with the student's, as DFAD_cifar.py schedules both players
               $DFKD --scenario cifar10 --seeds 0 --methods dfad --set dfad.g_schedule=student \
                 --out results/dfkd-cifar10-cpu ;;
    # The first CIFAR-10 sweep: every method at 12 epochs (the profile's now: 22 / 40, budget-filling),
    # the DFAD student-mode probe and the RGAL student-terms ablation.
    cifar10-12ep)
               $DFKD --scenario cifar10 --seeds 0 --epochs 12 --methods teacher kd-real rgal cmi dfad dfad+ar+vi dafl \
                 --out results/dfkd-cifar10-cpu-12ep
               $DFKD --scenario cifar10 --seeds 0 --epochs 12 --methods dfad --set dfad.g_student_mode=train \
                 --out results/dfkd-cifar10-cpu-12ep
               $DFKD --scenario cifar10 --seeds 0 --epochs 12 --methods rgal --set rgal.emb=none --set rgal.tri_s=0 \
                 --set rgal.paired=false --out results/dfkd-cifar10-cpu-12ep ;;
    pass10|pass5|pass20)
               $CIL --config configs/cil-pass-family-cpu.yaml --phases "${1#pass}" ;;
    # probe (seed 0): later phases at 20 epochs instead of the profile's 5, on the same cached phase 0 -- more training
    # between phases means more forgetting for RGAL to prevent (does its gain grow with it?)
    pass-probe) $CIL --phases 10 --seeds 0 --inc-epochs 20 --methods pass pass+rgal \
                 --out results/cil-pass-probe-cpu ;;
    *) echo "error: unknown sweep '$1'; choose from baselines issue5 mnist arvi cifar10-12ep cifar10 pass10 pass5 pass20 pass-probe" >&2
       exit 2 ;;
  esac
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(baselines issue5 mnist arvi cifar10-12ep cifar10 pass10 pass5 pass20)
for n in "${names[@]}"; do sweep "$n"; done
