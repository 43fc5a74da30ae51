"""Validation of the shipped CCSD(T) model (issue #13 item 4) against real high-level forces and energies
that training never saw: CCSD(T)/cc-pVDZ analytic forces of held-out thermal dimers and trimers
(``pyscf.grad.ccsd_t``; trimers frozen-core, as an all-electron trimer's (T) gradient needs ~25 GB),
CCSD(T) energies of held-out tetramers (thermal and deepks-kit valid.n4), and deepks-kit's CCSD forces
of its tetramers and hexamer proton-transfer path (CCSD, not CCSD(T): the (T)
part of the forces is left in the error there), next to plain PBE and the HSE06 model.

    python data/train/ccsdt_validation.py [--model data/ccsdt_model.pt] [--sets "thermal dimers" ...]

Needs the stores of data/train/label_ccsdt.sh (steps 3 and 4) and of energy_only_study.py (the imported
CCSD labels); labels the held-out structures with each model (resumable, labels/ccsdt_validation/) and
writes labels/ccsdt_validation/table.md.
"""

import argparse
import os
from pathlib import Path

import numpy as np

from deepks_es.cli import main
from deepks_es.dataset import geometry_key, target_records
from deepks_es.output import KCAL_PER_MOL_PER_HARTREE
from deepks_es.store import LabelStore
from deepks_es.workflow import scf_errors

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "labels"
OUT = LABELS / "ccsdt_validation"
#: name -> (target store, a name prefix selecting its held-out records, what the reference is)
SETS = {
    "thermal dimers": (LABELS / "ccsdt_ccpvdz_forces.h5", "thermal_n02", "CCSD(T)"),
    "thermal trimers": (LABELS / "ccsdt_fc_ccpvdz_forces.h5", "thermal_n03", "CCSD(T), frozen core"),
    "tetramers (thermal + deepks-kit)": (LABELS / "ccsdt_ccpvdz_heldout.h5", "", "CCSD(T)"),
    "deepks-kit tetramers": (LABELS / "energy_only_study" / "ccsd_ccpvdz_deepks_kit.h5", "valid_n4", "CCSD"),
    "hexamer proton transfer": (LABELS / "energy_only_study" / "ccsd_ccpvdz_deepks_kit.h5", "test_n6", "CCSD"),
}


def label(records, store: Path, *extra) -> Path:
    """Self-consistent forces of the structures of ``records`` (their source files; resumable)."""
    inputs = sorted({str(p if (p := Path(r["source"])).is_absolute() else ROOT / p) for r in records})
    assert main(["label", *inputs, "--forces", "--store", str(store), "--no-progress", *map(str, extra)]) == 0
    return store


def row(store: Path, refs: list) -> dict:
    targets = {geometry_key(r): r for r in refs}
    recs = [r for r in LabelStore(store).records() if geometry_key(r) in targets]
    out = scf_errors(recs, targets)
    de = np.array([r["e_tot"] - targets[geometry_key(r)]["e_tot"] for r in recs])
    out["rel_energy_mae_kcal"] = float(np.abs(de - de.mean()).mean() * KCAL_PER_MOL_PER_HARTREE)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "ccsdt_model.pt"))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    OUT.mkdir(parents=True, exist_ok=True)
    methods = {
        "PBE": ("--method", "pbe"),
        "HSE06 model": ("--method", "deepks", "--model", "default"),
        "CCSD(T) model": ("--method", "deepks", "--model", args.model),
    }
    lines = [
        "| held-out set | reference | frames | method | E MAE | rel. E MAE | max abs E | F RMSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.sets:
        path, prefix, reference = SETS[name]
        if not path.is_file():
            print(f"{name}: {path} missing; run data/train/label_ccsdt.sh / energy_only_study.py first")
            continue
        refs = [r for r in target_records(path) if r["name"].startswith(prefix) and r["converged"]]
        if not refs:
            continue
        for method, extra in methods.items():
            slug = (
                f"{name.split(' (')[0].replace(' ', '_')}_{method.split()[0].lower().replace('(', '').replace(')', '')}"
            )
            e = row(label(refs, OUT / f"{slug}.h5", *extra), refs)
            force = f"{e['force_rmse_ev_ang']:.3f}" if "force_rmse_ev_ang" in e else "–"
            lines.append(
                f"| {name} | {reference} | {e['frames']} | {method} | {e['energy_mae_kcal']:.2f} "
                f"| {e['rel_energy_mae_kcal']:.2f} | {e['energy_max_kcal']:.2f} | {force} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n\nkcal/mol per cluster, eV/Å; rel. E: after removing the set's mean offset.\n"
    (OUT / "table.md").write_text(text)
    print(text)
