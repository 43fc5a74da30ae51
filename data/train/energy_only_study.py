"""Force labels from energies alone: the data-efficiency study of issue #13 (Chen, Yu, Gao, arXiv 2601.18416).

Train corrections on N = 25, 50, 100, 200, 300 CCSD/cc-pVDZ energies of deepks-kit's water monomers,
dimers and trimers (train.n1-n3: 300 structures with CCSD energies *and* forces, so the energy + force
variant can be compared on the same structures), from scratch (PBE base, new model) or fine-tuned from
the shipped HSE06 model (its own SCF as the base, ``init_model``), with the energy alone or energy and
forces; then label tetramers (valid.n4, every fifth: 10) and the hexamer proton-transfer path (test.n6,
every third: 7), sizes never trained on, with self-consistent forces and compare with their CCSD labels.

    python data/train/energy_only_study.py [--sizes 25 100] [--variants "fine-tuned, E"]

Resumable (label stores and models under labels/energy_only_study/; a finished model or store is reused).
Writes labels/energy_only_study/results.json, table.md and docs/energy_only_study.png. Reference numbers:
../shared/data/water/deepks_kit_ccsd_ccpvdz_clusters (energies.csv in Eh, forces.csv in Eh/Å, from
deepks-kit's examples/water_cluster; see its SOURCE.txt).
"""

import argparse
import csv
import json
import os
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
OUT = ROOT / "labels" / "energy_only_study"
# the HSE06 model the study fine-tuned: stage 1, the default model until 2026-12-05
STAGE1_MODEL = ROOT / "data" / "train" / "checkpoints" / "default_model" / "model.pt"
SIZES = (25, 50, 100, 200, 300)
# the energy weight of the shipped model (data/train/pbe_hse06_water.yaml): per-atom energy errors (Eh) are
# ~1e-3 of force errors (Eh/bohr), so x1000 balances the two terms
ENERGY_ONLY = {"energy": 1000.0, "force": 0.0}
ENERGY_FORCE = {"energy": 1000.0, "force": 1.0}
#: name -> (start, losses, train settings); fine-tuning: a tenth of the learning rate, a short warm-up
SCRATCH = {"epochs": 300, "lr": 1e-3, "lr_final": 1e-5, "batch_size": 16, "checkpoint_every": 50}
FINE = {"epochs": 200, "lr": 1e-4, "lr_final": 1e-6, "warmup_epochs": 10, "batch_size": 16, "checkpoint_every": 50}
VARIANTS = {
    "scratch, E": ("pbe", ENERGY_ONLY, SCRATCH),
    "fine-tuned, E": ("default", ENERGY_ONLY, FINE),
    "fine-tuned, E, L2-SP": ("default", ENERGY_ONLY, {**FINE, "l2_init": 10.0}),
    "fine-tuned, E, frozen": ("default", ENERGY_ONLY, {**FINE, "freeze": ["mlp.0.*", "mlp.2.*", "linear"]}),
    "scratch, E+F": ("pbe", ENERGY_FORCE, SCRATCH),
    "fine-tuned, E+F": ("default", ENERGY_FORCE, FINE),
    "fine-tuned, E, + PT trimers": ("default", ENERGY_ONLY, FINE),
    "fine-tuned, E, + PT trimers, longer": ("default", ENERGY_ONLY, {**FINE, "epochs": 400, "lr": 3e-4}),
}
#: variants trained on structures beyond the n1-n3 subset, with CCSD energies computed here (PySCF CCSD,
#: all-electron, which reproduces deepks-kit's labels to 1e-9 Eh): the 15 concerted proton-transfer paths
#: of the cyclic trimer (data/train/make_proton_transfer.py), shared-proton geometries n1-n3 lack
PT_TRIMERS = [ROOT / "data" / "train" / "proton_transfer" / "pt_trimers.xyz"]
EXTRA = {"fine-tuned, E, + PT trimers": PT_TRIMERS, "fine-tuned, E, + PT trimers, longer": PT_TRIMERS}


def ccsd_store(frames) -> Path:
    """deepks-kit's CCSD energies and forces of ``frames`` in a label store (imported, not computed)."""
    energies = {r["name"]: float(r["E_total_CCSD_ccpVDZ_Hartree"]) for r in csv.DictReader(open(KIT / "energies.csv"))}
    forces: dict = {}
    for r in csv.DictReader(open(KIT / "forces.csv")):
        forces.setdefault(r["name"], []).append([float(r[k]) for k in ("fx_Ha_per_A", "fy_Ha_per_A", "fz_Ha_per_A")])
    path = OUT / "ccsd_ccpvdz_deepks_kit.h5"
    if not path.is_file():
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


def label(inputs, store: Path, *extra, forces: bool = True) -> Path:
    """``deepks-es label`` (with forces by default; resumes a partial store; every frame must converge)."""
    args = ["label", *map(str, inputs), *(["--forces"] if forces else []), "--store", str(store), "--no-progress"]
    args += list(map(str, extra))
    assert main(args) == 0, f"label into {store} had failed frames"
    return store


def subset(paths: list, n: int) -> list:
    """The first n of a fixed shuffle, taking the sizes in turn (25 = 9 monomers + 8 dimers + 8 trimers);
    nested: the 25 are inside the 50, and so on."""
    rng = np.random.default_rng(0)
    groups = [sorted(p for p in paths if f"train_n{k}_" in p.name) for k in (1, 2, 3)]
    groups = [[g[i] for i in rng.permutation(len(g))] for g in groups]
    return [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)][:n]


def train_model(
    name: str, n: int, frames: list, targets: list, base: Path, start: str, losses: dict, opts: dict
) -> Path:
    slug = f"{name.replace(', ', '_').replace('+', 'plus').replace(' ', '_').replace('-', '')}_n{n:03d}"
    workdir = OUT / slug
    model = workdir / "model.pt"
    if model.is_file():
        return model
    cfg = {
        "description": f"PBE -> CCSD/cc-pVDZ water, {name}, {n} deepks-kit n1-n3 structures",
        "workdir": str(workdir),
        "target": [str(t) for t in targets],
        "base": str(base),
        "frames": [str(f) for f in frames],
        "losses": losses,
        "train": opts,
    }
    if start == "default":
        cfg.update(init_model=str(STAGE1_MODEL), base_model=str(STAGE1_MODEL))
    workdir.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{slug}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--no-progress"]) == 0
    return model


def errors(store: Path, ref: dict) -> dict:
    """Against the CCSD labels, per held-out system: E MAE and E MAE after removing the mean offset (the
    relative energies an ML potential trained on these labels sees), kcal/mol per cluster; F RMSE eV/Å."""
    recs = [r for r in LabelStore(store).records() if geometry_key(r) in ref]
    out = {}
    for system in ("valid_n4", "test_n6"):
        rs = [r for r in recs if r["name"].startswith(system)]
        de = np.array([r["e_tot"] - ref[geometry_key(r)]["e_tot"] for r in rs])
        df = np.concatenate([(r["forces"] - ref[geometry_key(r)]["forces"]).ravel() for r in rs])
        out[system] = {
            "frames": len(rs),
            "e_mae": float(np.abs(de).mean() * KCAL_PER_MOL_PER_HARTREE),
            "e_max": float(np.abs(de).max() * KCAL_PER_MOL_PER_HARTREE),
            "rel_e_mae": float(np.abs(de - de.mean()).mean() * KCAL_PER_MOL_PER_HARTREE),
            "f_rmse": float(np.sqrt((df**2).mean()) * EV_PER_ANG_PER_AU),
        }
    return out


def table(results: dict) -> str:
    lines = [
        "| model | N | n4: E MAE | n4: rel. E MAE | n4: F RMSE | n6: E MAE | n6: max abs E | n6: F RMSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in results.items():
        name, n = key.rsplit(" @ ", 1)
        a, b = row["valid_n4"], row["test_n6"]
        lines.append(
            f"| {name} | {n} | {a['e_mae']:.2f} | {a['rel_e_mae']:.2f} | {a['f_rmse']:.3f} "
            f"| {b['e_mae']:.2f} | {b['e_max']:.2f} | {b['f_rmse']:.3f} |"
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for variant in VARIANTS:
        rows = sorted((int(k.rsplit(" @ ", 1)[1]), v) for k, v in results.items() if k.rsplit(" @ ", 1)[0] == variant)
        if not rows:
            continue
        ns = [n for n, _ in rows]
        axes[0].plot(ns, [v["valid_n4"]["f_rmse"] for _, v in rows], "o-", label=variant)
        axes[1].plot(ns, [v["valid_n4"]["e_mae"] for _, v in rows], "o-", label=variant)
    for ax, what in zip(axes, ("f_rmse", "e_mae")):
        for method, style in (("PBE", "--"), ("HSE06", ":")):
            if method + " @ 0" in results:
                ax.axhline(results[method + " @ 0"]["valid_n4"][what], color="gray", ls=style, label=method)
        ax.set_xscale("log")
        ax.set_xlabel("CCSD training energies")
    axes[0].set_ylabel("tetramer force RMSE (eV/Å)")
    axes[1].set_ylabel("tetramer energy MAE (kcal/mol)")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    OUT.mkdir(parents=True, exist_ok=True)
    train_paths = sorted(p for d in ("train.n1", "train.n2", "train.n3") for p in (KIT / d).glob("*.xyz"))
    held_out = sorted((KIT / "valid.n4").glob("*.xyz"))[::5] + sorted((KIT / "test.n6").glob("*.xyz"))[::3]
    target = ccsd_store(read_frames(train_paths + held_out))
    # base stores, labelled when a variant first needs one (pbe: the same store as data/train/label_ccsdt.sh
    # step 2, which also holds thermal n01-n03)
    base_paths = {"pbe": ROOT / "labels" / "pbe_ccpvdz_cc.h5", "default": OUT / "hse06model_n123.h5"}
    bases: dict = {}
    ref = {geometry_key(r): r for r in LabelStore(target).records()}
    results_path = OUT / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    # the base functional, and the HSE06 functional the default model was trained to (density-fitted: its
    # effect, < 0.01 kcal/mol per water and 0.001 eV/Å, is far below these errors), for scale
    results["PBE @ 0"] = errors(label(held_out, OUT / "pbe_heldout.h5", "--method", "pbe"), ref)
    hse06 = label(held_out, OUT / "hse06_df_heldout.h5", "--method", "hse06", "--density-fit")
    results["HSE06 @ 0"] = errors(hse06, ref)
    for n in args.sizes:
        for variant in args.variants:
            start, losses, opts = VARIANTS[variant]
            losses = {"hamiltonian": 0.0, "eigenvalue": 0.0, "eigenvector": 0.0, "gap": 0.0, **losses}
            method = ("--method", "pbe") if start == "pbe" else ("--method", "deepks")
            if start not in bases:
                bases[start] = label(train_paths, base_paths[start], *method, "--save-matrices")
            frames, targets = subset(train_paths, n), [target]
            if variant in EXTRA:
                frames += EXTRA[variant]
                targets.append(label(EXTRA[variant], OUT / "ccsd_ccpvdz_extra.h5", "--method", "ccsd", forces=False))
                label(EXTRA[variant], bases[start], *method, "--save-matrices")
            model = train_model(variant, n, frames, targets, bases[start], start, losses, opts)
            store = label(held_out, model.parent / "heldout.h5", "--method", "deepks", "--model", model)
            results[f"{variant} @ {n}"] = errors(store, ref)
            results_path.write_text(json.dumps(results, indent=1))
            print(table({f"{variant} @ {n}": results[f"{variant} @ {n}"]}).splitlines()[-1], flush=True)
    text = table(results) + "\n\nkcal/mol per cluster and eV/Å against CCSD/cc-pVDZ; 10 tetramers, 7 hexamer frames.\n"
    (OUT / "table.md").write_text(text)
    plot(results, ROOT / "docs" / "energy_only_study.png")
    print(text)
