"""Does a descriptor that keeps the couplings between radial shells and angular channels fit better (#12)?

The default ``mlp`` reads per-shell invariants of each atom's projected density (power traces of every
(2l+1) x (2l+1) block, 108 per atom); ``mlp_coupled`` adds the invariants of the full 108 x 108 block's
irreps (1494 per atom). The shipped model's self-consistent energy error on its own training structures
scatters by ~0.045 kcal/mol per water at every size from 2 waters up (0.011 for monomers): the
intermolecular part is what the fit misses. This study trains both kinds from scratch on the same data
at a fixed density and compares them, with a wider ``mlp`` of about ``mlp_coupled``'s parameter count.

Data: plain PBE/cc-pVDZ SCFs (no model, forces and matrices; computed here into
``labels/descriptor_study/pbe.h5``, 22 min on 2 cores, measured 2026-12-06) of deepks-kit train.n1-n3
(monomers to trimers) and
the thermal training frames of 1-4 waters, against their HSE06-DF labels (the committed archives, unpacked
by ``stage_env.sh``'s ``unpack_archives``); stage 6's loss weights without the self-consistent level
response; 300 epochs from scratch (lr 1e-3 -> 1e-5), iterate's 10 % validation split by structure.

    python data/train/descriptor_study.py [--variants "mlp 200x3" ...]

Resumable: each variant trains in labels/descriptor_study/<variant>/ and a finished model is reused. Prints
fixed_density_study.py's Markdown table (kept epoch's validation and training errors), then each model's
self-consistent errors with forces (``deepks-es eval``, into labels/descriptor_study/eval_<variant>/, ~4-5
min each) on the 12 held-out thermal frames of 2-4 waters against HSE06-DF: iteration 0 of an iterate run,
which shows how far each model's own potential moves the density it was fitted at.

With ``--iterate``, each variant is also iterated (``deepks-es iterate`` on the config written into
labels/descriptor_study/iterate_<variant>/config.yaml; resumable): SCF passes with forces on the same
structures, each followed by a warm restart of 100 epochs at the pass's densities, twice, with the same losses
(stage 6's settings otherwise). Each pass took 19-28 min and each warm start 6-8 min (the mlp's 2) on 2
cores. The models so made (iterate_<variant>/iter.kk/model.pt) are evaluated the same way, into
eval_iterate_<variant>_iter.kk/, and the shipped model, into eval_shipped/.
The study as run (README.md, "The coupled descriptor through iterations"):

    python data/train/descriptor_study.py --variants "mlp 200x3" "mlp_coupled 200x3" --iterate
"""

import argparse
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

from deepks_es.cli import main
from deepks_es.config import load_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from fixed_density_study import print_table, row, train_in  # noqa: E402  (the same table and training)

OUT = ROOT / "labels" / "descriptor_study"
BASE = OUT / "pbe.h5"
KIT = ROOT.parent / "shared" / "data" / "water" / "deepks_kit_ccsd_ccpvdz_clusters"
FRAMES = [KIT / "train.n1", KIT / "train.n2", KIT / "train.n3"] + sorted(
    (ROOT / "data" / "train" / "thermal" / "train").glob("thermal_n0[1-4].xyz")
)
TARGETS = [ROOT / "labels" / "hse06_ccpvdz_df.h5", ROOT / "labels" / "hse06_thermal_train_df.h5"]
STAGE6 = load_config(ROOT / "data" / "train" / "pbe_hse06_water_stage6.yaml", "iterate")
LOSSES = {**asdict(STAGE6.losses), "level_response": False}
TRAIN = {**asdict(STAGE6.train), "epochs": 300, "lr": 1e-3, "lr_final": 1e-5, "warmup_epochs": 0}
ITERATE = {  # --iterate: two warm restarts of 100 epochs, stage 6's settings otherwise
    "train": {**asdict(STAGE6.train), "epochs": 100},
    "iterate": {**asdict(STAGE6.iterate), "iterations": 2, "epochs": [100, 100]},
    "scf": asdict(STAGE6.scf),
}
VARIANTS = {
    "mlp 200x3": {"kind": "mlp", "hidden": [200, 200, 200]},
    "mlp_coupled 200x3": {"kind": "mlp_coupled", "hidden": [200, 200, 200]},
    "mlp 400x3": {"kind": "mlp", "hidden": [400, 400, 400]},
}


def label_base() -> None:
    """The PBE base store (resumable) and the unpacked HSE06-DF targets (and the held-out ones, with their PBE
    base store, for the evaluation)."""
    env = ROOT / "data" / "train" / "stage_env.sh"
    archives = "hse06_ccpvdz_df hse06_thermal_train_df hse06_thermal_heldout_df pbe_thermal_heldout"
    subprocess.run(["bash", "-c", f". {env} && unpack_archives {archives}"], check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    args = ["--method", "pbe", "--forces", "--save-matrices", "--store", str(BASE), "--no-progress"]
    main(["label", *map(str, FRAMES), *args])


def train_variant(name: str) -> Path:
    """Train one variant from scratch (or reuse its finished model); returns the model path."""
    config = {"target": [str(p) for p in TARGETS], "base": str(BASE), "seeds": [0], "model": VARIANTS[name]}
    return train_in(OUT, name, {**config, "losses": LOSSES, "train": TRAIN})


def iterate_variant(name: str, model: Path) -> None:
    """``deepks-es iterate`` from a variant's model (trained at PBE densities) on the same structures, into
    iterate_<variant>/; a killed or finished run resumes where it stopped."""
    workdir = OUT / f"iterate_{model.parent.name}"
    config = {
        "description": f"descriptor study (#12): {name} iterated on the study's structures of 1-4 waters",
        "workdir": str(workdir),
        "init_model": str(model),
        "init_density": str(BASE),
        "target": [str(p) for p in TARGETS],
        "frames": [str(p) for p in FRAMES],
        "basis": STAGE6.basis,
        "xc": STAGE6.xc,
        "seeds": [0],
        "losses": LOSSES,
        **ITERATE,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    main(["iterate", str(workdir / "config.yaml"), "--no-progress"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterate", action="store_true", help="also iterate each variant (resumable)")
    args = parser.parse_args()
    label_base()
    models = {name: train_variant(name) for name in args.variants}
    if args.iterate:
        for name, path in models.items():
            iterate_variant(name, path)
    print_table([row(name, path) for name, path in models.items()])
    heldout = sorted((ROOT / "data" / "train" / "thermal" / "heldout").glob("thermal_n0[2-4].xyz"))
    stores = [
        str(ROOT / "labels" / "hse06_thermal_heldout_df.h5"),
        "--base",
        str(ROOT / "labels" / "pbe_thermal_heldout.h5"),
    ]
    # and the models of each variant's iterate run (--iterate), where made
    outs = {path: OUT / f"eval_{path.parent.name}" for path in models.values()}
    outs[ROOT / "data" / "default_model.pt"] = OUT / "eval_shipped"  # the reference: the shipped model
    for path in sorted(p for m in models.values() for p in OUT.glob(f"iterate_{m.parent.name}/iter.*/model.pt")):
        outs[path] = OUT / f"eval_{path.parents[1].name}_{path.parent.name}"
    for path, out in outs.items():
        main(["eval", str(path), *stores, "--out", str(out), "--no-progress", "--frames", *map(str, heldout)])
