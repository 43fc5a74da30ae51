#!/usr/bin/env bash
# Stage 5 of the default model (issue #12; config data/train/pbe_hse06_water_stage5.yaml): stage 4 with the
# thermal 7- and 8-water frames and higher gap / eigenvalue weights, then evaluated held out. Where
# RECIPE_STAGE4.sh's iteration-0 SCF pass is there (labels/default_model_sc/iter.00/base.h5: the same model's
# SCFs on 417 of the 429 structures) it is copied, so that only the 12 new structures are computed.
# Resumable; committed checkpoints (data/train/checkpoints/) are copied into labels/ first.
# Cost on 2 idle cores (measured 2026-12-06): the 12 new SCFs with forces and response 24 min (all 429 without
# stage 4's store: ~100 min), training 8 min, held-out evaluation 32 min. Iteration 1 (model 0's SCF pass on
# the training structures, estimated 60-80 min like stage 4's) is part of the iterate step but has not been
# run yet: the committed checkpoint and the README's numbers stop at iteration 0.
set -euo pipefail
. "$(dirname "$0")/stage_env.sh"
seed_base labels/default_model_sc/iter.00/base.h5 labels/default_model_stage5
deepks-es iterate data/train/pbe_hse06_water_stage5.yaml --no-progress
# held out, self-consistent with forces, against HSE06-DF (the PBE base store: RECIPE_STAGE2.sh step 3)
deepks-es eval labels/default_model_stage5/iter.00/model.pt labels/hse06_thermal_heldout_df.h5 \
  --base labels/pbe_thermal_heldout.h5 --out labels/eval_thermal_stage5 --no-progress \
  --frames "${HELDOUT_2_10[@]}"
