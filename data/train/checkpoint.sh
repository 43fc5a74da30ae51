#!/usr/bin/env bash
# Copy the finished iterations of an iterate workdir (report.json + model.pt of each, the final model.pt)
# into data/train/checkpoints/ for a commit (see data/train/checkpoints/README.md).
#   bash data/train/checkpoint.sh labels/default_model_thermal   (or a nested labels/study/workdir)
set -euo pipefail
src=${1:?usage: checkpoint.sh labels/WORKDIR}
src=${src%/}
dst=data/train/checkpoints/${src#labels/}  # the same path under labels/ (cp -rn puts it back there)
for d in "$src"/iter.*; do
  [ -f "$d/report.json" ] || continue
  mkdir -p "$dst/$(basename "$d")"
  # older reports name the models by absolute paths: keep them relative to the workdir
  python -c 'import json, os, sys; r = json.load(open(sys.argv[1])); w = os.path.dirname(sys.argv[1]) + "/..";
r.update({k: os.path.relpath(r[k], w) for k in ("model", "model_in") if r.get(k) and os.path.isabs(r[k])})
print(json.dumps(r, indent=1))' \
    "$d/report.json" > "$dst/$(basename "$d")/report.json"
  [ -f "$d/model.pt" ] && cp "$d/model.pt" "$dst/$(basename "$d")/"
done
[ -f "$src/model.pt" ] && cp "$src/model.pt" "$dst/"
ls -R "$dst"
