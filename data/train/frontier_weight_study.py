"""Why the correction's LUMO shift grows with cluster size (#12, stage 5's finding): the frontier orbitals'
weight on the projectors vs the number of waters.

The correction acts on an orbital psi through the projectors only: to first order it moves the level by
<psi|v_delta|psi> = sum_a sum_mm' <psi|alpha^a_m> dE/dD^a_mm' <alpha^a_m'|psi> (DeePKS, Chen et al., JCTC 17,
170 (2021), Eq. 7). With a potential dE/dD^a that depends on each atom's surroundings alone, a level's shift
follows its projector weight w = sum_a sum_m <alpha^a_m|psi>^2 (the atoms' projectors overlap, so w can exceed
1). This script prints, per cluster size, the mean w of the HOMO and the LUMO in a base store with orbitals
(default: stage 5's iteration-0 SCFs, 1-8 waters), the largest single-atom part and the participation
number (sum_a w_a)^2 / sum_a w_a^2, i.e. over how many atoms the orbital spreads. A few seconds per frame.

    python data/train/frontier_weight_study.py [STORE.h5] [--per-size 6]
"""

import argparse
from collections import defaultdict

import numpy as np

from deepks_es import load_model
from deepks_es.projector import ovlp_proj
from deepks_es.store import LabelStore
from deepks_es.structures import frame_from_record, frame_to_mol


def frontier_weights(record, projector, basis: str) -> np.ndarray:
    """(2, 3): for the HOMO and the LUMO of a record with ``mo_coeff``: total projector weight, the largest
    atom's weight, the participation number of the atoms."""
    mol = frame_to_mol(frame_from_record(record), basis)
    nocc = int((record["mo_occ"] > 0).sum())
    rows = []
    for i in (nocc - 1, nocc):
        per_atom = sum(
            (np.einsum("p,pank->ank", record["mo_coeff"][:, i], b) ** 2).sum(axis=(1, 2))
            for b in ovlp_proj(mol, projector)
        )
        rows.append((per_atom.sum(), per_atom.max(), per_atom.sum() ** 2 / (per_atom**2).sum()))
    return np.array(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", nargs="?", default="labels/default_model_stage5/iter.00/base.h5")
    p.add_argument("--model", default="data/default_model.pt", help="whose projectors (all shipped models share them)")
    p.add_argument("--per-size", type=int, default=6, help="frames per cluster size")
    args = p.parse_args()
    projector = load_model(args.model).projector
    store, by_size = LabelStore(args.store), defaultdict(list)
    for record in store.records(matrices=True):
        n = len(record["numbers"]) // 3
        if len(by_size[n]) < args.per_size:
            by_size[n].append(frontier_weights(record, projector, store.metadata["basis"]))
    columns = ("weight", "largest atom", "atoms")
    print("| waters | frames | " + " | ".join(f"{i} {c}" for i in ("HOMO", "LUMO") for c in columns) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sorted(by_size):
        (hw, hmax, hpn), (lw, lmax, lpn) = np.mean(by_size[n], axis=0)
        print(f"| {n} | {len(by_size[n])} | {hw:.3f} | {hmax:.3f} | {hpn:.1f} | {lw:.3f} | {lmax:.3f} | {lpn:.1f} |")


if __name__ == "__main__":
    main()
