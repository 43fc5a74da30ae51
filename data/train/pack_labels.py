#!/usr/bin/env python
"""Reference labels that took hours, as a compact archive in git, and back into a label store.

    python data/train/pack_labels.py pack labels/S.h5 data/train/labels/S.npz      # store -> archive
    python data/train/pack_labels.py unpack data/train/labels/S.npz labels/S.h5    # archive -> store
    python data/train/pack_labels.py missing labels/S.h5 A.xyz B.xyz ...             # inputs still to label

The archive keeps what training and evaluation read from a *target* store: per converged frame the
structure (name, source, numbers, positions_ang, charge, multiplicity), ``e_tot``, ``forces``,
``mo_energy``, ``mo_occ`` (ccsd/ccsd(t) stores: also ``e_hf``, ``e_corr``, ``e_t``) and the occupied
plus ``--virtual`` (default 4) lowest virtual orbitals of
``mo_coeff`` in float32 (what the eigenvector loss reads: occupied + n_virt columns; float32 changes
C_t^T H C_t by ~1e-7 Eh), compressed (numpy ``savez_compressed``); ``dm``, ``fock``, ``ovlp`` and failed
frames are left out. The store metadata (method, xc definition, basis, grid, versions) travels as JSON.
Unpacking writes an ordinary label store (``deepks-es`` reads it like the original; records keep their
keys, so a later ``deepks-es label`` run on the same frames skips them, except where it asks for
matrices the archive does not hold: ``missing`` lists the inputs that have a frame the store lacks, so that a
recipe labels only those).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from deepks_es.keys import RECORD_ATTRS
from deepks_es.store import LabelStore, geometry_key
from deepks_es.structures import read_frames
from deepks_es.workflow import all_records

ARRAYS = ("numbers", "positions_ang", "forces", "mo_energy", "mo_occ", "mo_coeff")
SCALARS = ("e_tot", "homo", "lumo", "gap", "wall_s")
CC_PARTS = ("e_hf", "e_corr", "e_t")  # ccsd / ccsd(t) stores


def pack(store_path, archive, virtual: int = 4) -> int:
    store = LabelStore(store_path)
    records = store.records(matrices=True)
    out = {"metadata": np.array(json.dumps(store.metadata)), "count": np.array(len(records))}
    for i, rec in enumerate(records):
        head = {k: rec[k] for k in ("key", *RECORD_ATTRS)}
        head.update({k: rec[k] for k in SCALARS})
        head.update({k: rec[k] for k in CC_PARTS if rec.get(k) is not None})
        out[f"{i}/head"] = np.array(json.dumps(head))
        for name in ARRAYS:
            value = rec[name]
            if value is None:
                continue
            if name == "mo_coeff":
                value = value[:, : int((rec["mo_occ"] > 0).sum()) + virtual].astype(np.float32)
            out[f"{i}/{name}"] = value
    np.savez_compressed(archive, **out)
    return len(records)


def unpack(archive, store_path) -> int:
    data = np.load(archive)
    store = LabelStore(store_path, json.loads(str(data["metadata"])))
    stored = set(store.keys())
    n = int(data["count"])
    with store.lock():
        for i in range(n):
            rec = json.loads(str(data[f"{i}/head"]))
            if rec["key"] in stored:
                continue
            for name in ARRAYS:
                rec[name] = data[f"{i}/{name}"] if f"{i}/{name}" in data else None
            store.write(rec)
    return n


def missing(store_path, inputs) -> list:
    """The inputs (files) with a frame whose structure is not in the store (none when all are)."""
    stored = {geometry_key(r) for r in all_records(LabelStore(store_path))}
    return [path for path in inputs if any(geometry_key(f) not in stored for f in read_frames([path]))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("pack", "unpack", "missing"))
    p.add_argument("source")
    p.add_argument("destination", nargs="+", help="archive or store; for missing: the inputs")
    p.add_argument("--virtual", type=int, default=4, help="virtual orbitals kept beyond the occupied ones")
    args = p.parse_args(argv)
    if args.action == "missing":
        print(*missing(args.source, args.destination))
        return 0
    if len(args.destination) > 1:
        p.error(f"{args.action} takes one destination")
    (destination,) = args.destination
    if args.action == "pack":
        n = pack(args.source, destination, args.virtual)
    else:
        n = unpack(args.source, destination)
    print(f"{n} records {args.action}ed: {args.source} -> {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
