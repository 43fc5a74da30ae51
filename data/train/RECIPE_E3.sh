#!/usr/bin/env bash
# The equivariant e3 model next to the default mlp model (README "The e3 model"): same HSE06 labels,
# training structures, losses, validation and held-out split. Run after RECIPE.sh (needs its labels, its
# PBE base store and its evaluation). Resumable like RECIPE.sh. Cost on 2 cores: ~45 min of training and
# SCF checks, ~35 min of evaluation.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1
W=../shared/data/water
N=$W/water27_gmtkn55_kaplan2024/neutral
# 1. iterate; the PBE base labels of iteration 0 are those of the default model's run (same structures
#    and SCF settings: the store is reused, nothing is recomputed). As measured, the e3 model stops at
#    the SCF convergence guard of iteration 0 (7/8 check structures converge, twice), so iterate exits
#    with an error there; its first model (iter.00/model.pt) is evaluated below.
mkdir -p labels/e3_model/iter.00
[ -f labels/e3_model/iter.00/base.h5 ] || cp labels/default_model/iter.00/base.h5 labels/e3_model/iter.00/base.h5
deepks-es iterate data/train/pbe_hse06_water_e3.yaml --no-progress || echo "iterate stopped (see above)"
cp labels/e3_model/iter.00/model.pt data/e3_model.pt
# 2. held-out BEGDB evaluation of the e3 model 0 and of the mlp model 0 (PBE rows reused from RECIPE.sh)
for m in e3_model/iter.00:e3 default_model/iter.00:mlp0; do
  deepks-es eval labels/${m%%:*}/model.pt labels/hse06_ccpvdz_df.h5 --frames $(cat data/train/heldout_begdb.txt) \
    --base labels/eval_begdb/pbe.h5 --out labels/eval_begdb_${m##*:} --no-progress
done
# 3. SCF with the e3 model on the 15 neutral WATER27 clusters (H2O)1-20 (the mlp's: RECIPE.sh)
deepks-es scf $N/H2O.xyz $N/H2O[2-8].xyz $N/H2O6[bc]*.xyz $N/H2O8*.xyz $N/H2O20.xyz --model labels/e3_model/iter.00/model.pt \
  --output labels/water27_e3_scf.json
deepks-es scf $N/H2O20es.xyz $N/H2O20fc.xyz $N/H2O20fs.xyz --model data/e3_model.pt --output labels/water27_e3_scf_20b.json
# 4. the side-by-side table of README.md
python data/train/compare_models.py
