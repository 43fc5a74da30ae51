#!/usr/bin/env bash
# Stage 6 of the default model (issue #12; config data/train/pbe_hse06_water_stage6.yaml): stage 4's loss
# weights on stage 5's structures plus the 9-10-water thermal frames and 8-10-water liquid cuts; model 0 is
# evaluated held out before iteration 1's SCF pass. Where RECIPE_STAGE5.sh's iteration-0 SCF pass is there
# (labels/default_model_stage5/iter.00/base.h5: the same model's SCFs on 429 of the 451 structures) it is
# copied, so that only the 22 new structures are computed. Resumable.
# Cost on 2 idle cores (measured 2026-12-06): the 22 new SCFs with forces and the levels' response 93 min
# (8 / 9 / 10 waters: 2.1 / 3.6 / 5.8 min each; all 451 without stage 5's store: ~3.2 h), training 12 min,
# convergence check 1 min; then the held-out evaluation. Iteration 1 (rerun without --stop-after: model 0's
# SCF pass on the 451 structures, ~3 h) has not been run.
set -euo pipefail
. "$(dirname "$0")/stage_env.sh"
seed_base labels/default_model_stage5/iter.00/base.h5 labels/default_model_stage6
deepks-es iterate data/train/pbe_hse06_water_stage6.yaml --stop-after 0 --no-progress
# held out, self-consistent with forces, against HSE06-DF (the PBE base store: RECIPE_STAGE2.sh step 3)
deepks-es eval labels/default_model_stage6/iter.00/model.pt labels/hse06_thermal_heldout_df.h5 \
  --base labels/pbe_thermal_heldout.h5 --out labels/eval_thermal_stage6 --no-progress \
  --frames "${HELDOUT_2_10[@]}"
