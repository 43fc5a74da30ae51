#!/usr/bin/env bash
# Stage 4 of the default model (issue #12): stage 3's shipped model (wide model 1) iterated with the
# eigenvalue and gap terms on the first-order self-consistent levels (losses.level_response; config
# data/train/pbe_hse06_water_sc.yaml), then evaluated held out like stage 3. Needs RECIPE_STAGE3.sh's
# outputs (labels/default_model_wide/iter.01: wide model 1 and the densities of its input model's pass).
# Resumable; committed checkpoints (data/train/checkpoints/) are copied into labels/ first, so a new
# machine computes only what is missing.
# Cost on 2 idle cores (measured 2026-12-06): per iteration an SCF pass with forces and the levels' CPKS
# response on 417 structures (77.8 min for iteration 0, most of it before the response's XC kernel moved
# to grid level 1, which cut the response's cost threefold) + ~4 min of training; held-out evaluation
# ~30 min; level_response_study.py ~25 min (three 8-min trainings; 25 s once they are done).
set -euo pipefail
. "$(dirname "$0")/stage_env.sh"
deepks-es iterate data/train/pbe_hse06_water_sc.yaml --no-progress
# the same training step without the term and at other weights, all at first order (README "Stage 4")
python data/train/level_response_study.py
# held out, self-consistent with forces, against HSE06-DF (the PBE base store: RECIPE_STAGE2.sh step 3)
deepks-es eval labels/default_model_sc/iter.00/model.pt labels/hse06_thermal_heldout_df.h5 \
  --base labels/pbe_thermal_heldout.h5 --out labels/eval_thermal_sc0 --no-progress \
  --frames "${HELDOUT_2_10[@]}"
