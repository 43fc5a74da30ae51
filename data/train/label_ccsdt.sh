#!/usr/bin/env bash
# CCSD(T)/cc-pVDZ labels for the shipped CCSD(T) water model (issue #13) and its validation. Resumable:
# every step writes to a label store under labels/ (git-ignored) and skips what is stored; rerun after a
# kill. All-electron (PySCF 2.14, RHF reference, conv_tol 1e-10). Measured per frame on 2 cores: energies
# monomer 0.4 s, dimer 2.2 s, trimer 18 s, tetramer 98 s; CCSD(T) forces dimer ~40 s, trimer ~7 min.
#   1. energies of the training structures: deepks-kit train.n1-n3 (300) + thermal n01-n03 (36)    ~45 min
#   2. CCSD(T) forces of the held-out thermal dimers (4); frozen-core CCSD(T) forces of the same dimers
#      (the frozen-core effect on forces) and of the held-out trimers (an all-electron trimer's (T)
#      gradient needs ~25 GB, over a 23 GB machine; frozen 1s cores ~13 GB)               ~3 + 3 + ~35 min
#   3. CCSD(T) energies of held-out tetramers: thermal n04 (4), deepks-kit valid.n4 every fifth (10) ~25 min
#   4. PBE base labels (forces, matrices) of the training structures, for from-scratch training     ~25 min
# Usage: bash data/train/label_ccsdt.sh [STEP ...]   (default: all steps in this order)
# Steps 1-3 done once are in data/train/labels/ccsdt_ccpvdz*.npz: unpack them into labels/ first to skip
# their compute (python data/train/pack_labels.py unpack data/train/labels/ccsdt_ccpvdz.npz labels/ccsdt_ccpvdz.h5).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=1
K=../shared/data/water/deepks_kit_ccsd_ccpvdz_clusters
T=data/train/thermal
TRAIN=($K/train.n1 $K/train.n2 $K/train.n3 $T/train/thermal_n0[123].xyz)
mkdir -p labels
label() { deepks-es label "$@" --no-progress; }
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(1 2 3 4)
for step in "${steps[@]}"; do
  case $step in
    1) label "${TRAIN[@]}" --method "ccsd(t)" --store labels/ccsdt_ccpvdz.h5 ;;
    2) label $T/heldout/thermal_n02.xyz --method "ccsd(t)" --forces --store labels/ccsdt_ccpvdz_forces.h5
       label $T/heldout/thermal_n0[23].xyz --method "ccsd(t)" --frozen-core --forces --store labels/ccsdt_fc_ccpvdz_forces.h5 ;;
    3) label $T/heldout/thermal_n04.xyz --method "ccsd(t)" --store labels/ccsdt_ccpvdz_heldout.h5
       label $(ls $K/valid.n4/*.xyz | awk 'NR % 5 == 1') --method "ccsd(t)" --store labels/ccsdt_ccpvdz_heldout.h5 ;;
    4) label "${TRAIN[@]}" --method pbe --forces --save-matrices --store labels/pbe_ccpvdz_cc.h5 ;;
    *) echo "unknown step $step (1-4)" >&2; exit 2 ;;
  esac
done
