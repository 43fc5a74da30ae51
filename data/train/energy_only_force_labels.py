"""Intermediate force labels from energy-only data (issue #4 item 6; Chen, Yu, Gao, arXiv 2601.18416).

Train a correction on CCSD/cc-pVDZ *energies alone* of deepks-kit's water monomers, dimers and
trimers (train.n1-n3), label tetramers (valid.n4, every fifth frame) and the hexamer proton-transfer
path (test.n6, every third frame) with SCF forces, and compare with the CCSD forces that the training
never saw, next to a model trained on energies and forces, and plain PBE.

    python data/train/energy_only_force_labels.py        (resumable; writes labels/ccsd_force_labels.md)

Needs the PBE base store of iterate's first step (labels/default_model/iter.00/base.h5, for n1 and n2)
and computes the rest. Reference numbers: ../shared/data/water/deepks_kit_ccsd_ccpvdz_clusters
(energies.csv in Eh, forces.csv in Eh/Å, from deepks-kit's examples/water_cluster; see its SOURCE.txt).
"""

import csv
import os
import sys
from pathlib import Path

import numpy as np
import yaml
from pyscf.data.nist import BOHR

from deepks_es.cli import main
from deepks_es.dataset import geometry_key
from deepks_es.output import EV_PER_ANG_PER_AU, KCAL_PER_MOL_PER_HARTREE
from deepks_es.store import LabelStore, import_labels
from deepks_es.structures import read_frames

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT.parent / "shared" / "data" / "water" / "deepks_kit_ccsd_ccpvdz_clusters"
LABELS = ROOT / "labels"
OUT = LABELS / "ccsd_force_labels"


def ccsd_store(frames) -> Path:
    energies = {r["name"]: float(r["E_total_CCSD_ccpVDZ_Hartree"]) for r in csv.DictReader(open(KIT / "energies.csv"))}
    forces: dict = {}
    for r in csv.DictReader(open(KIT / "forces.csv")):
        forces.setdefault(r["name"], []).append([float(r[k]) for k in ("fx_Ha_per_A", "fy_Ha_per_A", "fz_Ha_per_A")])
    path = LABELS / "ccsd_ccpvdz_deepks_kit.h5"
    import_labels(
        frames,
        [energies[f.name] for f in frames],
        [np.array(forces[f.name]) * BOHR for f in frames],  # Eh/Å -> Eh/bohr
        path,
        method="ccsd",
        basis="cc-pVDZ",
        reference="deepks-kit examples/water_cluster (CCSD/cc-pVDZ), see shared/data/water SOURCE.txt",
    )
    return path


def label(inputs, store, *extra) -> Path:
    args = ["label", *map(str, inputs), "--forces", "--store", str(store), "--no-progress", *map(str, extra)]
    assert main(args) == 0
    return store


def train(name: str, losses: dict, target: Path, base: list, frames: list) -> Path:
    cfg = {
        "description": f"PBE -> CCSD/cc-pVDZ water, {name}, deepks-kit train.n1-n3",
        "workdir": str(OUT / name),
        "target": str(target),
        "base": [str(b) for b in base],
        "frames": [str(f) for f in frames],
        "losses": {"hamiltonian": 0.0, "eigenvalue": 0.0, "eigenvector": 0.0, "gap": 0.0, **losses},
        "train": {"epochs": 300, "lr": 3e-4, "lr_final": 3e-6, "batch_size": 16, "checkpoint_every": 50},
    }
    (OUT / name).mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--no-progress"]) == 0
    return OUT / name / "model.pt"


def errors(store: Path, ref: dict) -> dict:
    recs = [r for r in LabelStore(store).records() if geometry_key(r) in ref]
    out = {}
    for system in ("valid_n4", "test_n6"):
        rs = [r for r in recs if r["name"].startswith(system)]
        de = np.array([r["e_tot"] - ref[geometry_key(r)]["e_tot"] for r in rs])
        df = np.concatenate([(r["forces"] - ref[geometry_key(r)]["forces"]).ravel() for r in rs])
        out[system] = {
            "frames": len(rs),
            "e_mae": float(np.abs(de).mean() * KCAL_PER_MOL_PER_HARTREE),
            "rel_e_mae": float(np.abs(de - de.mean()).mean() * KCAL_PER_MOL_PER_HARTREE),
            "f_rmse": float(np.sqrt((df**2).mean()) * EV_PER_ANG_PER_AU),
        }
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    OUT.mkdir(parents=True, exist_ok=True)
    train_dirs = [KIT / "train.n1", KIT / "train.n2", KIT / "train.n3"]
    n4 = sorted((KIT / "valid.n4").glob("*.xyz"))[::5]
    n6 = sorted((KIT / "test.n6").glob("*.xyz"))[::3]
    frames = read_frames(train_dirs + n4 + n6)
    target = ccsd_store(frames)
    base_n12 = LABELS / "default_model" / "iter.00" / "base.h5"
    if not base_n12.is_file():
        sys.exit(f"{base_n12} missing: run deepks-es iterate data/train/pbe_hse06_water.yaml first")
    base_n3 = label([KIT / "train.n3"], LABELS / "pbe_ccpvdz_n3.h5", "--method", "pbe", "--save-matrices")
    models = {
        "energy only": train("energy_only", {"energy": 1.0, "force": 0.0}, target, [base_n12, base_n3], train_dirs),
        "energy + force": train(
            "energy_force", {"energy": 1000.0, "force": 1.0}, target, [base_n12, base_n3], train_dirs
        ),
    }
    stores = {"PBE": label(n4 + n6, OUT / "pbe_n4n6.h5", "--method", "pbe")}
    for name, model in models.items():
        stores[f"DeePKS, {name}"] = label(
            n4 + n6, OUT / f"{model.parent.name}_n4n6.h5", "--method", "deepks", "--model", model
        )
    ref = {geometry_key(r): r for r in LabelStore(target).records()}
    rows = {name: errors(store, ref) for name, store in stores.items()}
    lines = [
        "| model (trained on n1-n3) | n4: E MAE | n4: rel. E MAE | n4: F RMSE "
        "| n6: E MAE | n6: rel. E MAE | n6: F RMSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        a, b = row["valid_n4"], row["test_n6"]
        lines.append(
            f"| {name} | {a['e_mae']:.2f} | {a['rel_e_mae']:.2f} | {a['f_rmse']:.3f} "
            f"| {b['e_mae']:.2f} | {b['rel_e_mae']:.2f} | {b['f_rmse']:.3f} |"
        )
    n = (rows["PBE"]["valid_n4"]["frames"], rows["PBE"]["test_n6"]["frames"])
    lines.append(f"\nkcal/mol per cluster and eV/Å, against CCSD/cc-pVDZ; {n[0]} tetramers, {n[1]} hexamer frames.")
    text = "\n".join(lines)
    (LABELS / "ccsd_force_labels.md").write_text(text + "\n")
    print(text)
