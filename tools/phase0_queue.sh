#!/usr/bin/env bash
# The phase-0 learning curves behind the revised cpu profile's phase-0 recipes (results/README.md, "Phase-0 recipes
# of the revised cpu profile"), one family and seed after another.  Every run is checkpointed after each epoch in
# --out and resumes when the script runs again, so it can be started at the beginning of every session until done;
# each finished model lands in the phase-0 cache under the key a cell of the same recipe looks for.
#
#   tools/phase0_queue.sh            # run (or resume) every curve, in the order below
#   NICE=19 tools/phase0_queue.sh    # the same, yielding the cores to anything else (tests)
#
# Needs the datasets (BENCH_DATA or ~/.cache/rgal-bench/data) and .venv (make install).  Threads: OMP_NUM_THREADS
# (default 2, what the keys record).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/phase0-curves}
CURVE="nice -n ${NICE:-0} $PY benchmarks/phase0_curve.py --out $OUT --csv $OUT/curves.csv"

for seed in 0 1 2; do
  # PASS family (rotation: every image 4 samples): 16 epochs, decays at 7 and 14 (the official StepLR(45) of 101)
  $CURVE --method pass --epochs 16 --lr-step 7 --seed "$seed"
  # CE family (finetune, lwf, ewc, eeil, lwm, muc) and BCE family (lwf-mc, icarl): plain epochs cost a quarter
  $CURVE --method finetune --epochs 40 --lr-step 18 --seed "$seed"
  $CURVE --method icarl --epochs 40 --lr-step 18 --seed "$seed"
done
