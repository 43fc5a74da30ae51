"""Side-by-side table of the mlp and e3 PBE -> HSE06 water models (issue #5, README "The e3 model").

Reads what RECIPE.sh and RECIPE_E3.sh wrote under labels/ and prints a Markdown table with, per model:
the fixed-density validation errors of its training (the kept epoch in its stored history), its SCF
convergence on iterate's 8 check structures (with the largest cycle count), the self-consistent
held-out BEGDB errors (``deepks-es eval``'s eval.json), SCF convergence and cycles on the neutral
WATER27 clusters (H2O)1-20 where run (no forces, conv_tol 1e-10, grid level 3; a label store or a
``deepks-es scf`` JSON, the same SCF code) and the training cost from the stored history.

    python data/train/compare_models.py
"""

import json
import sys
from pathlib import Path

from deepks_es import load_model
from deepks_es.store import LabelStore
from deepks_es.workflow import kept_entry

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "labels"
ROWS = {
    "mlp model 0 (PBE density)": {
        "model": LABELS / "default_model" / "iter.00" / "model.pt",
        "check": LABELS / "default_model" / "iter.00" / "check.0.h5",
        "eval": LABELS / "eval_begdb_mlp0" / "eval.json",
    },
    "e3 model 0 (PBE density)": {
        "model": LABELS / "e3_model" / "iter.00" / "model.pt",
        "check": LABELS / "e3_model" / "iter.00" / "check.0.h5",
        "eval": LABELS / "eval_begdb_e3" / "eval.json",
        "water27": [LABELS / "water27_e3_scf.json", LABELS / "water27_e3_scf_20b.json"],
    },
    "mlp model 1 = stage-1 default": {
        "model": LABELS / "default_model" / "model.pt",
        "check": LABELS / "default_model" / "iter.01" / "check.0.h5",
        "eval": LABELS / "eval_begdb" / "eval.json",
        "water27": [LABELS / "water27_deepks.h5"],
    },
}


def _scf_records(path: Path) -> list:
    """converged, cycles, wall_s and natm of every structure of a label store or a deepks-es scf JSON."""
    if path.suffix == ".h5":
        return [{**r, "natm": len(r["numbers"])} for r in LabelStore(path).records(include_unconverged=True)]
    records = json.loads(path.read_text())
    return [{**r, "natm": len(r["symbols"])} for r in (records if isinstance(records, list) else [records])]


def row(name: str, paths: dict) -> dict:
    out = {"model": name}
    history = load_model(paths["model"]).settings["training"]["history"]
    valid = kept_entry(history)["valid"]
    out["fixed density E / F / eig / gap"] = (
        f"{valid['energy_mae_kcal']:.3f} / {valid['force_rmse_ev_ang']:.4f} / {valid['eig_rmse_ev']:.3f} / "
        f"{valid['gap_mae_ev']:.3f}"
    )
    check = _scf_records(paths["check"])
    out["check SCF conv. (max cycles)"] = (
        f"{sum(r['converged'] for r in check)}/{len(check)} ({max(r['cycles'] for r in check)})"
    )
    if paths["eval"].is_file():
        held = json.loads(paths["eval"].read_text())["rows"]["DeePKS"]
        out["held-out conv."] = f"{held['convergence']:.3f}"
        out["held-out E MAE kcal/mol"] = f"{held['energy_mae_kcal']:.2f}"
        out["F RMSE eV/Å"] = f"{held['force_rmse_ev_ang']:.4f}"
        out["valence eig RMSE eV"] = f"{held['eig_rmse_ev']:.3f}"
        out["gap MAE eV"] = f"{held['gap_mae_ev']:.3f}"
        out["O 1s MAE eV"] = f"{held['core_mae_ev']:.2f}"
    if paths.get("water27") and all(p.is_file() for p in paths["water27"]):
        records = [r for p in paths["water27"] for r in _scf_records(p)]
        cycles = [r["cycles"] for r in records]
        big = [r["wall_s"] for r in records if r["natm"] == 60]
        out["WATER27 conv. (cycles)"] = (
            f"{sum(r['converged'] for r in records)}/{len(records)} ({min(cycles)}-{max(cycles)})"
        )
        out["(H2O)20 SCF s"] = f"{sum(big) / len(big):.0f}" if big else "-"
    wall, epochs = history[-1]["wall_s"], history[-1]["epoch"]
    out["training"] = f"{epochs} epochs, {wall / 60:.0f} min ({wall / epochs:.1f} s/epoch)"
    return out


def main() -> int:
    rows = [row(name, paths) for name, paths in ROWS.items()]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(r.get(k, "–") for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
