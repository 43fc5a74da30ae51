#!/usr/bin/env python
"""Where a water model's cluster energy error comes from: one-body (each molecule alone, at its geometry in
the cluster) or many-body (the rest: hydrogen bonds, polarisation). Issue #12, item 3: the size dependence
of the energy error, measured.

For every cluster of a ``deepks-es eval`` run (its ``pbe.h5`` and ``deepks_<sha>.h5`` stores against the
target store), each water molecule is cut out at its geometry in the cluster and labelled alone with the
target method (the target store's settings: HSE06, density fitting, grid), PBE and PBE + the model (the
eval's SCF settings). Per cluster of n waters, for each of PBE and the model::

    error        = E(cluster) - E_target(cluster)
    one-body     = sum_i [E(molecule i) - E_target(molecule i)]
    many-body    = error - one-body

and, per size, their means per water. A size-extensive model has a many-body error per water that does
not depend on n (a one-body error per water never does, up to the spread of the thermal distortions).

    python data/train/many_body.py EVAL_DIR TARGET_STORE --out labels/many_body/NAME [--frames FILES]

Resumable: the molecule stores live in ``--out`` and finished molecules are skipped. Writes
``--out/many_body.json`` and ``--out/many_body.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from deepks_es.dataset import geometry_key, structure_keys
from deepks_es.evaluate import waters
from deepks_es.model import load_model
from deepks_es.output import KCAL_PER_MOL_PER_HARTREE
from deepks_es.settings import SCFSettings
from deepks_es.store import LabelStore
from deepks_es.structures import frame_from_record
from deepks_es.workflow import run_labels

KCAL = KCAL_PER_MOL_PER_HARTREE


def molecules(record) -> list:
    """The water molecules of a cluster record (atoms O,H,H per molecule, as the water sets order them),
    each a neutral singlet :class:`~deepks_es.structures.Frame` named ``<cluster>#<i>``."""
    numbers = np.asarray(record["numbers"])
    n = waters(record)
    if list(numbers) != [8, 1, 1] * n:
        raise ValueError(f"{record['name']}: atoms are not in O,H,H order per molecule")
    frame = frame_from_record(record)
    return [
        replace(
            frame,
            name=f"{record['name']}#{i}",
            numbers=numbers[3 * i : 3 * i + 3],
            positions_ang=np.asarray(record["positions_ang"])[3 * i : 3 * i + 3],
            charge=0,
            multiplicity=1,
        )
        for i in range(n)
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("eval_dir", type=Path, help="a deepks-es eval --out folder (pbe.h5, deepks_<sha>.h5)")
    ap.add_argument("target", type=Path, help="the target label store of that evaluation")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", nargs="*", help="only these structures")
    args = ap.parse_args(argv)
    result = json.loads((args.eval_dir / "eval.json").read_text())
    model = Path(result["model"])
    sha = result["model_sha256"][:12]
    target_store = LabelStore(args.target)
    targets = {geometry_key(r): r for r in target_store.records(matrices=False)}
    runs = {"PBE": LabelStore(args.eval_dir / "pbe.h5"), "DeePKS": LabelStore(args.eval_dir / f"deepks_{sha}.h5")}
    clusters = {name: {geometry_key(r): r for r in s.records(matrices=False)} for name, s in runs.items()}
    keys = sorted(set(targets).intersection(*clusters.values()), key=lambda k: (waters(targets[k]), targets[k]["name"]))
    if args.frames:
        keep = structure_keys(args.frames)
        keys = [k for k in keys if k in keep]
    mols = {k: molecules(targets[k]) for k in keys}
    every = [m for k in keys for m in mols[k]]
    meta = target_store.metadata
    target_scf = SCFSettings(density_fit=meta["density_fit"], grid_level=meta["grid_level"], conv_tol=meta["conv_tol"])
    args.out.mkdir(parents=True, exist_ok=True)
    common = dict(basis=meta["basis"], progress=False)
    base_scf = SCFSettings().for_model(load_model(model))  # PBE on the model's base, as deepks-es eval runs it
    stores = {
        "target": run_labels(every, args.out / f"{meta['method']}.h5", meta["method"], scf=target_scf, **common),
        "PBE": run_labels(every, args.out / "pbe.h5", "pbe", scf=base_scf, **common),
        "DeePKS": run_labels(every, args.out / f"deepks_{sha}.h5", "deepks", model, scf=base_scf, **common),
    }
    energy = {name: {geometry_key(r): r["e_tot"] for r in s.records(matrices=False)} for name, s in stores.items()}
    rows = []
    for k in keys:
        t = targets[k]
        row = {"name": t["name"], "waters": waters(t)}
        for name in runs:
            mol_keys = [geometry_key(m) for m in mols[k]]
            if not all(mk in energy[name] and mk in energy["target"] for mk in mol_keys):
                continue  # a molecule's SCF did not converge: the cluster is left out of this run
            error = (clusters[name][k]["e_tot"] - t["e_tot"]) * KCAL
            one_body = sum(energy[name][mk] - energy["target"][mk] for mk in mol_keys) * KCAL
            row[name] = {"error": error, "one_body": one_body, "many_body": error - one_body}
        rows.append(row)
    table = _table(rows, list(runs))
    (args.out / "many_body.json").write_text(json.dumps({"model": str(model), "rows": rows}, indent=1))
    (args.out / "many_body.md").write_text(table + "\n")
    print(table)
    return 0


def _table(rows: list, names: list) -> str:
    head = ["waters", "clusters"] + [f"{n} {c} per water" for n in names for c in ("error", "one-body", "many-body")]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for n in sorted({r["waters"] for r in rows}):
        sel = [r for r in rows if r["waters"] == n]
        cells = [str(n), str(len(sel))]
        for name in names:
            for part in ("error", "one_body", "many_body"):
                v = np.array([r[name][part] / n for r in sel if name in r])
                cells.append(f"{v.mean():+.3f} ± {v.std():.3f}" if v.size else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n(kcal/mol per water: mean ± spread over the clusters of that size)"


if __name__ == "__main__":
    sys.exit(main())
