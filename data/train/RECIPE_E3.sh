#!/usr/bin/env bash
# The equivariant e3 model next to the default mlp model (README "The e3 model"): same HSE06 labels,
# training structures, losses and held-out split. Run after RECIPE.sh (needs its labels and its PBE base
# store). Resumable like RECIPE.sh. Cost on 2 cores: ~1.5 h of iterate, ~45 min of evaluation.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1
W=../shared/data/water
# 1. iterate; the PBE base labels of iteration 0 are those of the default model's run (same structures
#    and SCF settings: the store is reused, nothing is recomputed)
mkdir -p labels/e3_model/iter.00
[ -f labels/e3_model/iter.00/base.h5 ] || cp labels/default_model/iter.00/base.h5 labels/e3_model/iter.00/base.h5
deepks-es iterate data/train/pbe_hse06_water_e3.yaml --no-progress
# 2. held-out BEGDB evaluation (PBE rows reused from RECIPE.sh's evaluation)
deepks-es eval labels/e3_model/model.pt labels/hse06_ccpvdz_df.h5 --frames $(cat data/train/heldout_begdb.txt) \
  --base labels/eval_begdb/pbe.h5 --out labels/eval_begdb_e3 --no-progress
# 3. SCF with the e3 model on the neutral WATER27 clusters, (H2O)1-20
deepks-es scf $W/water27_gmtkn55_kaplan2024/neutral/H2O*.xyz --model labels/e3_model/model.pt \
  --output labels/water27_e3_scf.json
# 4. the side-by-side table of README.md
python data/train/compare_models.py
