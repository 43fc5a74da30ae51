# Sourced by the stage recipes (RECIPE_STAGE*.sh): the repository root, its venv if there is one, the fastest
# thread setting on 2 cores, and the committed checkpoints copied into labels/ (never over what is there), so
# that a new machine computes only what is missing.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1
mkdir -p labels
cp -rn data/train/checkpoints/. labels/

# seed_base FROM WORKDIR: start WORKDIR's iteration 0 from an earlier stage's iteration-0 SCF store FROM (the
# same input model and SCF settings, a subset of the structures), so that only the new structures are
# computed; skipped when FROM is missing or WORKDIR's iteration 0 has begun.
seed_base() {
  mkdir -p "$2/iter.00"
  if [ -f "$1" ] && [ ! -f "$2/iter.00/base.h5" ] && [ ! -f "$2/iter.00/report.json" ]; then cp "$1" "$2/iter.00/base.h5"; fi
}

# unpack_archives S...: unpack the committed label archives data/train/labels/S.npz into labels/S.h5 (targets
# only; skipped where the store exists or no archive is committed), so that the label commands after it
# compute only the frames the archives lack.
unpack_archives() {
  for s in "$@"; do
    [ -f "labels/$s.h5" ] || [ ! -f "data/train/labels/$s.npz" ] || python data/train/pack_labels.py unpack "data/train/labels/$s.npz" "labels/$s.h5"
  done
}

# The held-out thermal frames of 2-10 waters: the README's "thermal MD, 2-10 waters" rows (32 frames). The
# held-out store holds larger frames too (label_thermal.sh), so the stage evaluations name these.
HELDOUT_2_10=(data/train/thermal/heldout/thermal_n0[2-9].xyz data/train/thermal/heldout/thermal_n10.xyz)
