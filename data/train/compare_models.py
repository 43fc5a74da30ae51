"""Side-by-side table of the mlp (default) and e3 PBE -> HSE06 water models (issue #5, README "The e3 model").

Reads what RECIPE.sh and RECIPE_E3.sh wrote under labels/ and prints a Markdown table:

* self-consistent errors on the 345 training structures (iterate's last report.json of each run),
* held-out BEGDB errors (``deepks-es eval`` eval.json of each model),
* SCF convergence and cycles on the neutral WATER27 clusters (H2O)1-20 and the SCF wall time of the
  (H2O)20 clusters (both without forces, conv_tol 1e-10, grid level 3: the mlp's from RECIPE.sh's
  ``deepks-es label`` store, the e3's from RECIPE_E3.sh's ``deepks-es scf`` JSON; the same SCF code),
* training cost (wall time of the training runs of both iterations, from the models' histories).

    python data/train/compare_models.py            (after both recipes; prints the table)
"""

import json
import sys
from pathlib import Path

from deepks_es import load_model

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "labels"
RUNS = {
    "mlp (default)": {
        "iterate": LABELS / "default_model",
        "eval": LABELS / "eval_begdb" / "eval.json",
        "water27": LABELS / "water27_deepks.h5",
    },
    "e3": {
        "iterate": LABELS / "e3_model",
        "eval": LABELS / "eval_begdb_e3" / "eval.json",
        "water27": LABELS / "water27_e3_scf.json",
    },
}


def _last_report(workdir: Path) -> dict:
    reports = sorted(workdir.glob("iter.*/report.json"))
    return json.loads(reports[-1].read_text())


def _train_wall(workdir: Path) -> tuple:
    """(epochs, wall s) summed over the iterations' trainings, from each model's stored history."""
    epochs, wall = 0, 0.0
    for path in sorted(workdir.glob("iter.*/model.pt")):
        history = load_model(path).settings["training"]["history"]
        epochs += history[-1]["epoch"]
        wall += history[-1]["wall_s"]
    return epochs, wall


def _scf_records(path: Path) -> list:
    """converged, cycles, wall_s and natm of every structure of a label store or a deepks-es scf JSON."""
    if path.suffix == ".h5":
        from deepks_es.store import LabelStore

        records = LabelStore(path).records(include_unconverged=True)
        return [{**r, "natm": len(r["numbers"])} for r in records]
    records = json.loads(path.read_text())
    return [{**r, "natm": len(r["symbols"])} for r in (records if isinstance(records, list) else [records])]


def row(name: str, run: dict) -> dict:
    out = {"model": name}
    scf = _last_report(run["iterate"])["scf_errors"]
    out["train SC E/F/eig/gap"] = (
        f"{scf['energy_mae_kcal']:.2f} / {scf['force_rmse_ev_ang']:.3f} / {scf['eig_rmse_ev']:.3f} / "
        f"{scf['gap_mae_ev']:.3f}"
    )
    held = json.loads(run["eval"].read_text())["rows"]["DeePKS"]
    out["held-out conv."] = f"{held['convergence']:.3f}"
    out["held-out E MAE kcal/mol"] = f"{held['energy_mae_kcal']:.3f}"
    out["held-out F RMSE eV/Å"] = f"{held['force_rmse_ev_ang']:.4f}"
    out["held-out eig RMSE eV"] = f"{held['eig_rmse_ev']:.3f}"
    out["held-out gap MAE eV"] = f"{held['gap_mae_ev']:.3f}"
    records = _scf_records(run["water27"])
    conv = sum(r["converged"] for r in records)
    cycles = [r["cycles"] for r in records]
    big = [r["wall_s"] for r in records if r["natm"] == 60]
    out["(H2O)1-20 conv."] = f"{conv}/{len(records)}"
    out["cycles"] = f"{min(cycles)}-{max(cycles)}"
    out["(H2O)20 SCF s"] = f"{sum(big) / len(big):.0f}" if big else "-"
    epochs, wall = _train_wall(run["iterate"])
    out["training"] = f"{epochs} epochs, {wall / 60:.0f} min ({wall / epochs:.1f} s/epoch)"
    return out


def main() -> int:
    rows = [row(name, run) for name, run in RUNS.items()]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(r[k] for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
