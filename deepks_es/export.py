"""Exporting a label store for ML-potential codes: extxyz (MACE, NequIP, ...) and DeePMD-kit data.

This is an I/O boundary: energies leave in eV and forces in eV/Å (constants from ``pyscf.data.nist``);
forces = -gradient. Positions stay in Å.

- ``extxyz`` (through ASE): info ``REF_energy`` (eV), ``charge``, ``multiplicity``, ``config_type`` (the
  stem of the frame's structure file), ``name``, ``converged``; per-atom ``REF_forces`` (eV/Å), left out
  for frames labelled without forces. Frames labelled by a committee (``--method deepks`` with several
  models) also carry :data:`~deepks_es.keys.COMMITTEE_INFO`: ``max_devi_f_ev_ang`` (DP-GEN's largest
  per-atom force deviation) and ``e_tot_std_ev``, so a user sees which labels to trust.
- ``deepmd`` / ``deepmd-mixed`` (through dpdata): ``deepmd/npy`` with one folder per composition, or
  ``deepmd/npy/mixed`` with one folder per atom count; finite clusters (a ``nopbc`` file in each folder);
  the type map is the elements of the exported frames sorted by atomic number, and within each frame the
  atoms are written in type-map order. Every frame needs forces. A committee's deviations go to
  ``committee_devi.csv`` in the output folder (name, folder, frame index there, the two fields above).

Unconverged and failed frames are left out unless ``include_unconverged`` (which keeps unconverged
frames, flagged ``converged=False`` in extxyz, and never failed ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyscf.data.nist import HARTREE2EV

from .errors import DeePKSInputError
from .output import EV_PER_ANG_PER_AU, check_output_path, write_extxyz
from .keys import COMMITTEE_INFO
from .store import LabelStore

FORMATS = ("extxyz", "deepmd", "deepmd-mixed")


def export(store_path, fmt: str, output, include_unconverged: bool = False) -> int:
    """Write the store's frames to ``output`` (a file for extxyz, a folder for deepmd) in format ``fmt``.

    Returns:
        the number of frames written.

    Raises:
        DeePKSInputError: an unknown ``fmt``, an output that does not fit the format or cannot be written, a
            missing or damaged store, no frame to export, or (deepmd) a frame without forces.
    """
    if fmt not in FORMATS:
        raise DeePKSInputError(f"export format {fmt!r} unknown; use one of {', '.join(FORMATS)}")
    if fmt == "extxyz" and Path(output).suffix.lower() not in (".xyz", ".extxyz"):
        raise DeePKSInputError(f"--output {output}: --format extxyz writes a .extxyz (or .xyz) file; change the suffix")
    if fmt != "extxyz" and Path(output).suffix:
        raise DeePKSInputError(
            f"--output {output}: --format {fmt} writes a folder; give a folder path without a suffix"
        )
    store = LabelStore(store_path)
    check_output_path(output, "--output", folder=fmt != "extxyz", inputs=[store_path])
    records = store.records(include_unconverged=include_unconverged, matrices=False)
    if not records:
        kind = "usable" if include_unconverged else "converged"
        raise DeePKSInputError(
            f"label store {store_path} holds no {kind} frame to export ({len(store)} records in all); "
            "label more frames" + ("" if include_unconverged else " or pass --include-unconverged")
        )
    if fmt == "extxyz":
        _write_extxyz(records, output)
    else:
        _write_deepmd(records, output, mixed=fmt == "deepmd-mixed", store_path=store_path)
    return len(records)


def committee_info(rec: dict) -> dict:
    """A committee record's deviations in eV and eV/Å (:data:`~deepks_es.keys.COMMITTEE_INFO`); {} otherwise."""
    if rec.get("max_devi_f") is None:
        return {}
    return {"max_devi_f_ev_ang": rec["max_devi_f"] * EV_PER_ANG_PER_AU, "e_tot_std_ev": rec["e_tot_std"] * HARTREE2EV}


def _write_extxyz(records: list, output) -> None:
    write_extxyz(
        output,
        [
            (
                rec["numbers"],
                rec["positions_ang"],
                rec["e_tot"] * HARTREE2EV,
                None if rec["forces"] is None else rec["forces"] * EV_PER_ANG_PER_AU,
                {
                    "charge": rec["charge"],
                    "multiplicity": rec["multiplicity"],
                    "config_type": Path(rec["source"]).stem,
                    "name": rec["name"],
                    "converged": rec["converged"],
                    **committee_info(rec),
                },
            )
            for rec in records
        ],
    )


def _write_deepmd(records: list, output, mixed: bool, store_path) -> None:
    try:
        import dpdata
    except ImportError:
        raise ImportError("deepmd export needs dpdata: pip install dpdata") from None
    from ase.data import chemical_symbols

    lacking = [rec["name"] for rec in records if rec["forces"] is None]
    if lacking:
        raise DeePKSInputError(
            f"label store {store_path}: {len(lacking)} frame(s) have no forces (first: {lacking[0]}) and deepmd "
            "data needs them; label with --forces"
        )
    elements = sorted({int(z) for rec in records for z in rec["numbers"]})
    type_map = [chemical_symbols[z] for z in elements]
    systems = dpdata.MultiSystems(type_map=list(type_map))  # groups frames by composition
    folders = []  # each frame's folder: dpdata's short name of its system; mixed: grouped by atom count
    for rec in records:
        types = np.searchsorted(elements, rec["numbers"])
        order = np.argsort(types, kind="stable")
        data = {
            "atom_names": list(type_map),
            "atom_numbs": np.bincount(types, minlength=len(type_map)).tolist(),
            "atom_types": types[order],
            "coords": rec["positions_ang"][order][None],  # (1, natm, 3) Å
            "cells": np.zeros((1, 3, 3)),
            "orig": np.zeros(3),
            "nopbc": True,
            "energies": np.array([rec["e_tot"] * HARTREE2EV]),  # (1,) eV
            "forces": (rec["forces"] * EV_PER_ANG_PER_AU)[order][None],  # (1, natm, 3) eV/Å
        }
        system = dpdata.LabeledSystem(data=data)
        systems.append(system)
        folders.append(str(system.get_natoms()) if mixed else system.short_name)
    systems.to("deepmd/npy/mixed" if mixed else "deepmd/npy", str(output))
    if any(committee_info(rec) for rec in records):
        _write_committee_csv(records, folders, Path(output))


def _write_committee_csv(records: list, folders: list, output: Path) -> None:
    """committee_devi.csv: per exported frame its folder and index there (dpdata appends frames of a folder
    in store order) and the committee deviations."""
    import csv

    counts: dict = {}
    with open(output / "committee_devi.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "folder", "index", *COMMITTEE_INFO])
        for rec, folder in zip(records, folders):
            index = counts[folder] = counts.get(folder, -1) + 1
            info = committee_info(rec)
            writer.writerow([rec["name"], folder, index, *(f"{info[k]:.6g}" if info else "" for k in COMMITTEE_INFO)])
