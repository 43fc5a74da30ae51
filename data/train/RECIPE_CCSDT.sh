#!/usr/bin/env bash
# Reproduce the shipped CCSD(T) water model (data/ccsdt_model.pt, `--model ccsdt`), the energy-only
# data-efficiency study and the force validation of README "CCSD(T) force labels". Resumable: every step
# writes label stores / models under labels/ (git-ignored) and skips what is done; rerun after a kill.
# Cost on 2 cores: CCSD(T) labels ~1.7 h (data/train/label_ccsdt.sh), iterate ~40 min, study ~2 h,
# validation ~20 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=1
# 1. CCSD(T)/cc-pVDZ energies of the training structures, CCSD(T) forces and energies of held-out ones
bash data/train/label_ccsdt.sh          # steps 1-4
# 2. fine-tune the HSE06 model on the CCSD(T) energies alone, iterated to self-consistency
deepks-es iterate data/train/pbe_ccsdt_water.yaml --no-progress
cp labels/ccsdt_model/model.pt data/ccsdt_model.pt
# 3. how many energies, from scratch or fine-tuned (deepks-kit's CCSD energies and forces, n1-n3 -> n4, n6)
python data/train/energy_only_study.py
# 4. the shipped model against CCSD(T) forces and energies of held-out clusters
python data/train/ccsdt_validation.py
